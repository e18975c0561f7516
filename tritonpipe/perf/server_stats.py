"""Server-side columns from Triton's statistics endpoint, as deltas between two snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model: successes and nanoseconds per stage."""

    success: int
    inferences: int
    executions: int
    ns: dict[str, int]

    @classmethod
    def parse(cls, entry: dict[str, Any]) -> ModelCounters:
        stats = entry.get("inference_stats", {})
        return cls(
            success=int(stats.get("success", {}).get("count", 0)),
            inferences=int(entry.get("inference_count", 0)),
            executions=int(entry.get("execution_count", 0)),
            ns={s: int(stats.get(s, {}).get("ns", 0)) for s in STAGES},
        )


Snapshot = dict[str, ModelCounters]


def snapshot(statistics: dict[str, Any]) -> Snapshot:
    """Counters per model name (versions summed) from a statistics answer (HTTP or gRPC JSON)."""
    result: dict[str, ModelCounters] = {}
    for entry in statistics.get("model_stats", []):
        counters = ModelCounters.parse(entry)
        previous = result.get(entry["name"])
        if previous is not None:
            counters = ModelCounters(
                previous.success + counters.success,
                previous.inferences + counters.inferences,
                previous.executions + counters.executions,
                {s: previous.ns[s] + counters.ns[s] for s in STAGES},
            )
        result[entry["name"]] = counters
    return result


@dataclass(frozen=True)
class ServerTimes:
    """Average microseconds per request in each server stage, and requests counted."""

    requests: int
    inferences: int
    executions: int
    queue_us: int
    input_us: int
    infer_us: int
    output_us: int

    @property
    def total_us(self) -> int:
        return self.queue_us + self.input_us + self.infer_us + self.output_us


def delta(before: Snapshot, after: Snapshot, models: list[str]) -> ServerTimes:
    """Per-request stage times summed over ``models`` (one model, or an ensemble's composing
    models, as perf_analyzer adds them up for an ensemble)."""
    stage_us = dict.fromkeys(STAGES, 0.0)
    requests = inferences = executions = 0
    for model in models:
        a, b = before.get(model), after.get(model)
        if a is None or b is None:
            continue
        count = b.success - a.success
        inferences = max(inferences, b.inferences - a.inferences)
        executions += b.executions - a.executions
        requests = max(requests, count)
        if count > 0:
            for stage in STAGES:
                stage_us[stage] += (b.ns[stage] - a.ns[stage]) / count / 1000
    return ServerTimes(requests, inferences, executions, *(round(stage_us[s]) for s in STAGES))
