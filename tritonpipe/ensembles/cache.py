"""Triton's response cache for a pipeline: which pipelines may have one, and why not.

Triton answers a cached request from the inputs alone, so a pipeline may only be cached when the
same input always gets the same answer and nothing is owed to a side effect of the request.
Each reason is one function of (spec, ensemble name); add a reason by adding one to ``REASONS``.
"""

from __future__ import annotations

from collections.abc import Callable

from tritonpipe.ensembles.spec import PipelineSpec, shadowed_models
from tritonpipe.errors import SpecError


def _feature_lookups(spec: PipelineSpec, name: str) -> str | None:
    steps = [s.model for s in spec.ensembles[name].step_refs() if s.model in spec.features]
    if not steps:
        return None
    return (
        f"step(s) {', '.join(steps)} read features from an online store, which change between "
        "requests with the same input; a cached answer would serve stale features"
    )


def _prediction_log(spec: PipelineSpec, name: str) -> str | None:
    if spec.ensembles[name].log is None:
        return None
    return (
        "it logs every prediction (log:), and a request answered from the cache never reaches "
        "the model, so it would not be logged"
    )


def _shadow_scoring(spec: PipelineSpec, name: str) -> str | None:
    shadowed = sorted(shadowed_models(spec, name))
    if not shadowed:
        return None
    return (
        f"model(s) {', '.join(shadowed)} shadow a challenger (shadow:), which must score every "
        "sampled request; a request answered from the cache reaches neither version"
    )


REASONS: list[Callable[[PipelineSpec, str], str | None]] = [
    _feature_lookups,
    _prediction_log,
    _shadow_scoring,
]


def cache_refusals(spec: PipelineSpec, name: str) -> list[str]:
    """Why ensemble ``name`` must not be cached (empty when it may be)."""
    return [reason for check in REASONS if (reason := check(spec, name)) is not None]


def check_response_cache(spec: PipelineSpec, where: str) -> None:
    """Raise :class:`SpecError` for every ensemble with ``response_cache: true`` that may not have
    one; ``where`` (the spec's path) starts each line."""
    lines = [
        f"{where}: ensembles.{name}.response_cache: refused: {reason}"
        for name, ensemble in spec.ensembles.items()
        if ensemble.response_cache
        for reason in cache_refusals(spec, name)
    ]
    if lines:
        raise SpecError("\n".join(lines))
