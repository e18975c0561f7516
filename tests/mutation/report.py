"""Write tests/mutation/REPORT.md from mutmut's results: the score per module and overall, and
every surviving mutant with its diff and, when it is listed in equivalent.txt, the reason it
cannot be killed. Run by `make mutation` after `mutmut run`."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

HERE = Path(__file__).resolve().parent
MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def results() -> dict[str, str]:
    out = subprocess.run(
        [MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def equivalents() -> dict[str, str]:
    reasons = {}
    for line in (HERE / "equivalent.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(":")
            reasons[name.strip()] = reason.strip()
    return reasons


def module(name: str) -> str:
    """tritonpipe.perf.stability.x_within__mutmut_3 -> tritonpipe/perf/stability.py"""
    parts = name.split("__mutmut_")[0].split(".")
    path = [p for p in parts if not p.startswith("x")]
    return "/".join(path) + ".py"


def gaps() -> list[tuple[str, str]]:
    """gaps.txt: (pattern, reason) for survivors no test here reaches on purpose; they stay
    counted as survived."""
    found = []
    for line in (HERE / "gaps.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, _, reason = line.partition(": ")
            found.append((pattern.strip(), reason.strip()))
    return found


def diff(name: str) -> str:
    try:  # in-process: one `mutmut show` per survivor costs a second each
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        shown = get_diff_for_mutant(name, path=Path("mutants") / module(name))
    except Exception:  # noqa: BLE001 - another mutmut version: ask its CLI
        shown = subprocess.run([MUTMUT, "show", name], capture_output=True, text=True).stdout
    lines = [ln for ln in shown.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    return " / ".join(ln.strip() for ln in lines)[:200]


def main() -> None:
    found = results()
    reasons = equivalents()
    known_gaps = gaps()
    per: dict[str, Counter[str]] = {}
    for name, status in found.items():
        per.setdefault(module(name), Counter())[status] += 1
    killed = sum(c["killed"] + c["timeout"] for c in per.values())
    survivors = sorted(n for n, s in found.items() if s not in ("killed", "timeout"))
    equivalent = [n for n in survivors if n in reasons]
    gap = {n: r for n in survivors if n not in reasons for p, r in known_gaps if fnmatch(n, p)}
    total = len(found)
    lines = [
        "# Mutation score",
        "",
        "Written by `make mutation` (mutmut 3, see tests/mutation/README.md). Killed = a test",
        "failed on the mutant (or it timed out); survivors are listed below, equivalent ones",
        "with the reason no test can tell them apart.",
        "",
        f"- mutants: {total}",
        f"- killed: {killed} ({killed / total:.1%})",
        f"- survived: {len(survivors)}, of which equivalent: {len(equivalent)}; not reached by "
        f"the fast tests on purpose (gaps.txt, counted as survived): {len(gap)}",
        f"- score without the equivalent mutants: {killed / (total - len(equivalent)):.1%}",
        "",
        "| module | mutants | killed | survived | score |",
        "|---|---|---|---|---|",
    ]
    for path, c in sorted(per.items()):
        n = sum(c.values())
        k = c["killed"] + c["timeout"]
        lines.append(f"| {path} | {n} | {k} | {n - k} | {k / n:.0%} |")
    lines += ["", "## Survivors", "", "| mutant | change | equivalent because |", "|---|---|---|"]
    for name in survivors:
        change = diff(name).replace("|", "\\|")
        reason = reasons.get(name) or (f"not equivalent; {gap[name]}" if name in gap else "")
        reason = (reason or "**not killed yet**").replace("|", "\\|")
        lines.append(f"| `{name}` | `{change}` | {reason} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
