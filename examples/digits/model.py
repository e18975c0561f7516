"""A small CNN for scikit-learn's 8x8 digits, and the factories `tritonpipe export` calls."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).parent / "artifacts" / "weights.pt"


class DigitsCNN(nn.Module):
    """Two conv layers and a small head: 1x8x8 pixels in, 10 logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


def trained() -> DigitsCNN:
    """The model with the weights `train.py` wrote."""
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS} not found: run examples/digits/train.py first")
    model = DigitsCNN()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()


def untrained() -> DigitsCNN:
    """Random weights, seeded: same shapes as the trained model, for tests and speed runs."""
    torch.manual_seed(0)
    return DigitsCNN().eval()
