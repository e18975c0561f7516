"""What scores a micro-batch: the embedded pipeline (default) or a Triton server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tritonpipe.errors import InputError, InvalidArgument, PipelineError
from tritonpipe.records.plan import published_options
from tritonpipe.tensors import Array, TensorSpec

Result = dict[str, Array] | PipelineError


class Scorer:
    """Scores requests (one event each); a failing request fails alone (returned, not raised)."""

    name: str
    # What the pipeline declares (decoding defaults to its dtypes and shapes); None: unknown.
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    # The records contract's options (ranges, allow_nan, categories, binary); None: unknown,
    # the runtime that scores judges NaN and ranges alone.
    options: dict[str, Any] | None = None

    def score(self, requests: Sequence[Mapping[str, Array]]) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or connection."""


class EmbeddedScorer(Scorer):
    """The pipeline in the worker's process: the same plan Triton runs (tritonpipe.pipeline)."""

    def __init__(self, source: str, name: str | None, threads: int | None = 1) -> None:
        from tritonpipe.pipeline import Pipeline

        self.pipeline = Pipeline.load(source, name, threads=threads, traced_as="stream")
        self.name = self.pipeline.name
        self.inputs, self.outputs = self.pipeline.inputs, self.pipeline.outputs
        contract = self.pipeline.contract
        self.options = {
            "ranges": {
                r.name: [r.low, r.high]
                for r in contract.inputs
                if r.low is not None or r.high is not None
            },
            "allow_nan": [r.name for r in contract.inputs if r.allow_nan],
            "categories": {r.name: list(r.categories) for r in contract.inputs if r.categories},
            "binary": [r.name for r in contract.outputs if r.binary],
        }

    def score(self, requests: Sequence[Mapping[str, Array]]) -> list[Result]:
        return self.pipeline.run_requests(requests)

    def close(self) -> None:
        self.pipeline.close()  # a shadowing pipeline's challenger finishes, its logs flush


class TritonScorer(Scorer):
    """A Triton server (``--url``): one batched request; on a rejected batch, each event alone,
    so a poison event fails by itself.

    With tracing on (``TRITONPIPE_TRACE_URL``, as for the embedded scorer) each request is a
    client span, ``stream <name>``, whose ``traceparent`` goes with it: the server's spans (and
    a fused model's step spans) join its trace (:mod:`tritonpipe.tracing.calls`)."""

    def __init__(self, url: str, name: str) -> None:
        from tritonpipe.client import Client
        from tritonpipe.tracing.calls import CallTracing

        self.client = Client(url)
        self.name = name
        info = self.client.model(name)
        self.inputs, self.outputs = info.inputs, info.outputs
        self.options = served_options(info.config)
        self.tracing = CallTracing.from_env(label="stream", model=name, server=url)

    def _infer(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        if self.tracing is None:
            return self.client.infer(self.name, arrays)
        rows = len(next(iter(arrays.values()))) if arrays else 0
        with self.tracing.call(rows) as headers:
            return self.client.infer(self.name, arrays, headers=headers)

    def score(self, requests: Sequence[Mapping[str, Array]]) -> list[Result]:
        if not requests:
            return []
        try:
            merged = {k: np.concatenate([r[k] for r in requests]) for k in requests[0]}
            out = self._infer(merged)
            return [{k: v[i : i + 1] for k, v in out.items()} for i in range(len(requests))]
        except (InputError, InvalidArgument, ValueError):
            return [self._one(r) for r in requests]

    def _one(self, request: Mapping[str, Array]) -> Result:
        try:
            return self._infer(request)
        except (InputError, InvalidArgument) as exc:
            return PipelineError(f"model '{self.name}': {exc}", invalid=True)

    def close(self) -> None:
        self.client.close()
        if self.tracing is not None:
            self.tracing.flush()  # the last requests' spans leave with the worker


def served_options(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The records contract's options a tritonpipe-built Python model publishes in its config
    (``tritonpipe.contract``); None for other models (native, ensembles)."""
    params = config.get("parameters") or {}
    if "tritonpipe.plan" not in params:
        return None
    return published_options(config) or {}


def make_scorer(source: str, name: str | None, url: str | None, **options: Any) -> Scorer:
    if url is None:
        return EmbeddedScorer(source, name, **options)
    if name is None:
        raise PipelineError(
            "--url needs the model or ensemble name (job config `name:`)", invalid=True
        )
    return TritonScorer(url, name)
