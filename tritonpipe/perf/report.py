"""HTML + PNG reports from perf_analyzer-format CSVs (either engine's)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from tritonpipe.perf.results_csv import COLUMNS, ResultRow, read_csv
from tritonpipe.perf.step_metrics import StepRow, read_steps, steps_csv

BREAKDOWN = (
    ("Server Queue", "server_queue_us", "#4c78a8"),
    ("Compute Input", "server_input_us", "#f58518"),
    ("Compute Infer", "server_infer_us", "#54a24b"),
    ("Compute Output", "server_output_us", "#e45756"),
    ("Network + Client", "network_us", "#b279a2"),
)


def _plot_curves(runs: dict[str, tuple[str, list[ResultRow]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, (mode, rows) in runs.items():
        rows = sorted(rows, key=lambda r: r.load)
        ax.plot(
            [r.p99_us / 1000 for r in rows], [r.throughput for r in rows], marker="o", label=name
        )
        for r in rows:
            ax.annotate(
                f"{'c' if mode == 'concurrency' else 'r'}={r.load:g}",
                (r.p99_us / 1000, r.throughput),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (inferences/s)")
    ax.set_title("Throughput against p99 latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_breakdown(name: str, mode: str, rows: list[ResultRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r.load)
    labels = [f"{r.load:g}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    bottom = [0.0] * len(rows)
    for label, attr, color in BREAKDOWN:
        # Network+Server Send/Recv as perf_analyzer reports it, plus the client's own send/recv.
        values = [
            (
                getattr(r, attr)
                + (r.client_send_us + r.client_recv_us if attr == "network_us" else 0)
            )
            / 1000
            for r in rows
        ]
        ax.bar(labels, values, bottom=bottom, label=label, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("concurrency" if mode == "concurrency" else "request rate (req/s)")
    ax.set_ylabel("average latency (ms)")
    ax.set_title(f"Latency breakdown: {name}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_steps(name: str, mode: str, levels: list[tuple[float, StepRow]], path: Path) -> None:
    """Stacked bars: each step's time per request at each load level (a fused model's inside)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = sorted({load for load, _ in levels})
    steps = list(dict.fromkeys(row.step for _, row in levels))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    bottom = [0.0] * len(loads)
    for step in steps:
        by_load = {load: row.us_per_request for load, row in levels if row.step == step}
        values = [by_load.get(load, 0.0) / 1000 for load in loads]
        ax.bar([f"{v:g}" for v in loads], values, bottom=bottom, label=step)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("concurrency" if mode == "concurrency" else "request rate (req/s)")
    ax.set_ylabel("step time per request (ms)")
    ax.set_title(f"Time per step: {name}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(mode: str, rows: list[ResultRow]) -> str:
    head = ["Concurrency" if mode == "concurrency" else "Request Rate", *COLUMNS]
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + f"<td>{r.load:g}</td>" + "".join(f"<td>{v}</td>" for v in r.values()) + "</tr>"
        for r in sorted(rows, key=lambda r: r.load)
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(csvs: list[Path], out: Path, title: str = "tritonpipe profile") -> Path:
    """Write ``out/index.html`` (images inlined) and the PNGs beside it; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, tuple[str, list[ResultRow]]] = {}
    for path in csvs:
        name = path.stem if path.stem not in runs else str(path)
        runs[name] = read_csv(path)
    curves = out / "throughput_vs_p99.png"
    _plot_curves(runs, curves)
    sections = [f"<h2>Throughput against p99 latency</h2>{_img(curves)}"]
    for (name, (mode, rows)), path in zip(runs.items(), csvs, strict=True):
        png = out / f"breakdown_{name}.png"
        _plot_breakdown(name, mode, rows, png)
        sections.append(f"<h2>{html.escape(name)}</h2>{_img(png)}{_table(mode, rows)}")
        if steps_csv(path).is_file():
            png = out / f"steps_{name}.png"
            _plot_steps(name, mode, read_steps(steps_csv(path)), png)
            sections.append(
                f"<h3>Per-step time ({html.escape(steps_csv(path).name)})</h3>{_img(png)}"
            )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 1em 0 2em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Sources: {", ".join(html.escape(str(p)) for p in csvs)}. Times in microseconds, as perf_analyzer
writes them; the breakdown's "Network + Client" adds the client's send and receive times to
"Network+Server Send/Recv".</p>
{"".join(sections)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index
