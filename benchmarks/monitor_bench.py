"""Monitoring benchmark: 1M logged predictions (13 float features, a score) written by the real
Parquet sink, then monitored against a reference profile. Prints seconds and rows/s per stage
(read the logs, the whole pass by day, the whole pass by 10,000-row windows) and writes
benchmarks/results/monitor.md.

    python benchmarks/monitor_bench.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tritonpipe.monitor import build_profile, monitor
from tritonpipe.monitor.logs import feature_matrix, load
from tritonpipe.predlog import ParquetSink

FEATURES = [f"f{i}" for i in range(13)]
RESULTS = Path(__file__).parent / "results" / "monitor.md"


def write_logs(folder: Path, rows: int, rng: np.random.Generator) -> float:
    sink = ParquetSink(folder, roll_rows=100_000, roll_seconds=3600)
    start = time.perf_counter()
    per_day = rows // 10
    for begin in range(0, rows, 50_000):
        n = min(50_000, rows - begin)
        x = rng.normal(0, 1, (n, len(FEATURES)))
        if begin >= rows - per_day:  # the last day drifts in two features
            x[:, :2] += 1.0
        ts = 1.7e9 + (begin + np.arange(n)) * (86_400 / per_day)
        score = 1 / (1 + np.exp(-x[:, 0]))
        sink.write([
            {"request_id": f"r{begin + i}", "row": 0, "timestamp": float(t), "model": "bench",
             "model_version": "1", "features": f, "output_probability": float(p)}
            for i, (t, f, p) in enumerate(zip(ts, x.tolist(), score, strict=True))
        ])  # fmt: skip
    sink.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (50_000, len(FEATURES)))
    profile = build_profile(ref, FEATURES, 1 / (1 + np.exp(-ref[:, 0])))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "logs"
        wrote = write_logs(folder, args.rows, rng)
        print(f"wrote {args.rows:,} records through ParquetSink in {wrote:.1f} s")
        stages: dict[str, list[float]] = {"read logs (predlog reader)": [],
                                          "features to matrix (pyarrow)": [],
                                          "monitor, 10 daily windows": [],
                                          "monitor, 10,000-row windows": []}  # fmt: skip
        drifted: list[str] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frame = load(folder)
            t1 = time.perf_counter()
            feature_matrix(frame, len(FEATURES))
            t2 = time.perf_counter()
            by_day = monitor(frame, profile, every="1d")
            t3 = time.perf_counter()
            monitor(frame, profile, every="10000")
            t4 = time.perf_counter()
            for name, took in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[name].append(took)
            drifted = sorted({f for w in by_day.windows for f in w.drifted})
    load_avg = os.getloadavg()
    lines = [
        "# Monitoring benchmark",
        "",
        f"{args.rows:,} logged predictions (13 float features + a score), written by ParquetSink; "
        f"median of {args.repeat} runs. The last day drifts in f0, f1 (and so the score): "
        f"flagged {', '.join(drifted)}.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at the end {load_avg[0]:.1f} "
        "(shared with other sessions).",
        "",
        "| stage | seconds (median) | rows/s |",
        "| --- | ---: | ---: |",
    ]
    for name, times in stages.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {median:.2f} | {args.rows / median:,.0f} |")
    monitor_only = statistics.median(stages["monitor, 10 daily windows"])
    total = statistics.median(stages["read logs (predlog reader)"]) + monitor_only
    lines += ["", f"Read + monitor by day: {total:.2f} s, {args.rows / total:,.0f} rows/s.", ""]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
