"""Input and output options of a compiled plan, gathered from the steps that consume each
pipeline input and produce each output. Works on the plan's bound steps (duck-typed, so this
module imports nothing of ``ensembles``); the result is JSON, stored in the runtime's plan."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tritonpipe.tensors import TensorSpec

# The config parameter ``tritonpipe build`` publishes the contract's options in (JSON), on every
# model and ensemble whose inputs have rules: the one set of input rules a served config carries.
CONTRACT_PARAMETER = "tritonpipe.contract"


def published_options(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The contract's options a served config publishes (``tritonpipe.contract``, in Triton's
    JSON form of the config); None without the parameter or when it does not parse as a JSON
    object (a hand-written one)."""
    params = config.get("parameters") or {}
    raw = params.get(CONTRACT_PARAMETER)
    text = raw.get("string_value") if isinstance(raw, Mapping) else None
    if not text:
        return None
    try:
        options = json.loads(text)
    except ValueError:
        return None
    return dict(options) if isinstance(options, dict) else None


def contract_options(
    steps: Sequence[Any], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> dict[str, Any]:
    """Keyword arguments for :meth:`Contract.from_specs` (JSON: lists and dicts only).

    A pipeline input takes its consumers' options: a stage tensor's ``range``, ``allow_nan``
    and ``categories``, a model's manifest ``value_ranges`` (the narrowest range wins, NaN only
    when every consumer allows it); an output its producer's ``binary`` flag."""
    wanted = {t.name for t in inputs}
    produced = {t.name for t in outputs}
    ranges: dict[str, list[float]] = {}
    nan: dict[str, bool] = {}
    categories: dict[str, list[str]] = {}
    binary: list[str] = []
    for bound in steps:
        step = bound.step
        declared = {t.name: t for t in getattr(step.options, "inputs", [])}
        manifest_ranges = dict(getattr(step, "value_ranges", {}))
        for spec in step.inputs:
            tensor = bound.input_map.get(spec.name, spec.name)
            if tensor not in wanted:
                continue
            options = declared.get(spec.name)
            span: list[float] | None = None
            if options is not None and options.range is not None:
                span = [float(v) for v in options.range]
            elif spec.name in manifest_ranges:
                low, high = manifest_ranges[spec.name]
                span = [float(low), float(high - 1)]
            if span is not None:
                old = ranges.get(tensor)
                ranges[tensor] = (
                    span if old is None else [max(old[0], span[0]), min(old[1], span[1])]
                )
            allows = options is not None and options.allow_nan
            nan[tensor] = nan.get(tensor, True) and allows
            if options is not None and options.categories is not None:
                categories.setdefault(tensor, list(options.categories))
        produces = {t.name: t for t in getattr(step.options, "outputs", [])}
        for spec in step.outputs:
            tensor = bound.output_map.get(spec.name, spec.name)
            options = produces.get(spec.name)
            if tensor in produced and options is not None and options.binary:
                binary.append(tensor)
    return {
        "ranges": ranges,
        "allow_nan": sorted(t for t, ok in nan.items() if ok),
        "categories": categories,
        "binary": sorted(set(binary)),
    }
