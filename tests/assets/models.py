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


def two_in_two_out() -> nn.Module:
    torch.manual_seed(0)
    return TwoInTwoOut()


def diverging() -> nn.Module:
    return Diverging()


def nan() -> nn.Module:
    return Nan()


def not_a_module() -> object:
    return object()
