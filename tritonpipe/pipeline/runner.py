"""``Pipeline``: a compiled plan run in-process with tritonpipe's runtime."""

from __future__ import annotations

import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonpipe.backend.runtime import Arrays, Runner, StepFailed
from tritonpipe.client.checks import ModelInfo, check_inputs, chunks, join
from tritonpipe.errors import (
    InputError,
    PipelineError,
    PipelineInputError,
    RecordError,
    TritonPipeError,
)
from tritonpipe.pipeline.plans import default_name, from_repository, from_spec, needs_build
from tritonpipe.records import Contract, Converted, Refusal
from tritonpipe.tensors import Array, TensorSpec
from tritonpipe.tracing.steps import PipelineTracing

if TYPE_CHECKING:
    from tritonpipe.shadow.inprocess import PipelineShadows


@dataclass(frozen=True, kw_only=True)
class StepTime:
    """What one step did since the pipeline loaded: batches, requests and time spent."""

    executions: int
    requests: int
    seconds: float


def _specs(decls: Sequence[Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name=d.tensor, dtype=d.dtype, shape=d.shape) for d in decls)


def _error(name: str, failed: StepFailed) -> PipelineError:
    """In the caller's process there is no server log: what the library said goes into the
    message (its traceback is the exception's cause)."""
    detail = f": {failed.detail}" if failed.detail else ""
    return PipelineError(f"pipeline '{name}': {failed}{detail}", invalid=failed.invalid)


