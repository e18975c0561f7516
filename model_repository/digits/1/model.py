"""tritonpipe's Python-backend model, copied verbatim into every generated Python model.

It only moves tensors between Triton and the pipeline runtime (``tritonpipe_runtime.py``, copied
beside it), which runs the steps listed in ``plan.json``: one step for a single stage or model,
several for a fused model. Requests merged by the dynamic batcher run as one batch and are split
back; a merged batch that fails runs request by request, so one bad request fails alone. Each
step's executions, requests and time are reported as Triton custom metrics on the metrics
endpoint (labels ``model``, ``step`` and ``position``, the step's place in the plan). With
``TRITONPIPE_TRACE_URL`` set, each step run is also an OpenTelemetry span under the request's
Triton trace (tritonpipe.tracing, installed with tritonpipe).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tritonpipe_runtime import Arrays, Runner, StepFailed  # noqa: E402

NO_SPAN: AbstractContextManager[None] = nullcontext()  # reusable: a request batch nobody traces
METRICS = (
    ("tritonpipe_step_executions_total", "Batches a pipeline step ran"),
    ("tritonpipe_step_requests_total", "Inference requests a pipeline step served"),
    ("tritonpipe_step_duration_us_total", "Cumulative time a pipeline step ran, in microseconds"),
)


class _StepMetrics:
    """Counters per step. Each increment is a message to the server process that waits for its
    answer (about a millisecond on a loaded machine, nine per flush for three steps), so counts
    gather here and a background thread pushes them every ``FLUSH_S``, off the request path."""

    FLUSH_S = 1.0

    def __init__(self, model: str, steps: list[str]) -> None:
        # Triton drops a family's metrics when the family object is collected: keep them.
        self.families = [
            pb_utils.MetricFamily(name=n, description=d, kind=pb_utils.MetricFamily.COUNTER)
            for n, d in METRICS
        ]
        self.counters = {
            step: [
                f.Metric(labels={"model": model, "step": step, "position": str(i)})
                for f in self.families
            ]
            for i, step in enumerate(steps)
        }
        self.pending = {step: [0, 0, 0] for step in steps}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="tritonpipe-metrics", daemon=True)
        self.thread.start()

    def report(self, timings: list[tuple[str, int, int, int]]) -> None:
        with self.lock:
            for step, executions, requests, nanoseconds in timings:
                total = self.pending[step]
                total[0] += executions
                total[1] += requests
                total[2] += nanoseconds

    def _loop(self) -> None:
        while not self.stopped.wait(self.FLUSH_S):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            taken = {step: list(total) for step, total in self.pending.items() if total[0]}
            for step in taken:
                self.pending[step][:] = [0, 0, 0]
        for step, (executions, requests, nanoseconds) in taken.items():
            done, served, spent = self.counters[step]
            done.increment(executions)
            served.increment(requests)
            spent.increment(nanoseconds / 1000)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.flush()


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.name = args["model_name"]
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        gpu = args.get("model_instance_kind") == "GPU"
        device_id = int(args.get("model_instance_device_id", 0))
        # One intra-op thread per instance: Triton scales out with instances, not threads.
        self.runner = Runner.from_folder(folder, gpu=gpu, device_id=device_id, threads=1)
        if (folder / "warmup.json").is_file():  # a model Triton's model_warmup cannot warm
            from tritonpipe.backend.warmup import warm

            warm(self.runner, folder, pb_utils.Logger.log_warn)
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.metrics = _StepMetrics(self.name, [s.name for s in self.runner.steps])
        self.tracing = None
        if os.environ.get("TRITONPIPE_TRACE_URL"):
            from tritonpipe.tracing.triton import TritonTracing

            self.tracing = TritonTracing.from_env(self.runner)
        # Prediction logs (tritonpipe.predlog, installed with tritonpipe): only a model whose
        # config carries `tritonpipe.predlog` (the one answering a logging ensemble) logs.
        self.predlog = None
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if "tritonpipe.predlog" in params:
            from tritonpipe.predlog.triton import TritonPredictionLog

            repository = Path(args["model_repository"]).parent
            self.predlog = TritonPredictionLog.from_parameters(params, repository, pb_utils)
            if self.predlog is not None:
                self.predlog.warm()
                # Logged tensors that are not request inputs (a fused model's feature vector).
                self.runner.keep = [t for t in self.predlog.tensors() if t not in self.inputs]
        # Shadow scoring (tritonpipe.shadow): a challenger beside this model's scoring step.
        self.shadow = None
        if self.predlog is not None and (folder / "shadow.json").is_file():
            from tritonpipe.shadow.runtime import ShadowScoring

            base = Path(args["model_repository"]).parent.parent  # as the prediction log's
            self.shadow = ShadowScoring.from_folder(folder, self.predlog.config, base)
            if self.shadow is not None:  # returned beside the outputs, never in the answer
                self.runner.keep = list(dict.fromkeys([*self.runner.keep, *self.shadow.carry]))

    def execute(self, requests: list[Any]) -> list[Any]:
        traced = self.tracing is not None and self.tracing.begin(requests)
        arrays = [self._read(r) for r in requests]
        start = time.perf_counter()
        results = self.runner.run_requests(arrays)
        # What each answer waited for the pipeline (lookups and steps of its whole batch).
        latency_ms = (time.perf_counter() - start) * 1000
        self.metrics.report(self.runner.take_timings())
        responses = [self._respond(q, r) for q, r in zip(requests, results, strict=True)]
        if self.predlog is not None:  # a local sink has the records before the answers leave
            kept = [
                {**a, **{t: r[t] for t in self.runner.keep}} if isinstance(r, dict) else a
                for a, r in zip(arrays, results, strict=True)
            ]
            # One id per request, so a shadow's records pair with the champion's.
            ids = [r.request_id() or uuid.uuid4().hex for r in requests]
            span = NO_SPAN
            if traced and self.tracing is not None:
                span = self.tracing.log(self.predlog.sink_type, len(requests))
            with span:
                self.predlog.after_execute(
                    requests, kept, responses, ids=ids, latency_ms=latency_ms
                )
            if self.shadow is not None:  # queued only: the challenger runs after the answer
                self.shadow.submit(ids, arrays, results)
        if traced and self.tracing is not None:
            self.tracing.end()  # spans queued; sent by the exporter's thread
        return responses

    def finalize(self) -> None:
        self.metrics.close()
        if self.tracing is not None:
            self.tracing.close()
        if self.shadow is not None:
            self.shadow.close()
        if self.predlog is not None:  # writes every queued record on a clean stop
            self.predlog.finalize()

    def _read(self, request: Any) -> Arrays:
        result = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                result[name] = tensor.as_numpy()
        return result

    def _respond(self, request: Any, result: Arrays | StepFailed) -> Any:
        if not isinstance(result, StepFailed):
            tensors = [pb_utils.Tensor(n, result[n]) for n in self.outputs]
            return pb_utils.InferenceResponse(tensors)
        if result.invalid:
            error = pb_utils.TritonError(str(result), pb_utils.TritonError.INVALID_ARG)
            return pb_utils.InferenceResponse(error=error)
        return pb_utils.InferenceResponse(error=self._internal(request, result))

    def _internal(self, request: Any, result: StepFailed) -> Any:
        """A step's own failure: one line and a request id for the caller; what the library
        said and the traceback (which may name the exporting machine's files) in the log."""
        request_id = request.request_id() or uuid.uuid4().hex[:12]
        detail = f" ({result.detail})" if result.detail else ""
        pb_utils.Logger.log_error(
            f"model '{self.name}' request {request_id}: {result}{detail}\n{result.trace}"
        )
        message = f"{result}; request id {request_id} (its traceback is in the server log)"
        return pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL)
