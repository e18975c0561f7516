"""The serving benchmark's Ray Serve peer: the digits steps (the same stage functions and ONNX
file the pipeline serves) in a deployment whose ``@serve.batch`` method merges requests.

    TRITONPIPE_STAGES=examples/digits/stages.py TRITONPIPE_ONNX=.../model.onnx \
        python -m benchmarks.ray_peer --port 8000

Starts a local Ray cluster (one CPU per replica, one replica per core) and Serve's HTTP proxy,
prints ``ready`` and serves until SIGTERM. POST /predict with a PNG body answers
{"labels": [...], "probabilities": [...]}.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

WORKERS = int(os.environ.get("TRITONPIPE_WORKERS", os.cpu_count() or 1))


@serve.deployment(num_replicas=WORKERS, ray_actor_options={"num_cpus": 1}, max_ongoing_requests=128)
class Digits:
    def __init__(self) -> None:
        import onnxruntime as ort

        from tritonpipe.loading import load_function

        self.preprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:preprocess")
        self.postprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:postprocess")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one replica per core, as the pipeline's instances
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["TRITONPIPE_ONNX"], options)

    # No wait for a batch to fill (Ray's default waits 10 ms): what is queued when the replica
    # is free forms the batch, as Triton's dynamic batcher with no queue delay.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def predict(self, bodies: list[bytes]) -> list[dict[str, Any]]:
        image = np.array([[b] for b in bodies], dtype=object)
        pixels = self.preprocess(image=image)["pixels"]
        (logits,) = self.session.run(["logits"], {"pixels": pixels})
        out = self.postprocess(logits=logits, k=3)
        return [
            {"labels": labels.tolist(), "probabilities": probs.tolist()}
            for labels, probs in zip(out["labels"], out["probabilities"], strict=True)
        ]

    async def __call__(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.predict(await request.body()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Digits.bind(), route_prefix="/predict")
    print("ready", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
