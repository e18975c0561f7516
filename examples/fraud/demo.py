"""Serve the built fraud repository and score the held-out day through Triton, one transaction per
request, over HTTP and gRPC; print ROC AUC, throughput, latency and where the logs went.

    python examples/fraud/demo.py --repository build/fraud_repository
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from feature_pipeline import DATA, history_end  # noqa: E402
from train import request_columns, roc_auc  # noqa: E402

from tritonpipe.predlog import read_logs  # noqa: E402
from tritonpipe.server import ServerOptions, TritonServer  # noqa: E402

INPUTS = {
    "account_id": "INT64",
    "amount": "FP32",
    "merchant_lat": "FP32",
    "merchant_lon": "FP32",
    "timestamp": "FP64",
}


def heldout(data: Path = DATA) -> pd.DataFrame:
    txns = pd.read_parquet(data / "transactions.parquet")
    return txns[txns["timestamp"] >= history_end(txns)].reset_index(drop=True)


def request_arrays(day: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    cols = request_columns(day)
    cols["account_id"] = day["account_id"].to_numpy()
    return {n: np.asarray(cols[n]).astype(dtype_np(t)).reshape(-1, 1) for n, t in INPUTS.items()}


def dtype_np(triton: str) -> Any:
    return {"INT64": np.int64, "FP32": np.float32, "FP64": np.float64}[triton]


async def score(
    url: str, protocol: str, arrays: dict[str, np.ndarray[Any, Any]], concurrency: int, tag: str
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], float]:
    """(probabilities, latencies in ms, seconds) for every row, one row per request."""
    if protocol == "grpc":
        import tritonclient.grpc.aio as client_mod
    else:
        import tritonclient.http.aio as client_mod  # type: ignore[no-redef]
    client = client_mod.InferenceServerClient(url)
    rows = len(arrays["account_id"])
    probs = np.zeros(rows, dtype=np.float32)
    latency = np.zeros(rows)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(rows):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            inputs = []
            for name, triton in INPUTS.items():
                tensor = client_mod.InferInput(name, [1, 1], triton)
                tensor.set_data_from_numpy(arrays[name][i : i + 1])
                inputs.append(tensor)
            start = time.perf_counter()
            result = await client.infer("fraud", inputs, request_id=f"{tag}-{i}")
            latency[i] = (time.perf_counter() - start) * 1000
            probs[i] = result.as_numpy("probability")[0, 0]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - start
    await client.close()
    return probs, latency, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("build/fraud_repository"))
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    day = heldout()
    arrays = request_arrays(day)
    labels = day["is_fraud"].to_numpy()
    print(f"held-out day: {len(day):,} transactions, {labels.sum()} fraudulent")
    logs = args.repository.resolve().parent / "prediction_logs" / "fraud"
    log_path = args.repository.parent / "fraud-tritonserver.log"
    with TritonServer(ServerOptions(repository=args.repository), log_path=log_path) as server:
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            address = url.split("://", 1)[-1]
            probs, latency, took = asyncio.run(
                score(address, protocol, arrays, args.concurrency, protocol)
            )
            print(
                f"{protocol:<5} ROC AUC {roc_auc(labels, probs):.4f}  "
                f"{len(day) / took:,.0f} predictions/s at concurrency {args.concurrency}  "
                f"p50 {np.percentile(latency, 50):.1f} ms  p99 {np.percentile(latency, 99):.1f} ms"
            )
    frame = read_logs(logs)
    print(
        f"prediction logs: {len(frame):,} records in {logs} "
        f"(tritonpipe logs read {logs}); model versions {sorted(frame['model_version'].unique())}"
    )


if __name__ == "__main__":
    main()
