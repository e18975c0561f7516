"""The fraud scorer: standardise the feature vector, a small MLP, one logit out. Factories for
`tritonpipe export`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from fraud_features import FEATURES  # noqa: E402

WEIGHTS = Path(__file__).parent / "artifacts" / "weights.pt"


class FraudMLP(nn.Module):
    """features FP32[len(FEATURES)] -> logit FP32[1]; the scaler travels inside the model."""

    def __init__(self, width: int = len(FEATURES)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.net = nn.Sequential(
            nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def weights_path(alias: str = "champion") -> Path:
    """Where train.py writes the weights of the version it registers under ``alias``."""
    return WEIGHTS if alias == "champion" else WEIGHTS.with_name(f"weights-{alias}.pt")


def trained(alias: str = "champion") -> FraudMLP:
    """The model with the weights train.py wrote."""
    path = weights_path(alias)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run examples/fraud/train.py first")
    model = FraudMLP()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def trained_challenger() -> FraudMLP:
    """The version train.py registered as @challenger (``--alias challenger``)."""
    return trained("challenger")


def untrained() -> FraudMLP:
    """Random weights, seeded: the same interface, for tests that need no training."""
    torch.manual_seed(0)
    return FraudMLP().eval()
