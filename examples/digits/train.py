"""Train the digits CNN on scikit-learn's bundled digits; write weights and the held-out PNGs.

    python examples/digits/train.py            # -> examples/digits/artifacts/

Writes weights.pt, heldout/NNNN.png with heldout/labels.json (the test split, as the images a
client would send) and metrics.json. Seeded, so reruns give the same split and close accuracy.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from model import WEIGHTS, DigitsCNN  # noqa: E402
from stages import MEAN, STD  # noqa: E402


def to_png(image: np.ndarray) -> bytes:
    """A digits image (values 0..16) as an 8-bit grayscale PNG."""
    pixels = np.round(image.reshape(8, 8) * 255 / 16).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def features(images: np.ndarray) -> torch.Tensor:
    """The exact pixels preprocessing sees: 8-bit quantised, scaled to [0, 1], normalised."""
    quantised = np.round(images * 255 / 16) / 255.0
    return torch.from_numpy(((quantised - MEAN) / STD).astype(np.float32).reshape(-1, 1, 8, 8))


def train(out: Path, epochs: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    xt, yt = features(x_train), torch.from_numpy(y_train).long()
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for batch in order.split(64):
            optimiser.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
        print(f"epoch {epoch + 1}/{epochs} loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        predicted = model(features(x_test)).argmax(1).numpy()
    accuracy = float((predicted == y_test).mean())
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS.name)
    heldout = out / "heldout"
    heldout.mkdir(exist_ok=True)
    labels = {}
    for i, (image, label) in enumerate(zip(x_test, y_test, strict=True)):
        name = f"{i:04d}.png"
        (heldout / name).write_bytes(to_png(image))
        labels[name] = int(label)
    (heldout / "labels.json").write_text(json.dumps(labels, indent=0) + "\n")
    metrics = {
        "accuracy": accuracy,
        "train_seconds": time.perf_counter() - start,
        "train_size": len(x_train),
        "test_size": len(x_test),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS.parent)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    metrics = train(args.out, args.epochs, args.seed)
    print(
        f"held-out accuracy {metrics['accuracy']:.4f} on {metrics['test_size']} images "
        f"({metrics['train_seconds']:.1f}s)"
    )
    if metrics["accuracy"] < 0.95:
        sys.exit(f"accuracy {metrics['accuracy']:.4f} is below 0.95")


if __name__ == "__main__":
    main()
