"""The comparison as a folder: report.md with the figures, and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from tritonpipe.compare.logs import Comparison


def write_report(comparison: Comparison, out: Path) -> Path:
    """report.md and its plots in ``out``; the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    c = comparison
    figures = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in c.versions:
        rows = c.frame[(c.frame["model_version"] == v.version) & (c.frame["role"] == v.role)]
        ax.hist(rows[f"output_{c.score}"].astype(float), bins=40, alpha=0.5,
                label=f"{v.version} ({v.role})", density=True)  # fmt: skip
    ax.set_xlabel(c.score)
    ax.set_ylabel("density")
    ax.set_title(f"{c.score} per version")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=100)
    plt.close(fig)
    figures.append(("Scores per version", "scores.png"))
    if c.pairs:
        champ, chall = f"output_{c.score}_champion", f"output_{c.score}_challenger"
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.scatter(c.paired[champ], c.paired[chall], s=4, alpha=0.4)
        left.plot([0, 1], [0, 1], transform=left.transAxes, color="grey", lw=1)
        left.set_xlabel(f"champion {c.champion}")
        left.set_ylabel(f"challenger {c.challenger}")
        left.set_title(f"{c.score} on the same requests")
        right.hist(c.paired[chall] - c.paired[champ], bins=50)
        right.set_xlabel(f"{c.score} challenger - champion")
        right.set_title("score deltas")
        fig.tight_layout()
        fig.savefig(out / "pairs.png", dpi=100)
        plt.close(fig)
        figures.append(("Champion and challenger on the same requests", "pairs.png"))
    lines = [f"# {c.champion} (champion) and {c.challenger} (challenger)", ""]
    lines += [f"- {line}" for line in c.lines()]
    for title, name in figures:
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
