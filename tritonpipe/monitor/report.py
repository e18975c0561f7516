"""The HTML report: a verdict banner, drift over time (PSI per column per window, a heatmap),
quality over time, and per column the reference distribution against the latest window's.
Plots are matplotlib PNGs embedded in the page (one self-contained file)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.monitor.run import Result


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return '<img src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'


def _heatmap(result: Result, psi_limit: float) -> str:
    import matplotlib.pyplot as plt

    names = [c.feature for c in result.windows[0].columns]
    psi = np.array([[c.psi for c in w.columns] for w in result.windows]).T
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(result.windows) + 3), 0.4 * len(names) + 1.5))
    image = ax.imshow(psi, aspect="auto", cmap="Reds", vmin=0, vmax=max(psi_limit * 2, psi.max()))
    for i, w in enumerate(result.windows):
        for j, c in enumerate(w.columns):
            if c.drift:
                ax.text(i, j, "drift", ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(len(result.windows)), [w.window.label[:10] for w in result.windows],
                  rotation=45, ha="right")  # fmt: skip
    ax.set_title(f"PSI per window (drift: PSI > {psi_limit:g} and test p-value below its limit)")
    fig.colorbar(image, ax=ax, label="PSI")
    return _png(fig)


def _quality(result: Result) -> str:
    import matplotlib.pyplot as plt

    rows = [w for w in result.windows if w.quality]
    if not rows:
        return "<p>No labels joined: quality is shown once a labels source is given.</p>"
    fig, ax = plt.subplots(figsize=(8, 3))
    x = range(len(rows))
    for name in ("roc_auc", "precision", "recall", "calibration_error"):
        ax.plot(x, [getattr(w.quality, name) for w in rows], marker="o", label=name)
    ax.set_xticks(list(x), [w.window.label[:10] for w in rows], rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Quality per window (labelled rows)")
    return _png(fig)


def _distributions(result: Result) -> str:
    import matplotlib.pyplot as plt

    last = result.windows[-1]
    refs = [*result.profile.features, *([result.profile.prediction] if result.profile.prediction
                                        else [])]  # fmt: skip
    cols = 4
    rows = (len(refs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, ref, col in zip(axes.flat, refs, last.columns, strict=False):
        labels = ref.categories + ["(new)"] if ref.kind == "categorical" else [
            f"b{i}" for i in range(len(ref.fractions))]  # fmt: skip
        ref_f = [*ref.fractions, 0.0] if ref.kind == "categorical" else ref.fractions
        x = np.arange(len(ref_f))
        ax.bar(x - 0.2, ref_f, 0.4, label="reference", color="#999999")
        ax.bar(x + 0.2, col.fractions[: len(ref_f)], 0.4, label="window",
               color="#d62728" if col.drift else "#1f77b4")  # fmt: skip
        ax.set_title(f"{ref.name}  PSI {col.psi:.2f}", fontsize=9,
                     color="#d62728" if col.drift else "black")  # fmt: skip
        if ref.kind == "categorical":
            ax.set_xticks(x, labels, fontsize=6, rotation=60, ha="right")
        else:
            ax.set_xticks(x, [])
    for ax in list(axes.flat)[len(refs) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Reference (training deciles) against window {last.window.label}", fontsize=10)
    return _png(fig)


def write_report(result: Result, path: Path, *, psi_limit: float = 0.2) -> Path:
    """Write the report for ``result`` to ``path`` (HTML)."""
    drifted = {w.window.label: w.drifted for w in result.windows if w.drifted}
    verdict = (
        "DRIFT: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in drifted.items())
        if drifted
        else "no drift"
    )
    colour = "#d62728" if drifted else "#2ca02c"
    table = result.table()
    flagged = table[table["drift"]] if len(table) else table
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>tritonpipe monitor: {html.escape(result.model)} v{html.escape(result.version)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}}
.verdict{{color:white;background:{colour};padding:.6em 1em;font-size:1.2em}}
table{{border-collapse:collapse;font-size:.85em}}td,th{{border:1px solid #ccc;padding:2px 6px}}
</style></head><body>
<h1>{html.escape(result.model)} version {html.escape(result.version)}</h1>
<p class="verdict">{html.escape(verdict)}</p>
<p>{len(result.windows)} windows, {sum(w.rows for w in result.windows):,} predictions.</p>
<h2>Drift over time</h2>{_heatmap(result, psi_limit)}
<h2>Quality over time</h2>{_quality(result)}
<h2>Latest window against the reference</h2>{_distributions(result)}
<h2>Drifted columns</h2>{
        flagged.to_html(index=False, float_format="%.4g") if len(flagged) else "<p>none</p>"
    }
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
