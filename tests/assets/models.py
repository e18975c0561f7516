"""Model factories for export tests."""

from __future__ import annotations

import torch
from torch import nn


class TwoInTwoOut(nn.Module):
    """a: FP32[4], b: FP32[-1] -> scaled: FP32[4], pooled: FP32[1]."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"scaled": self.linear(a) * 2, "pooled": b.sum(dim=1, keepdim=True)}


class Diverging(nn.Module):
    """Python float() of a tensor is frozen into the trace: exports disagree with eager."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + float(x.mean()) * 100


class Nan(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


class BakedLength(nn.Module):
    """tokens: INT64[-1] -> FP32[-1]: reshapes to a constant length of 24, so no other works."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 32)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).reshape(tokens.shape[0], 24, 4, 8)
        return x.sum(dim=(2, 3))


class LengthBranch(nn.Module):
    """Runs at any length in eager mode, but branches on it: tracing bakes the branch taken."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 16:
            return x * 2
        return x


class IntSum(nn.Module):
    """x: INT64[3] -> FP32[1], with no embedding to read a value range from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True).float()


class MaskedMean(nn.Module):
    """tokens: INT64[-1], mask: FP32[-1] of the same length -> FP32[8]: a masked mean."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        summed = (self.embed(tokens) * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def masked_mean() -> nn.Module:
    torch.manual_seed(0)
    return MaskedMean()


def baked_length() -> nn.Module:
    torch.manual_seed(0)
    return BakedLength()


def length_branch() -> nn.Module:
    return LengthBranch()


def int_sum() -> nn.Module:
    return IntSum()


def two_in_two_out() -> nn.Module:
    torch.manual_seed(0)
    return TwoInTwoOut()


def diverging() -> nn.Module:
    return Diverging()


def nan() -> nn.Module:
    return Nan()


def not_a_module() -> object:
    return object()


class Offset(nn.Module):
    """Outputs ``base`` everywhere; a traced copy outputs ``base + delta``: an export whose
    error is exactly ``delta``, to test the parity tolerances at their boundary."""

    def __init__(self, base: float, delta: float) -> None:
        super().__init__()
        self.base, self.delta = base, delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * 0 + self.base
        if torch.jit.is_tracing():
            out = out + self.delta
        return out


def offset_atol_inside() -> nn.Module:
    return Offset(1.0, 0.9e-3)  # atol 1e-3, rtol 0


def offset_atol_outside() -> nn.Module:
    return Offset(1.0, 1.1e-3)


def offset_rtol_inside() -> nn.Module:
    return Offset(100.0, 0.9)  # atol 0, rtol 1e-2: the bound is 1.0


def offset_rtol_outside() -> nn.Module:
    return Offset(100.0, 1.1)
