"""The sensors scorer: a small MLP on standardised readings + one-hot sensor type, one logit out."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).parent / "artifacts" / "weights.pt"
FEATURES = 9


class SensorScorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def trained(weights: Path = WEIGHTS) -> SensorScorer:
    """The model with the weights ``build.py`` wrote."""
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: run examples/sensors/build.py first")
    model = SensorScorer()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()
