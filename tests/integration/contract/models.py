"""A tabular model with a category embedding: kind INT64[1] (ids 0..49), num FP32[2] -> score."""

from __future__ import annotations

import torch
from torch import nn


class Tabular(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(19)
        self.emb = nn.Embedding(50, 4)
        self.head = nn.Linear(6, 1)

    def forward(self, kind: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.emb(kind[:, 0]), num], dim=1))


def build() -> nn.Module:
    return Tabular().eval()
