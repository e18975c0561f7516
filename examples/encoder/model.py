"""A small TransformerEncoder over variable-length token ids: the dynamic-shape export example.

Weights are random but seeded, so every export and every test sees the same model. The length
axis of ``tokens`` is dynamic; ``hidden`` keeps it, ``logits`` pools it away.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 1000


class TokenEncoder(nn.Module):
    """tokens: INT64[-1] -> logits: FP32[5], hidden: FP32[-1, 32]."""

    def __init__(self, vocab: int = VOCAB, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 5)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.enc(self.embed(tokens))
        return {"logits": self.head(hidden.mean(dim=1)), "hidden": hidden}


def encoder() -> nn.Module:
    """The seeded encoder, in eval mode."""
    torch.manual_seed(0)
    return TokenEncoder().eval()
