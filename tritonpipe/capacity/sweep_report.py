"""A sweep's outputs: the ranked table (console and HTML) and one throughput-vs-p99 curve per
candidate with the best highlighted; and the plan's page (predicted p99 against load)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonpipe.capacity.candidates import describe
from tritonpipe.capacity.sweep import Measurement, Objective
from tritonpipe.errors import PerfError

if TYPE_CHECKING:
    from tritonpipe.capacity.predict import Predictor

STYLE = """body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 1em 0 2em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } tr.best td { background: #fdecc8; } img { max-width: 100%; }"""


def ranked(measurements: list[Measurement], objective: Objective) -> list[Measurement]:
    return sorted(measurements, key=lambda m: m.score(objective), reverse=True)


def no_winner(measurements: list[Measurement], objective: Objective) -> PerfError:
    """The error for a sweep where no candidate met the constraint: what came closest."""
    levels = [r for m in measurements for r in m.levels]
    if not levels:
        failures = [m.error for m in measurements if m.error]
        return PerfError(
            "no candidate could be measured" + (f"; first error: {failures[0]}" if failures else "")
        )
    if objective.slo_p99_ms is not None:
        best = min(levels, key=lambda r: r.p99_us)
        return PerfError(
            f"no config meets p99 <= {objective.slo_p99_ms:g} ms: the best p99 reached was "
            f"{best.p99_us / 1000:.2f} ms (at {best.throughput:.0f} infer/s, concurrency "
            f"{best.load:g}); relax the SLO or widen the grid"
        )
    top = max(levels, key=lambda r: r.throughput)
    return PerfError(
        f"no config reaches {objective.min_throughput:g} infer/s: the most was "
        f"{top.throughput:.0f} infer/s (p99 {top.p99_us / 1000:.2f} ms)"
    )


def _cells(m: Measurement, objective: Objective) -> list[str]:
    best = m.best(objective)
    top = max(m.levels, key=lambda r: r.throughput, default=None)
    return [
        describe(m.settings),
        f"{best.throughput:.0f}" if best else "-",
        f"{best.p99_us / 1000:.2f}" if best else "-",
        f"{best.load:g}" if best else "-",
        f"{top.throughput:.0f}" if top else "-",
        m.error or ("" if best else "misses the constraint"),
    ]


HEAD = ["rank", "config", "infer/s", "p99 ms", "concurrency", "max infer/s", "note"]


def console_table(measurements: list[Measurement], objective: Objective) -> str:
    rows = [HEAD] + [
        [str(i), *_cells(m, objective)] for i, m in enumerate(ranked(measurements, objective), 1)
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(HEAD))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if c in (1, 6) else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _plot_candidates(measurements: list[Measurement], objective: Objective, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ranked(measurements, objective)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, m in enumerate(reversed(order)):
        rows = sorted(m.levels, key=lambda r: r.load)
        if not rows:
            continue
        best = i == len(order) - 1 and m.best(objective) is not None
        ax.plot(
            [r.p99_us / 1000 for r in rows],
            [r.throughput for r in rows],
            marker="o",
            markersize=5 if best else 2,
            linewidth=3 if best else 0.8,
            color="#d62728" if best else None,
            alpha=1 if best else 0.45,
            label=f"best: {describe(m.settings)}" if best else None,
            zorder=3 if best else 1,
        )
    if objective.slo_p99_ms is not None:
        ax.axvline(objective.slo_p99_ms, color="k", linestyle="--", label="SLO")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (inferences/s)")
    ax.set_title(f"Sweep: {len(measurements)} candidates, {objective.describe()}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_sweep_report(
    measurements: list[Measurement], objective: Objective, out: Path, title: str
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    png = out / "sweep_curves.png"
    _plot_candidates(measurements, objective, png)
    body = []
    for i, m in enumerate(ranked(measurements, objective), 1):
        cls = ' class="best"' if i == 1 and m.best(objective) else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in [str(i), *_cells(m, objective)])
        body.append(f"<tr{cls}>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for h in HEAD)
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>Objective: {html.escape(objective.describe())}. One curve per candidate "
        "(concurrency 1, 2, 4, ... until the constraint broke); the best in red.</p>"
        f"{_img(png)}<table><tr>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page)
    return index


def write_plan_report(
    predictor: Predictor,
    replicas: int,
    peak: float,
    slo_ms: float,
    checks: list[dict[str, Any]],
    table_text: str,
    out: Path,
) -> Path:
    """Predicted p99 against total load for replica counts around the plan (the simulation,
    shorter runs), the validation's measured points, the SLO drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tritonpipe.capacity.predict import Predictor

    quick = Predictor(predictor.profile, predictor.config, requests=4000)
    top = quick.saturation() * 0.97
    rates = np.linspace(top * 0.05, top, 16)
    p99s = [quick.p99(float(r)) for r in rates]
    out.mkdir(parents=True, exist_ok=True)
    png = out / "plan_p99.png"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for n in sorted({max(1, replicas - 1), replicas, replicas + 1}):
        ax.plot(
            rates * n,
            [p.value * 1000 for p in p99s],
            linewidth=2.5 if n == replicas else 1,
            label=f"{n} replica{'s' if n > 1 else ''}",
        )
        if n == replicas:
            ax.fill_between(
                rates * n,
                [p.low * 1000 for p in p99s],
                [p.high * 1000 for p in p99s],
                alpha=0.2,
                label="interval (each window alone)",
            )
    if checks:
        ax.scatter(
            [c["rate"] * replicas for c in checks],
            [c["measured_p99_ms"] for c in checks],
            color="k",
            zorder=3,
            label="measured (1 replica, load x replicas)",
        )
    ax.axhline(slo_ms, color="r", linestyle="--", label=f"SLO {slo_ms:g} ms")
    ax.axvline(peak, color="gray", linestyle=":", label=f"target {peak:g}/s")
    ax.set_ylim(0, slo_ms * 3)
    ax.set_xlabel("total load (requests/s, Poisson)")
    ax.set_ylabel("predicted p99 latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>tritonpipe plan</title>'
        f"<style>{STYLE}</style></head><body><h1>Capacity plan</h1>"
        f"<pre>{html.escape(table_text)}</pre>{_img(png)}</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page)
    return index
