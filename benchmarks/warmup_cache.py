"""First-request latency with and without warmup, and response-cache hit against miss latency,
for the digits pipeline, in one run.

    flock /work/coord/bench.lock python -m benchmarks.warmup_cache --rounds 3 \
        --out benchmarks/results/warmup_cache.md

Warmup: the digits spec is built twice (as committed, and with every ``warmup:`` removed); each
round starts a fresh server on each build in turn (interleaved, so the machine's load hits both)
and times its first request against the median of the next 30 to the same model, for the fused
``digits`` and the unfused ``digits_steps``. Cache: a build with ``response_cache: true`` on
``digits``; a miss is a PNG not seen before (each held-out digit once), a hit is the same PNG again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from tritonpipe.client import Client
from tritonpipe.ensembles import build_repository
from tritonpipe.perf.machine import describe_machine
from tritonpipe.server import ServerOptions, TritonServer

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
HELDOUT = DIGITS / "artifacts" / "heldout"
MODELS = ("digits", "digits_ts", "digits_steps")


def _spec(tmp: Path, name: str, *, warmup: bool, cache: bool) -> Path:
    data = yaml.safe_load((DIGITS / "pipeline.yaml").read_text())
    for ensemble in data["ensembles"].values():
        if not warmup:
            ensemble.pop("warmup", None)
    if cache:
        data["ensembles"]["digits"]["response_cache"] = True
    path = DIGITS / f".{name}.pipeline.yaml"  # beside the original: its paths are relative
    path.write_text(yaml.safe_dump(data))
    try:
        build_repository(path, tmp / name)
    finally:
        path.unlink()
    return tmp / name


def _ms(client: Client, model: str, png: bytes) -> float:
    start = time.perf_counter()
    client.infer(model, {"image": np.array([[png]], dtype=object)})
    return (time.perf_counter() - start) * 1000


def _first_and_median(repo: Path, log: Path, png: bytes) -> dict[str, tuple[float, float]]:
    out = {}
    with (
        TritonServer(ServerOptions(repository=repo), log_path=log, ready_timeout_s=120) as server,
        Client(server.http_url) as client,
    ):
        for model in MODELS:
            client.model(model)  # the client's one-time metadata fetch is not the server's time
            first = _ms(client, model, png)
            rest = [_ms(client, model, png) for _ in range(30)]
            out[model] = (first, statistics.median(rest))
    return out


def _cache(repo: Path, log: Path, pngs: list[bytes]) -> tuple[float, float, dict[str, int]]:
    with (
        TritonServer(ServerOptions(repository=repo), log_path=log, ready_timeout_s=120) as server,
        Client(server.http_url) as client,
    ):
        misses, hits = [], []
        for png in pngs:  # interleaved: a miss then its hit, so load shifts hit both alike
            misses.append(_ms(client, "digits", png))
            hits.append(_ms(client, "digits", png))
        stats = server.statistics()["model_stats"]
        assert isinstance(stats, list)
        (mine,) = [m["inference_stats"] for m in stats if m["name"] == "digits"]
        counts = {k: int(mine[k]["count"]) for k in ("cache_hit", "cache_miss")}
    return statistics.median(misses), statistics.median(hits), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    pngs = [p.read_bytes() for p in sorted(HELDOUT.glob("*.png"))[:200]]
    lines = ["# Warmup and response cache (digits)", "", describe_machine(), ""]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        builds = {
            "warmup": _spec(tmp, "warm", warmup=True, cache=False),
            "no warmup": _spec(tmp, "cold", warmup=False, cache=False),
        }
        rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(args.rounds):
            for label, repo in builds.items():
                for model, pair in _first_and_median(
                    repo, tmp / f"{r}{label}.log", pngs[0]
                ).items():
                    rows.setdefault((label, model), []).append(pair)
                    print(f"round {r} {label:9} {model:12} first {pair[0]:7.1f} ms, "
                          f"median {pair[1]:5.1f} ms", file=sys.stderr)  # fmt: skip
        lines += [
            f"## First request after load ({args.rounds} fresh servers each, interleaved)",
            "",
            "| build | model | first request (ms, median of rounds) | median of next 30 (ms) "
            "| first / median |",
            "|---|---|---|---|---|",
        ]
        for (label, model), pairs in rows.items():
            first = statistics.median(p[0] for p in pairs)
            rest = statistics.median(p[1] for p in pairs)
            lines.append(f"| {label} | {model} | {first:.1f} | {rest:.1f} | {first / rest:.1f}x |")
        miss, hit, counts = _cache(
            _spec(tmp, "cached", warmup=True, cache=True), tmp / "c.log", pngs
        )
        lines += [
            "",
            f"## Response cache on `digits` ({len(pngs)} held-out PNGs, each a miss then a hit)",
            "",
            "| | median latency (ms, HTTP, one request at a time) |",
            "|---|---|",
            f"| miss (pipeline runs) | {miss:.2f} |",
            f"| hit (answered by the cache) | {hit:.2f} |",
            f"| miss / hit | {miss / hit:.2f}x |",
            "",
            f"Server statistics: cache_hit {counts['cache_hit']}, "
            f"cache_miss {counts['cache_miss']}.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
