"""Per-step times of tritonpipe models, read from Triton's metrics endpoint.

Fused models report each step's executions, requests and microseconds as counters
(``tritonpipe_step_*_total{model=..., step=...}``); a profile scrapes them with each statistics
snapshot and writes their deltas over the measured windows to ``<file>_steps.csv``.
"""

from __future__ import annotations

import csv
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonpipe.errors import PerfError

_LINE = re.compile(
    r"^tritonpipe_step_(executions|requests|duration_us)_total\{([^}]*)\}\s+(\S+)$", re.M
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
HEADER = (
    "Step",
    "Executions/Second",
    "Requests per Execution",
    "Time per Execution (us)",
    "Time per Request (us)",
    "Share of Step Time",
)

Counters = dict[str, tuple[float, float, float]]  # step -> (executions, requests, us)

# The fused runtime pushes its counters every FLUSH_S (backend/model.py, _StepMetrics), so two
# scrapes closer than that may see no step at all, and any span counts up to one flush too many
# or too few: per-step rows come from scrapes at least MIN_SPAN_S apart.
FLUSH_S = 1.0
MIN_SPAN_S = 3 * FLUSH_S


def parse(text: str, model: str) -> Counters:
    """The step counters of ``model`` from Prometheus text, in the plan's step order."""
    found: dict[tuple[int, str], dict[str, float]] = {}
    for kind, labels, value in _LINE.findall(text):
        tags = dict(_LABEL.findall(labels))
        if tags.get("model") == model and "step" in tags:
            key = (int(tags.get("position", 0)), tags["step"])
            found.setdefault(key, {})[kind] = float(value)
    return {
        step: (v.get("executions", 0.0), v.get("requests", 0.0), v.get("duration_us", 0.0))
        for (_, step), v in sorted(found.items())
    }


def scrape(url: str, model: str, timeout_s: float = 5.0) -> Counters:
    """Read ``model``'s step counters from a metrics URL (``http://host:8002/metrics``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return parse(answer.read().decode(), model)
    except OSError as exc:
        raise PerfError(f"metrics endpoint {url}: {exc}") from exc


@dataclass(frozen=True)
class StepRow:
    step: str
    executions_per_s: float
    requests_per_execution: float
    us_per_execution: float
    us_per_request: float
    share: float


def delta(before: Counters, after: Counters, seconds: float) -> list[StepRow]:
    """Rows for the steps that ran between two scrapes."""
    diffs = {
        s: tuple(a - b for a, b in zip(after[s], before.get(s, (0.0, 0.0, 0.0)), strict=True))
        for s in after
    }
    total = sum(d[2] for d in diffs.values()) or 1.0
    rows = []
    for step, (executions, requests, us) in diffs.items():
        if executions <= 0:
            continue
        rows.append(
            StepRow(
                step=step,
                executions_per_s=executions / seconds,
                requests_per_execution=requests / executions,
                us_per_execution=us / executions,
                us_per_request=us / requests if requests else 0.0,
                share=us / total,
            )
        )
    return rows


def steps_csv(path: Path) -> Path:
    return path.with_name(f"{path.stem}_steps{path.suffix}")


def write_steps(path: Path, mode: str, levels: list[tuple[float, list[StepRow]]]) -> None:
    load = "Concurrency" if mode == "concurrency" else "Request Rate"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow((load, *HEADER))
        for value, rows in levels:
            for r in rows:
                writer.writerow(
                    (
                        f"{value:g}",
                        r.step,
                        f"{r.executions_per_s:.1f}",
                        f"{r.requests_per_execution:.2f}",
                        f"{r.us_per_execution:.1f}",
                        f"{r.us_per_request:.1f}",
                        f"{r.share:.3f}",
                    )
                )


def read_steps(path: Path) -> list[tuple[float, StepRow]]:
    """(load, row) pairs from a ``_steps.csv``."""
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            head = next(reader, None)
            body = [r for r in reader if r]
    except OSError as exc:
        raise PerfError(f"{path}: cannot read ({exc.strerror})") from exc
    if head is None or tuple(head[1:]) != HEADER:
        raise PerfError(f"{path}: not a tritonpipe steps CSV (header {head})")
    try:
        if any(len(r) != 1 + len(HEADER) for r in body):
            raise ValueError(f"expected {1 + len(HEADER)} columns")
        return [(float(r[0]), StepRow(r[1], *(float(x) for x in r[2:7]))) for r in body]
    except (ValueError, IndexError) as exc:
        raise PerfError(f"{path}: bad row ({exc})") from None
