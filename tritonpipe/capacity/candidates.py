"""What a sweep varies: serving knobs per model, the grid of their values, and applying one
candidate to a running tritonserver (explicit model control: a config override, no restart)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tritonpipe.errors import PerfError

# The knobs, in the order a candidate is written: instance count, largest batch, how long the
# dynamic batcher waits for a fuller batch, and the one batch size it prefers (0: none).
KNOBS = ("count", "max_batch_size", "max_queue_delay_us", "preferred_batch_size")
Settings = dict[str, dict[str, int]]  # model -> knob -> value


@dataclass(frozen=True)
class Dimension:
    """One knob of one model and the values it takes, smallest first."""

    model: str
    knob: str
    values: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.model}.{self.knob}"


@dataclass(frozen=True)
class Grid:
    """The declared search space: the product of its dimensions' values."""

    dimensions: tuple[Dimension, ...]

    def size(self) -> int:
        total = 1
        for d in self.dimensions:
            total *= len(d.values)
        return total

    def settings(self, point: tuple[int, ...]) -> Settings:
        """The candidate at ``point`` (one value index per dimension)."""
        out: Settings = {}
        for d, i in zip(self.dimensions, point, strict=True):
            out.setdefault(d.model, {})[d.knob] = d.values[i]
        return out

    def valid(self, point: tuple[int, ...]) -> bool:
        """A preferred batch size larger than the model's max_batch_size is not a config."""
        return all(
            s.get("preferred_batch_size", 0) <= s.get("max_batch_size", 1 << 30)
            for s in self.settings(point).values()
        )


def make_grid(models: list[str], values: Mapping[str, list[int]]) -> Grid:
    """Every knob given in ``values`` for every model in ``models``; knobs with one value
    are still set, so each candidate's config is complete."""
    unknown = sorted(set(values) - set(KNOBS))
    if unknown:
        raise PerfError(f"unknown sweep knob(s) {unknown}: use {', '.join(KNOBS)}")
    dims = []
    for model in models:
        for knob in KNOBS:
            given = sorted(set(values.get(knob, [])))
            if not given:
                continue
            low = 0 if knob in ("max_queue_delay_us", "preferred_batch_size") else 1
            if given[0] < low:
                raise PerfError(f"sweep knob {knob}: values must be >= {low}, got {given[0]}")
            dims.append(Dimension(model, knob, tuple(given)))
    if not dims:
        raise PerfError("the sweep grid is empty: give at least one knob's values")
    return Grid(tuple(dims))


def key(settings: Settings) -> str:
    """A canonical text for a candidate: the results file's key."""
    return json.dumps({m: dict(sorted(k.items())) for m, k in sorted(settings.items())})


def describe(settings: Settings) -> str:
    short = {
        "count": "n",
        "max_batch_size": "b",
        "max_queue_delay_us": "d",
        "preferred_batch_size": "p",
    }
    parts = []
    for model, knobs in settings.items():
        text = ",".join(f"{short[k]}={knobs[k]}" for k in KNOBS if k in knobs)
        parts.append(f"{model}[{text}]" if len(settings) > 1 else text)
    return " ".join(parts)


def edit_config(config: dict[str, Any], knobs: Mapping[str, int]) -> dict[str, Any]:
    """A copy of a model's config (Triton's JSON form) with ``knobs`` applied."""
    out: dict[str, Any] = json.loads(json.dumps(config))
    if "count" in knobs:
        groups = out.get("instance_group") or [{"kind": "KIND_CPU"}]
        groups[0]["count"] = knobs["count"]
        out["instance_group"] = groups[:1]
    if "max_batch_size" in knobs:
        out["max_batch_size"] = knobs["max_batch_size"]
    batching = {"max_queue_delay_microseconds": 0, **(out.get("dynamic_batching") or {})}
    if "max_queue_delay_us" in knobs:
        batching["max_queue_delay_microseconds"] = knobs["max_queue_delay_us"]
    if "preferred_batch_size" in knobs:
        preferred = knobs["preferred_batch_size"]
        batching["preferred_batch_size"] = [preferred] if preferred else []
    largest = out.get("max_batch_size", 0)
    batching["preferred_batch_size"] = [
        b for b in batching.get("preferred_batch_size", []) if b <= largest
    ]
    if largest > 0:
        out["dynamic_batching"] = batching
    return out


