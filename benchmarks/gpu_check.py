"""The GPU check: one command on a machine with a CUDA GPU, one table, in under 10 minutes.

    python -m benchmarks.gpu_check --out benchmarks/results/gpu_check.md
    python -m benchmarks.gpu_check --dry-run      # on CPU: every step, tiny, so it cannot rot

Builds the digits pipeline (its TorchScript ensemble on GPU instances) and a larger
convolutional model (exported here, two GPU instances), serves them, measures each served
(the project's generator, gRPC) against the same TorchScript model run in-process on CUDA at
the same batch size, then plans the convolutional model (its service profile simulated) and
validates the plan at 50/70/90% of its SLO capacity. ``--dry-run`` runs the same steps on CPU
instances with small shapes and short windows."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"

CONVNET = """
import torch
from torch import nn


def make(width={width}):
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        block(3, width), block(width, width), nn.MaxPool2d(2),
        block(width, 2 * width), block(2 * width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * width, 10),
    ).eval()
"""


def gpu_spec(folder: Path, kind: str) -> Path:
    """The digits spec with its TorchScript ensemble on two ``kind`` instances, plus ``convnet``."""
    import yaml

    spec = yaml.safe_load((DIGITS / "pipeline.yaml").read_text())
    spec["ensembles"]["digits_ts"]["serving"] = {"instance_groups": [{"count": 2, "kind": kind}]}
    spec["models"]["convnet"] = {
        "export": "convnet_export",
        "format": "torchscript",
        "max_batch_size": 32,
        "instance_groups": [{"count": 2, "kind": kind}],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
    }
    shutil.copy(DIGITS / "stages.py", folder / "stages.py")
    shutil.copytree(DIGITS / "samples", folder / "samples", dirs_exist_ok=True)  # warmup PNGs
    (folder / "artifacts").mkdir(exist_ok=True)
    link = folder / "artifacts" / "export"
    if not link.exists():
        link.symlink_to(DIGITS / "artifacts" / "export")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def export_convnet(folder: Path, width: int, side: int) -> None:
    from tritonpipe.export import export, parse_export_input

    (folder / "convnet.py").write_text(CONVNET.format(width=width))
    export(
        f"{folder / 'convnet.py'}:make",
        [parse_export_input(f"image:FP32:3,{side},{side}")],
        folder / "convnet_export",
        formats=("torchscript",),
        max_batch_size=32,
        output_names=["logits"],
    )


def in_process(artifact: Path, shape: tuple[int, ...], batch: int, seconds: float) -> float:
    """Rows/s of the TorchScript artifact run in this process on CUDA (CPU in a dry run)."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.jit.load(str(artifact), map_location=device).eval()
    x = torch.randn(batch, *shape, device=device)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return runs * batch / (time.perf_counter() - start)


def served(model: str, url: str, batch: int, window_ms: int, data: str = "random") -> float:
    from tritonpipe.errors import PerfError
    from tritonpipe.perf.generator import ProfileOptions, Profiler

    options = ProfileOptions(
        model=model,
        url=url,
        protocol="grpc",
        batch_size=batch,
        loads=(8,),
        measurement_interval_ms=window_ms,
        max_trials=3,
        stability_percentage=100.0,
        input_data=data,
    )
    # One short level first, not counted: the first requests load the model's lazy parts.
    warm = ProfileOptions(
        model=model,
        url=url,
        protocol="grpc",
        batch_size=batch,
        loads=(1,),
        measurement_interval_ms=window_ms,
        max_trials=3,
        stability_percentage=100.0,
        input_data=data,
        timeout_s=120.0,
    )
    with contextlib.suppress(PerfError):
        asyncio.run(Profiler(warm).run())
    return asyncio.run(Profiler(options).run())[0].row.throughput


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU instances, tiny, short.")
    parser.add_argument("--slo-p99-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.dry_run:
        print("no CUDA device: run with --dry-run on CPU", file=sys.stderr)
        return 2
    kind, side, width, window = ("cpu", 16, 8, 1000) if args.dry_run else ("gpu", 128, 64, 2000)
    start = time.perf_counter()
    from tritonpipe.capacity import plan as planning
    from tritonpipe.capacity.measure import profile_server
    from tritonpipe.capacity.predict import Predictor
    from tritonpipe.capacity.session import png_input_data, serving

    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = gpu_spec(folder, kind)
        export_convnet(folder, width, side)
        pngs = str(png_input_data(DIGITS / "artifacts" / "heldout", folder, 16))
        with serving(spec, "convnet") as server:
            from tritonpipe.capacity.candidates import ServerConfigs

            configs = ServerConfigs(server.http_url.split("://")[1])
            configs.client.load_model("digits_ts")
            configs.close()
            grpc = server.grpc_url.split("://")[1]
            batch = 8
            conv_served = served("convnet", grpc, batch, window)
            conv_raw = in_process(
                folder / "convnet_export" / "model.pt", (3, side, side), batch, window / 1000
            )
            rows.append(
                (
                    "convnet served / in-process",
                    f"{conv_served:.0f}",
                    f"{conv_raw:.0f}",
                    f"{conv_served / conv_raw:.2f}",
                )
            )
            digits_served = served("digits_ts", grpc, 1, window, pngs)
            digits_raw = in_process(
                DIGITS / "artifacts" / "export" / "model.pt", (1, 8, 8), 8, window / 1000
            )
            rows.append(
                (
                    "digits_ts served (c=8, 1 image) / scoring in-process (b=8)",
                    f"{digits_served:.0f}",
                    f"{digits_raw:.0f}",
                    f"{digits_served / digits_raw:.2f}",
                )
            )
            profile = profile_server(
                "convnet",
                grpc,
                "grpc",
                server.http_url.split("://")[1],
                window_ms=window // 2,
                progress=print,
                # A dry run checks the steps, not a busy CPU's stability.
                stability=10.0 if args.dry_run else 0.2,
            )
            predictor = Predictor(profile)
            capacity = predictor.capacity(args.slo_p99_ms / 1000)
            rows.append(
                ("convnet SLO capacity predicted (interval)", capacity.text("{:.0f}"), "", "")
            )
            rates = [capacity.value * f for f in (0.5, 0.7, 0.9)]
            measured = planning.measure_rates("convnet", grpc, "grpc", rates, window)
            for f, rate, (_, p99) in zip((0.5, 0.7, 0.9), rates, measured, strict=True):
                predicted = predictor.p99(rate).value
                rows.append(
                    (
                        f"convnet p99 ms at {f:.0%} ({rate:.0f}/s) predicted / measured",
                        f"{predicted * 1000:.1f}",
                        f"{p99 * 1000:.1f}",
                        f"{predicted / p99:.2f}",
                    )
                )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (dry run)"
    lines = [
        f"# GPU check on {device}",
        "",
        f"{time.perf_counter() - start:.0f} s; instances {kind}; convnet 3x{side}x{side}, "
        f"width {width}.",
        "",
        "| check | tritonpipe | reference | ratio |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
