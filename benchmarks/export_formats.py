"""In-process latency and throughput of the three export formats, side by side.

    python -m benchmarks.export_formats --out benchmarks/results/export_formats.md

Exports the digits CNN and the variable-length encoder (examples/) in every format (parity
checked as usual), then times each format's in-process runtime (onnxruntime; torch.jit; the
AOTInductor package) and eager PyTorch at batch 1 and 64, on the device the export ran on.
Each repeat times every format one after the other, so load from other processes hits them alike;
cells are medians over repeats. Nothing here goes through Triton: this compares the artifacts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tritonpipe.export import export, parse_export_input
from tritonpipe.export.formats import as_tuple, runner
from tritonpipe.export.inputs import make_arrays, with_ranges
from tritonpipe.loading import load_function
from tritonpipe.tensors import Array

FORMATS = ("onnx", "torchscript", "aoti")
BATCHES = (1, 64)


@dataclass(frozen=True)
class Subject:
    name: str
    factory: str
    input: str
    outputs: tuple[str, ...]


SUBJECTS = (
    Subject("digits CNN", "examples/digits/model.py:untrained", "pixels:FP32:1,8,8", ("logits",)),
    Subject(
        "encoder (24 tokens)",
        "examples/encoder/model.py:encoder",
        "tokens:INT64:-1=24",
        ("logits", "hidden"),
    ),
)


def _eager(factory: str, input_name: str) -> Callable[[dict[str, Array]], object]:
    import torch

    model = load_function(factory)().eval()

    def run(arrays: dict[str, Array]) -> object:
        with torch.no_grad():
            return as_tuple(model(torch.from_numpy(arrays[input_name])))

    return run


def _time(call: Callable[[], object], budget_s: float) -> float:
    """Seconds per call: as many calls as fit in ``budget_s`` (at least 3), after 5 warm-up
    calls (TorchScript's profiling executor optimises the graph during its first runs)."""
    for _ in range(5):
        call()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget_s:
        call()
        calls += 1
    return (time.perf_counter() - start) / calls


def measure(
    subject: Subject, work: Path, repeats: int, budget_s: float, threads: int
) -> list[tuple[str, ...]]:
    """Rows (model, batch, format, median ms, rows/s, latency vs onnx) for one subject."""
    folder = work / subject.name.split()[0]
    spec = parse_export_input(subject.input)
    manifest = export(
        subject.factory,
        [spec],
        folder,
        formats=FORMATS,
        output_names=list(subject.outputs),
        max_batch_size=max(BATCHES),
    )
    runs: dict[str, Callable[[dict[str, Array]], object]] = {
        fmt: runner(
            fmt, folder / manifest.artifacts[fmt]["file"], manifest.inputs, manifest.outputs
        )
        for fmt in FORMATS
    }
    runs["eager"] = _eager(subject.factory, spec.spec.name)
    ranged = with_ranges([spec], load_function(subject.factory)())
    rows: list[tuple[str, ...]] = []
    for batch in BATCHES:
        shape = {spec.spec.name: (batch, *spec.sample)}
        arrays = make_arrays(ranged, shape, seed=batch)
        seconds: dict[str, list[float]] = {fmt: [] for fmt in runs}
        for _ in range(repeats):
            for fmt, run in runs.items():
                seconds[fmt].append(_time(partial(run, arrays), budget_s))
        median = {fmt: statistics.median(s) for fmt, s in seconds.items()}
        for fmt in runs:
            rows.append(
                (
                    subject.name,
                    str(batch),
                    fmt,
                    f"{median[fmt] * 1000:.3f}",
                    f"{batch / median[fmt]:.0f}",
                    f"{median[fmt] / median['onnx']:.2f}",
                )
            )
    return rows


def _machine() -> str:
    import onnxruntime
    import torch

    load = os.getloadavg()
    return (
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Markdown file for the table (default: print).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.5, help="Seconds per timing.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="Intra-op threads for torch and onnxruntime alike (1: steadiest on a shared machine).",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    before = _machine()
    with tempfile.TemporaryDirectory(prefix="export-formats-") as tmp:
        rows = [
            row
            for subject in SUBJECTS
            for row in measure(subject, Path(tmp), args.repeats, args.budget, args.threads)
        ]
    header = ("model", "batch", "format", "median ms/call", "rows/s", "latency vs onnx")
    lines = [
        "# Export formats: in-process latency and throughput",
        "",
        "`python -m benchmarks.export_formats` "
        f"(median of {args.repeats} repeats, each {args.budget:g} s of calls per format, "
        f"{args.threads} intra-op thread(s) for every runtime).",
        "",
        f"- before: {before}",
        f"- after: {_machine()}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
