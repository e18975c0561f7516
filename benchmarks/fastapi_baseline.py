"""The server users write themselves, as the serving benchmark's baseline: FastAPI + onnxruntime
running the digits steps (the same stage functions and ONNX file the pipeline serves).

    TRITONPIPE_STAGES=examples/digits/stages.py TRITONPIPE_ONNX=.../model.onnx \
        uvicorn benchmarks.fastapi_baseline:app --workers 2

POST /predict with a PNG body answers {"labels": [...], "probabilities": [...]}.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

from tritonpipe.loading import load_function

_preprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:preprocess")
_postprocess = load_function(f"{os.environ['TRITONPIPE_STAGES']}:postprocess")
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1  # one worker per core, as the pipeline's instances
_session = ort.InferenceSession(os.environ["TRITONPIPE_ONNX"], _options)

app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> dict[str, Any]:
    image = np.array([[await request.body()]], dtype=object)
    pixels = _preprocess(image=image)["pixels"]
    (logits,) = _session.run(["logits"], {"pixels": pixels})
    out = _postprocess(logits=logits, k=3)
    return {"labels": out["labels"][0].tolist(), "probabilities": out["probabilities"][0].tolist()}