class Pipeline:
    """An ensemble (or single stage or model) run in the caller's process, no server.

    The same stage code, onnxruntime / torch runtimes, batching and error semantics as the model
    ``tritonpipe build`` writes for Triton: calls above ``max_batch_size`` run in chunks, step
    outputs are checked against their declarations, and a failing step raises
    :class:`PipelineError` naming it (``invalid`` when the input was at fault).
    """

    def __init__(
        self, runner: Runner, plan: Mapping[str, Any] | None = None, *, traced_as: str = "pipeline"
    ) -> None:
        self._runner = runner
        self.name = runner.name
        self.inputs = _specs(runner.inputs)
        self.outputs = _specs(runner.outputs)
        self.max_batch_size = runner.max_batch_size
        self._info = ModelInfo(
            name=self.name,
            max_batch_size=self.max_batch_size,
            inputs=self.inputs,
            outputs=self.outputs,
            optional=frozenset(),
            config={},
        )
        self._times: dict[str, list[int]] = {s.name: [0, 0, 0] for s in runner.steps}
        self._built: tempfile.TemporaryDirectory[str] | None = None  # removed with the pipeline
        self._output_names = [d.tensor for d in runner.outputs]
        self._shadows: PipelineShadows | None = None  # a spec's shadow: (tritonpipe.shadow)
        self._closing: weakref.finalize[Any, Any] | None = None
        # The records contract: options (ranges, categories, binary outputs) from the plan.
        contract = plan.get("contract", {}) if plan is not None else {}
        self.contract = Contract.from_specs(self.inputs, self.outputs, **contract)
        # With TRITONPIPE_TRACE_URL (or OTEL_EXPORTER_OTLP_*) set: a span per call and per step.
        self._tracing = PipelineTracing.from_env(runner, label=traced_as)

    @classmethod
    def load(
        cls,
        source: str | Path,
        name: str | None = None,
        *,
        threads: int | None = None,
        traced_as: str = "pipeline",
    ) -> Pipeline:
        """Load ``name`` from a pipeline spec (YAML) or a repository ``tritonpipe build`` wrote.

        ``threads`` caps onnxruntime's and torch's intra-op threads (Triton's models use 1).
        ``traced_as`` names the runner in trace spans (``batch``, ``stream``; see
        :mod:`tritonpipe.tracing`).
        """
        path = Path(source)
        built: tempfile.TemporaryDirectory[str] | None = None
        if not path.is_dir() and needs_build(path):
            # Feature lookups and registry models exist only once built: build into a folder
            # the pipeline keeps, then run the built plans (the very files Triton would load).
            from tritonpipe.ensembles import build_repository

            built = tempfile.TemporaryDirectory(prefix="tritonpipe-pipeline-")
            build_repository(path, Path(built.name) / "repo")
            path = Path(built.name) / "repo"
            name = name or default_name(source)
        if path.is_dir():
            if name is None:
                raise PipelineError(f"{path}: name the model or ensemble to run", invalid=True)
            plan = from_repository(path, name)
        else:
            plan = from_spec(path, name)
        try:
            runner = Runner(plan, path if path.is_dir() else path.parent, threads=threads)
            pipe = cls(runner, plan, traced_as=traced_as)
            pipe._built = built
            if path.is_dir():
                from tritonpipe.shadow.inprocess import PipelineShadows

                # A spec's shadow: scores here too; its logs' paths start at the spec's folder
                # (built from a spec) or beside the repository (as when Triton serves it).
                base = Path(source).resolve().parent
                pipe._attach_shadows(PipelineShadows.find(path, plan["name"], base))
            return pipe
        except TritonPipeError:
            raise
        except Exception as exc:  # a stage file that fails to import, a corrupt model file
            raise PipelineError(
                f"pipeline '{plan['name']}' failed to load: {type(exc).__name__}: {exc}",
                invalid=False,
            ) from exc

    def _attach_shadows(self, shadows: PipelineShadows | None) -> None:
        if shadows is None:
            return
        self._shadows = shadows
        self._runner.keep = list(dict.fromkeys([*self._runner.keep, *shadows.keep]))
        self._closing = weakref.finalize(
            self, shadows.close
        )  # run once: here, when dropped, or at exit

    def close(self) -> None:
        """Let a shadowing pipeline's challengers score what they have queued and flush the
        prediction logs (also done when the pipeline is garbage-collected, or at exit)."""
        if self._closing is not None:
            self._closing()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answered(
        self, arrays: Arrays, out: Arrays, ms: float, ids: list[str] | None = None
    ) -> Arrays:
        """The caller's outputs; a shadowing pipeline logs the batch and samples it first."""
        if self._shadows is None:
            return out
        first = out[self._output_names[0]] if self._output_names else None
        rows = int(first.shape[0]) if first is not None and first.ndim else 1
        self._shadows.after_run({**arrays, **out}, rows, ms, ids)
        return {name: out[name] for name in self._output_names}

    def __call__(
        self,
        inputs: Any,
        *,
        request_ids: Sequence[str] | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Array]:
        """Run on one batch (any size: split by ``max_batch_size``); outputs by name.

        ``inputs``: arrays by input name, a dict of columns, a pandas DataFrame or a pyarrow
        Table. Values convert to the pipeline's dtypes and shapes by the records contract
        (:mod:`tritonpipe.records`: float64 to FP32, 1-D columns to [n, 1], lists to vectors);
        a bad value raises :class:`PipelineError` (``invalid``, with ``refusals``) naming the
        row and input, e.g. ``record 3: input 'temperature': null``.

        ``request_ids``: one per row, the ids a shadowing pipeline logs them under (labels
        join on them in ``tritonpipe logs compare``); random ids otherwise.

        With tracing on, the call is a span (under ``traceparent``, a W3C header value, else
        the caller's active OpenTelemetry span) holding one span per step run.
        """
        if self._tracing is None:
            return self._call(inputs, request_ids)
        with self._tracing.call(traceparent):
            return self._call(inputs, request_ids)

    def _call(self, inputs: Any, request_ids: Sequence[str] | None) -> dict[str, Array]:
        if self.max_batch_size <= 0:  # unbatched: arrays exactly as the model takes them
            try:
                arrays, batch = check_inputs(self._info, inputs)
            except InputError as exc:
                raise PipelineInputError(f"pipeline '{self.name}': {exc}") from exc
            return self._run(arrays)
        converted = self._convert(inputs)
        if converted.refusals:
            error = RecordError(converted.refusals)
            raise PipelineInputError(
                f"pipeline '{self.name}': {error}", refusals=converted.refusals
            )
        arrays = converted.inputs
        if request_ids is not None and len(request_ids) != converted.count:
            raise PipelineInputError(
                f"pipeline '{self.name}': {len(request_ids)} request ids for {converted.count} rows"
            )
        parts, done = [], 0
        for part in chunks(arrays, converted.count, self.max_batch_size):
            rows = len(next(iter(part.values()))) if part else 0
            ids = None if request_ids is None else list(request_ids[done : done + rows])
            parts.append(self._run(part, ids))
            done += rows
        return join(parts) if parts else {}

    def _convert(self, inputs: Any) -> Converted:
        try:
            # Arrays by input name are checked strictly (an unknown name is a typo); a dict of
            # plain columns (lists, as ``DataFrame.to_dict("list")`` gives) that holds every
            # input is a table, whose other columns (ids, labels) are ignored as a DataFrame's.
            if isinstance(inputs, Mapping):
                names = {s.name for s in self.inputs}
                unknown = sorted(set(inputs) - names)
                arrays = all(isinstance(v, np.ndarray) for v in inputs.values())
                if unknown and (arrays or not names <= set(inputs)):
                    raise RecordError(
                        [],
                        message=f"model '{self.name}' has no input "
                        f"{', '.join(map(repr, unknown))} (inputs: "
                        f"{', '.join(s.name for s in self.inputs)})",
                    )
                if arrays:
                    return self.contract.check_arrays(inputs)
            return self.contract.from_columns(inputs)
        except RecordError as exc:
            raise PipelineInputError(f"pipeline '{self.name}': {exc}") from None

    def run_records(
        self,
        records: Sequence[Any],
        id_field: str | None = None,
        *,
        traceparent: str | None = None,
    ) -> list[dict[str, Any] | Refusal]:
        """Score records (JSON/msgpack dicts): for each, its outputs as record values (``str``
        for text, ``bytes`` for binary, numbers, lists) or the :class:`Refusal` that kept it
        out (a bad value, or an output that cannot be encoded). Traced as ``__call__``."""
        if self._tracing is None:
            return self._records(records, id_field)
        with self._tracing.call(traceparent, len(records)):
            return self._records(records, id_field)

    def _records(
        self, records: Sequence[Any], id_field: str | None
    ) -> list[dict[str, Any] | Refusal]:
        converted = self.contract.from_records(records, id_field=id_field)
        results: list[dict[str, Any] | Refusal] = [*converted.refusals]
        order = [r.row for r in converted.refusals]
        accepted = np.flatnonzero(converted.accepted)
        if len(accepted):
            inputs = converted.accepted_inputs()
            parts = [self._run(c) for c in chunks(inputs, len(accepted), self.max_batch_size)]
            values, failures = self.contract.to_records(join(parts))
            failed = {f.row: f for f in failures}
            for i, row in enumerate(accepted):
                results.append(failed[i] if i in failed else values[i])
                order.append(int(row))
        ranked = sorted(zip(order, range(len(order)), strict=True))
        return [results[i] for _, i in ranked]

    def _run(self, arrays: dict[str, Array], ids: list[str] | None = None) -> dict[str, Array]:
        start = time.perf_counter()
        try:
            out = self._runner.run(arrays)
        except StepFailed as exc:
            raise _error(self.name, exc) from exc
        finally:
            self._collect()
        return self._answered(arrays, out, (time.perf_counter() - start) * 1000, ids)

    def run_requests(
        self, requests: Sequence[Mapping[str, Any]], *, traceparent: str | None = None
    ) -> list[dict[str, Array] | PipelineError]:
        """Many requests as Triton's dynamic batcher hands them to a model: merged where shapes
        agree, split back, and a failure fails only its own request (returned, not raised).
        Traced as ``__call__``: one span for the call, the step runs under it."""
        if self._tracing is None:
            return self._requests(requests)
        with self._tracing.call(traceparent, len(requests)):
            return self._requests(requests)

    def _requests(
        self, requests: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Array] | PipelineError]:
        results: list[dict[str, Array] | PipelineError | None] = [None] * len(requests)
        valid: list[int] = []
        checked: list[dict[str, Array]] = []
        for i, request in enumerate(requests):
            try:
                checked.append(check_inputs(self._info, request)[0])
                valid.append(i)
            except InputError as exc:
                results[i] = PipelineInputError(f"pipeline '{self.name}': {exc}")
        start = time.perf_counter()
        ran = self._runner.run_requests(checked)
        ms = (time.perf_counter() - start) * 1000
        for i, arrays, result in zip(valid, checked, ran, strict=True):
            if isinstance(result, StepFailed):
                results[i] = _error(self.name, result)
            else:
                results[i] = self._answered(arrays, result, ms)
        self._collect()
        return [r for r in results if r is not None]

    def _collect(self) -> None:
        for name, executions, requests, ns in self._runner.take_timings():
            total = self._times[name]
            total[0] += executions
            total[1] += requests
            total[2] += ns

    def step_times(self) -> dict[str, StepTime]:
        """Per step, in order: batches run, requests served and seconds spent since loading."""
        return {
            name: StepTime(executions=e, requests=r, seconds=ns / 1e9)
            for name, (e, r, ns) in self._times.items()
        }
