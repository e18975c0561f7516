"""A new user's tabular model: 12 numeric features and 3 category ids (50 categories) in,
a score and an embedding out. Its tensor names (``cat``, ``embedding``) are also the names the
dynamo exporter gives to nodes inside the graph (``torch.cat``, ``aten.embedding``)."""

from __future__ import annotations

import torch
from torch import nn


class Tabular(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 4)
        self.body = nn.Sequential(nn.Linear(12 + 3 * 4, 16), nn.ReLU())
        self.head = nn.Linear(16, 1)

    def forward(self, num: torch.Tensor, cat: torch.Tensor) -> dict[str, torch.Tensor]:
        embedded = self.emb(cat).flatten(1)
        hidden = self.body(torch.cat([num, embedded], dim=1))
        return {"score": torch.sigmoid(self.head(hidden)), "embedding": hidden}


def build() -> nn.Module:
    torch.manual_seed(0)
    return Tabular().eval()


class WrongSecondOutput(nn.Module):
    """Two outputs whose second one exports differently from eager PyTorch: a value read with
    ``.item()`` is traced as a constant, so the TorchScript trace bakes it in (legacy)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x + x.sum().item()


def wrong_second_output() -> nn.Module:
    return WrongSecondOutput().eval()


class ConstantInTrace(nn.Module):
    """Exports to ONNX from torch.export, but ``torch.tensor`` of a size is a constant in a
    TorchScript trace, which the strict trace refuses: one format fails, the other does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.tensor(x.shape[0], dtype=x.dtype)


def constant_in_trace() -> nn.Module:
    return ConstantInTrace().eval()


class Lookup(nn.Module):
    """x: FP32[2] -> FP32[6]: table rows at |x| (clamped to the table), except where |x| is 100
    or more, which indexes past the table: an error inside the model that no range check of
    the inputs can see (x is a float)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.abs()
        index = torch.where(size < 100, size.clamp(max=9.0), size).long()
        return self.table(index).flatten(1)


def lookup() -> nn.Module:
    torch.manual_seed(0)
    return Lookup().eval()


class Mismatched(nn.Module):
    """Its matmul cannot take the declared input: torch.export's fake tensors fail first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.ones(4, 2)


def mismatched() -> nn.Module:
    return Mismatched()
