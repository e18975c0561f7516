"""The end-to-end demo: serve the digits repository with a real tritonserver and classify the
held-out digits, sent as PNG bytes, through both ensembles over HTTP and gRPC.

    python examples/digits/demo.py --repository model_repository
    python examples/digits/demo.py --aoti   # plus a third ensemble: the CNN compiled by AOTInductor

Each image is its own request (8 in flight at a time, so the dynamic batcher has work); prints
accuracy and a latency summary per protocol and scoring format, and exits 1 below 95% accuracy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from tritonpipe.client import AsyncClient
from tritonpipe.server import ServerOptions, TritonServer

HELDOUT = Path(__file__).parent / "artifacts" / "heldout"
ENSEMBLES = {"digits": "ONNX", "digits_ts": "TorchScript"}


async def classify(
    url: str, model: str, images: list[bytes], concurrency: int
) -> tuple[np.ndarray, list[float]]:
    """Top-1 label per image and each request's latency in ms."""
    labels = np.zeros(len(images), dtype=np.int64)
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with AsyncClient(url) as client:
        await client.model(model)
        # Warm-up, not timed: opens the connections the timed requests will reuse.
        warm = {"image": np.array([[images[0]]], dtype=object)}
        await asyncio.gather(*(client.infer(model, warm) for _ in range(concurrency)))

        async def one(i: int) -> None:
            async with gate:
                start = time.perf_counter()
                out = await client.infer(model, {"image": np.array([[images[i]]], dtype=object)})
                latencies.append((time.perf_counter() - start) * 1000)
                labels[i] = out["labels"][0, 0]

        await asyncio.gather(*(one(i) for i in range(len(images))))
    return labels, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--log", type=Path, default=Path("build/demo-tritonserver.log"))
    parser.add_argument(
        "--aoti",
        action="store_true",
        help="also serve digits_aoti from a repository built into build/digits-aoti (see aoti.py)",
    )
    args = parser.parse_args()
    if args.aoti:
        from aoti import build

        print("[0/3] exporting the CNN with AOTInductor and building build/digits-aoti", flush=True)
        args.repository = build(Path("build/digits-aoti"))
        ENSEMBLES["digits_aoti"] = "AOTI"

    truth = json.loads((HELDOUT / "labels.json").read_text())
    names = sorted(truth)
    images = [(HELDOUT / n).read_bytes() for n in names]
    expected = np.array([truth[n] for n in names])
    print(f"[1/3] starting tritonserver on {args.repository} (log: {args.log})", flush=True)
    # The launcher logs model loading as it goes ("3/6 models ready (digits_onnx)").
    logging.basicConfig(level=logging.INFO, format="      %(message)s", stream=sys.stdout)
    started = time.perf_counter()
    options = ServerOptions(repository=args.repository, exit_timeout_s=10)
    rows = []
    with TritonServer(options, log_path=args.log) as server:
        print(
            f"      ready in {time.perf_counter() - started:.1f}s: HTTP {server.http_url}, "
            f"gRPC {server.grpc_url}",
            flush=True,
        )
        print(
            f"[2/3] classifying {len(images)} held-out PNGs, one request each, "
            f"{args.concurrency} in flight",
            flush=True,
        )
        for url in (server.http_url, server.grpc_url):
            protocol = url.split(":")[0]
            for model, fmt in ENSEMBLES.items():
                t0 = time.perf_counter()
                labels, latencies = asyncio.run(classify(url, model, images, args.concurrency))
                wall = time.perf_counter() - t0
                accuracy = float((labels == expected).mean())
                p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
                rows.append((protocol, fmt, model, accuracy, len(images) / wall, p50, p90, p99))
                print(f"      {protocol:<4} {fmt:<11} accuracy {accuracy:.2%}", flush=True)
        print("[3/3] stopping tritonserver", flush=True)
    print()
    print(
        f"{'protocol':<9}{'scoring':<12}{'ensemble':<11}{'accuracy':>9}{'req/s':>8}"
        f"{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
    )
    for protocol, fmt, model, acc, rps, p50, p90, p99 in rows:
        print(
            f"{protocol:<9}{fmt:<12}{model:<11}{acc:>9.2%}{rps:>8.0f}{p50:>8.2f}{p90:>8.2f}{p99:>8.2f}"
        )
    worst = min(r[3] for r in rows)
    if worst < 0.95:
        print(f"FAILED: accuracy {worst:.2%} is below 95%")
        return 1
    total = time.perf_counter() - started
    print(f"\nall {len(rows)} paths >= 95% accurate (lowest {worst:.2%}); total {total:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
