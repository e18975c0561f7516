"""Two versions of a churn scorer (one linear layer): the champion and a challenger whose
weights differ, so their scores differ on the same feature vector."""

from __future__ import annotations

import torch
from torch import nn

CHAMPION = ([0.8, -0.5, 0.3, 0.05], -0.2)
CHALLENGER = ([0.6, -0.7, 0.5, 0.10], 0.1)


def _linear(weights: list[float], bias: float) -> nn.Module:
    layer = nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights]))
        layer.bias.fill_(bias)
    return layer.eval()


def champion() -> nn.Module:
    return _linear(*CHAMPION)


def challenger() -> nn.Module:
    return _linear(*CHALLENGER)