class ServerConfigs:
    """Reads and reloads model configs on a server started with explicit model control."""

    def __init__(self, http_address: str) -> None:
        import tritonclient.http as triton_http

        self.client = triton_http.InferenceServerClient(http_address, network_timeout=300.0)
        self.originals: dict[str, dict[str, Any]] = {}  # as first read, restored at the end
        self.parts: dict[str, list[str]] = {}
        self.batch: dict[str, int] = {}  # max_batch_size each model is loaded with now

    def config(self, model: str) -> dict[str, Any]:
        try:
            return dict(self.client.get_model_config(model))
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types
            raise PerfError(f"model '{model}': cannot read its config ({exc})") from None

    def composing(self, model: str) -> list[str]:
        """The models an ensemble runs (nested ensembles expanded); [] for any other model."""
        if model not in self.parts:
            names: list[str] = []
            for step in self.config(model).get("ensemble_scheduling", {}).get("step", []):
                inner = self.composing(step["model_name"])
                names += inner or [step["model_name"]]
            self.parts[model] = names
        return self.parts[model]

    def _load(self, model: str, config: dict[str, Any]) -> None:
        try:
            self.client.load_model(model, config=json.dumps(config))
        except Exception as exc:  # noqa: BLE001 - the server's refusal, reported whole
            raise PerfError(
                f"model '{model}': the server refused the candidate config: {exc}"
            ) from None
        self.batch[model] = int(config.get("max_batch_size", 0))

    def apply(self, target: str, settings: Settings) -> None:
        """Reload each model of ``settings`` with its knobs. An ensemble's max_batch_size may
        not exceed any composing model's (Triton refuses it), so it shrinks first to what both
        the old and the new models allow, and is set to the new smallest at the end."""
        for model in [target, *settings, *self.composing(target)]:
            if model not in self.originals:
                self.originals[model] = self.config(model)
                self.batch[model] = int(self.originals[model].get("max_batch_size", 0))
        if self.originals[target].get("platform") != "ensemble":
            for model, knobs in settings.items():
                self._load(model, edit_config(self.originals[model], knobs))
            return
        parts = self.composing(target)
        after = [settings.get(m, {}).get("max_batch_size", self.batch[m]) for m in parts]
        ensemble = self.originals[target]
        self._load(
            target, {**ensemble, "max_batch_size": min(after + [self.batch[m] for m in parts])}
        )
        for model, knobs in settings.items():
            if model != target:
                self._load(model, edit_config(self.originals[model], knobs))
        self._load(target, {**ensemble, "max_batch_size": min(self.batch[m] for m in parts)})

    def restore(self) -> None:
        """Put back every config this object changed: ensembles shrink first, so no composing
        model's max_batch_size is ever below its ensemble's."""
        ensembles = {m: c for m, c in self.originals.items() if c.get("platform") == "ensemble"}
        for model, config in ensembles.items():
            self._load(model, {**config, "max_batch_size": 1})
        for model, config in self.originals.items():
            if model not in ensembles:
                self._load(model, config)
        for model, config in ensembles.items():
            self._load(model, config)

    def close(self) -> None:
        self.client.close()


def served(config: Mapping[str, Any]) -> dict[str, int]:
    """The knobs' values in a model config as Triton reports it (JSON form)."""
    groups = config.get("instance_group") or [{}]
    batching = config.get("dynamic_batching") or {}
    preferred = batching.get("preferred_batch_size") or [0]
    return {
        "count": int(groups[0].get("count", 1)),
        "max_batch_size": int(config.get("max_batch_size", 0)),
        "max_queue_delay_us": int(batching.get("max_queue_delay_microseconds", 0)),
        "preferred_batch_size": int(preferred[0]),
    }


def complete(base: Mapping[str, int], knobs: Mapping[str, int]) -> dict[str, int]:
    """``knobs`` over the served ``base``: every knob set, as a new spec entry needs. A
    preferred batch size not swept is dropped when it is the one Triton fills in (the
    max_batch_size) or one the new max_batch_size no longer allows."""
    out = {**base, **knobs}
    preferred = out.get("preferred_batch_size", 0)
    filled = "preferred_batch_size" not in knobs and preferred == base.get("max_batch_size")
    if filled or preferred > out.get("max_batch_size", 0):
        out["preferred_batch_size"] = 0
    return out
