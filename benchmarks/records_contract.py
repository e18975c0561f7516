"""How fast the records contract converts: 1M DataFrame rows (batch) and 100k JSON records
(stream/online) of the sensors signature, against the old batch converter's cost for the same
columns (a plain numpy cast, the floor). Prints medians of 5 runs and their ratios.

    .venv/bin/python benchmarks/records_contract.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tritonpipe.records import Contract
from tritonpipe.tensors import TensorSpec

ROOT = Path(__file__).resolve().parent.parent
READINGS = ("temperature", "vibration", "pressure", "current", "rpm", "humidity")


def _median(run: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    readings = runpy.run_path(str(ROOT / "examples" / "sensors" / "generate.py"))["readings"]
    frame = readings(args.rows, seed=0)
    specs = [TensorSpec(name=n, dtype="FP32", shape=(1,)) for n in READINGS]
    specs.append(TensorSpec(name="sensor_type", dtype="BYTES", shape=(1,)))
    contract = Contract.from_specs(
        specs,
        [TensorSpec(name="alert", dtype="BYTES", shape=(1,))],
        ranges={"humidity": [0, 100]},
        categories={"sensor_type": ["motor", "pump", "compressor"]},
    )

    def floor() -> None:  # what any converter must do: cast each column, encode the strings
        for name in READINGS:
            frame[name].to_numpy().astype(np.float32).reshape(-1, 1)
        np.array([s.encode() for s in frame["sensor_type"]], dtype=object)

    columns = _median(lambda: contract.from_columns(frame))
    base = _median(floor)
    records = frame.drop(columns=["truth", "reading_id"]).head(args.records).to_dict("records")
    by_records = _median(lambda: contract.from_records(records))
    outputs = {"alert": np.array([[b"ok"], [b"alert"]] * (args.rows // 2), dtype=object)}
    to_records = _median(lambda: contract.to_columns(outputs))
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (shared)")
    print("| conversion | rows | median s | rows/s | vs cast floor |")
    print("| --- | --- | --- | --- | --- |")
    table = [
        ("from_columns (DataFrame)", args.rows, columns, f"{columns / base:.2f}"),
        ("numpy cast + encode (floor)", args.rows, base, "1.00"),
        ("from_records (JSON dicts)", args.records, by_records, ""),
        ("to_columns (text output)", args.rows, to_records, ""),
    ]
    for what, rows, seconds, ratio in table:
        print(f"| {what} | {rows:,} | {seconds:.3f} | {rows / seconds:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
