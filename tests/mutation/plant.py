"""Re-plant the bugs issue 15 lists, one at a time, in a scratch git worktree, and run the tests
that should catch each. Writes a Markdown table to stdout.

    .venv/bin/python tests/mutation/plant.py [BUG ...]

Each bug is a (file, old, new) replacement; the scratch copy is reset between bugs. The tests
run with this checkout's .venv and the scratch copy first on PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = "tritonpipe/perf/generator.py"

# name: (what the bug does, [(file, old, new)], tests to run)
BUGS: dict[str, tuple[str, list[tuple[str, str, str]], list[str]]] = {
    "one-in-flight": (
        "the generator keeps one request in flight whatever --concurrency-range says",
        [(GEN, "for _ in range(int(load))]", "for _ in range(1)]")],
        [
            "tests/integration/test_generator_load.py::test_concurrency_holds_n_requests_in_flight_at_the_server"
        ],
    ),
    "rate-ignored": (
        "--request-rate-range not followed (sends at twice the rate)",
        [
            (GEN, "1 / load\n", "1 / (2 * load)\n"),
            (GEN, "exponential(1 / load)", "exponential(1 / (2 * load))"),
        ],
        ["tests/integration/test_generator_load.py::test_request_rate_is_followed"],
    ),
    "first-composing": (
        "ensemble server columns taken from the first composing model only",
        [(GEN, "composing or [info.name])", "composing[:1] or [info.name])")],
        ["tests/integration/test_perf.py::test_profile_digits_ensemble_writes_perf_analyzer_csvs"],
    ),
    "all-p50": (
        "every percentile reported as p50",
        [
            (
                GEN,
                "np.percentile(latency, [50, 90, 95, 99])",
                "np.percentile(latency, [50, 50, 50, 50])",
            )
        ],
        ["tests/unit/test_generator_stats.py"],
    ),
    "all-windows": (
        "all windows reported instead of the last three",
        [
            (GEN, "last = windows[-WINDOWS:]", "last = windows"),
        ],
        ["tests/unit/test_generator_stats.py"],
    ),
    "shm-inline-tritonclient": (
        "--shared-memory system registers regions but sends the data inline (tritonclient)",
        [(GEN, "            elif placed:\n", "            elif placed and False:\n")],
        [
            "tests/integration/test_shared_memory_wire.py::test_generator_shared_memory_sends_no_tensor_bytes"
        ],
    ),
    "shm-inline-raw": (
        "--shared-memory system registers regions but sends the data inline (raw transport)",
        [(GEN, "shm = {n: (r, b) for n, (r, b, _) in placed.items()}", "shm = {}")],
        [
            "tests/integration/test_shared_memory_wire.py::test_generator_shared_memory_sends_no_tensor_bytes"
        ],
    ),
    "shm-new-region": (
        "a new shared-memory region created on every call instead of reused",
        [("tritonpipe/client/shm.py", "if region is None or region.size < size:", "if True:")],
        ["tests/integration/test_shared_memory_wire.py"],
    ),
    "step-inputs-ignored": (
        "a step's inputs: map ignored",
        [
            (
                "tritonpipe/ensembles/plan.py",
                "tensor = ref.inputs.get(spec.name, spec.name)",
                "tensor = spec.name",
            )
        ],
        ["tests/unit/test_build_wiring.py", "tests/integration/test_fusion.py"],
    ),
    "ensemble-outputs-ignored": (
        "an ensemble's outputs: ignored",
        [
            (
                "tritonpipe/ensembles/plan.py",
                "tensors.finish(ensemble.outputs or list(",
                "tensors.finish(None or list(",
            )
        ],
        ["tests/unit/test_build_wiring.py", "tests/integration/test_fusion.py"],
    ),
    "rtol-ignored": (
        "--rtol ignored",
        [
            (
                "tritonpipe/export/parity.py",
                "(diff <= atol + rtol * scale)",
                "(diff <= atol + 0 * scale)",
            )
        ],
        ["tests/unit/test_export_tolerance.py"],
    ),
    "atol-10x": (
        "atol 10x looser",
        [
            (
                "tritonpipe/export/parity.py",
                "(diff <= atol + rtol * scale)",
                "(diff <= 10 * atol + rtol * scale)",
            )
        ],
        ["tests/unit/test_export_tolerance.py"],
    ),
    "retry-everything": (
        "retries of every error",
        [("tritonpipe/client/base.py", "return isinstance(exc, Unavailable)", "return True")],
        ["tests/integration/test_client_retries.py"],
    ),
}


def plant(scratch: Path, edits: list[tuple[str, str, str]]) -> None:
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=scratch, check=True)
    for file, old, new in edits:
        path = scratch / file
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{file}: {old!r} not found: update the bug")
        path.write_text(text.replace(old, new, 1))


def main(names: list[str]) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="tritonpipe_plant_")) / "copy"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(scratch)], cwd=ROOT, check=True)
    # Ignored inputs the tests read: the trained digits export.
    artifacts = ROOT / "examples" / "digits" / "artifacts"
    (scratch / "examples" / "digits" / "artifacts").symlink_to(artifacts)
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    print("| bug | tests run | result | seconds |\n|---|---|---|---|")
    failures = 0
    try:
        for name in names or list(BUGS):
            what, edits, tests = BUGS[name]
            plant(scratch, edits)
            started = time.monotonic()
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
            )
            caught = run.returncode == 1
            failures += not caught
            lines = [ln for ln in run.stdout.splitlines() if ln.startswith("FAILED")]
            result = (
                f"caught: {lines[0].split(' - ')[0][7:]}"
                if caught and lines
                else ("caught" if caught else f"NOT caught (exit {run.returncode})")
            )
            print(
                f"| {what} | {', '.join(Path(t).name for t in tests)} | {result} | "
                f"{time.monotonic() - started:.0f} |",
                flush=True,
            )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(scratch)], cwd=ROOT)
        shutil.rmtree(scratch.parent, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
