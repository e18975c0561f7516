"""The serving benchmark's BentoML peer: the digits steps (the same stage functions and ONNX file
the pipeline serves) behind a batchable API, so BentoML's adaptive batcher merges requests.

    TRITONPIPE_STAGES=examples/digits/stages.py TRITONPIPE_ONNX=.../model.onnx \
        bentoml serve benchmarks.bentoml_peer:Digits --port 3000

POST /predict with a multipart form holding the PNG as ``images`` (BentoML's file input) answers
a list with one {"labels": [...], "probabilities": [...]} per image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

WORKERS = int(os.environ.get("TRITONPIPE_WORKERS", os.cpu_count() or 1))


@bentoml.service(workers=WORKERS, logging={"access": {"enabled": False}})
class Digits:
    def __init__(self) -> None:
        import onnxruntime as ort

        from tritonpipe.loading import load_function

        self.preprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:preprocess")
        self.postprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:postprocess")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one worker per core, as the pipeline's instances
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["TRITONPIPE_ONNX"], options)

    # Adaptive batching: BentoML merges the lists of concurrent requests (up to 64 images, as the
    # pipeline's max_batch_size) and splits the answer back.
    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, images: list[Path]) -> list[dict[str, Any]]:
        image = np.array([[p.read_bytes()] for p in images], dtype=object)
        pixels = self.preprocess(image=image)["pixels"]
        (logits,) = self.session.run(["logits"], {"pixels": pixels})
        out = self.postprocess(logits=logits, k=3)
        return [
            {"labels": labels.tolist(), "probabilities": probs.tolist()}
            for labels, probs in zip(out["labels"], out["probabilities"], strict=True)
        ]
