"""Tracing overhead: the fused digits pipeline answered with and without step spans, one run.

    python -m benchmarks.tracing --out benchmarks/results/tracing.md

Three tritonservers serve the same fused model (preprocess -> ONNX CNN -> postprocess, one
Python-backend model, 1 instance): one plain; one in Triton's OpenTelemetry mode only (rate 1:
Triton's own 3 spans per request); one with ``trace_url`` (Triton's spans and the model's step
spans). Every span goes to a loopback OTLP receiver in a process of its own, which decodes
them. One client sends one PNG per request, sequentially (1 connection, HTTP), alternating
between the servers in rounds, so drifting machine load hits all alike. The same for the
in-process pipeline (``Pipeline`` at batch 1, with and without ``TRITONPIPE_TRACE_URL``).
Prints p50 / p99 side by side with the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
import yaml

from tritonpipe.ensembles import build_repository
from tritonpipe.server import ServerOptions, TritonServer
from tritonpipe.tracing import OtlpReceiver

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"


def _spec(folder: Path) -> Path:
    (folder / "stages.py").write_text((DIGITS / "stages.py").read_text())
    stage = {"max_batch_size": 8, "instance_groups": [{"count": 1, "kind": "cpu"}]}
    spec = {
        "stages": {
            "preprocess": {
                "function": "stages.py:preprocess",
                "inputs": [{"name": "image", "dtype": "BYTES", "shape": [1]}],
                "outputs": [{"name": "pixels", "dtype": "FP32", "shape": [1, 8, 8]}],
                **stage,
            },
            "postprocess": {
                "function": "stages.py:postprocess",
                "parameters": {"k": 3},
                "inputs": [{"name": "logits", "dtype": "FP32", "shape": [10]}],
                "outputs": [
                    {"name": "labels", "dtype": "INT64", "shape": [3]},
                    {"name": "probabilities", "dtype": "FP32", "shape": [3]},
                ],
                **stage,
            },
        },
        "models": {
            "net": {
                "export": str(DIGITS / "artifacts" / "export"),
                "format": "onnx",
                "max_batch_size": 8,
            }
        },
        "ensembles": {"digits": {"steps": ["preprocess", "net", "postprocess"]}},
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return folder / "pipeline.yaml"


def _receive(conn: Any) -> None:
    """The collector's side, in a process of its own (decoding must not share the client's
    interpreter): sends its URL, then on any message the spans it decoded (all, step spans)."""
    with OtlpReceiver() as receiver:
        conn.send(receiver.url)
        conn.recv()
        spans = receiver.spans()
        conn.send((len(spans), sum("tritonpipe.step" in s.attributes for s in spans)))


def _span_costs(n: int = 20000) -> tuple[float, float]:
    """CPU microseconds per step span: made on the answer path, encoded on the exporter's
    thread (CPU time, which the machine's other load moves far less than latency)."""
    from types import SimpleNamespace

    from tritonpipe.tracing.context import SpanContext
    from tritonpipe.tracing.export import encode
    from tritonpipe.tracing.spans import step_span

    step = SimpleNamespace(name="preprocess", kind="stage", function="preprocess", file="s.py")
    parent = SpanContext.new_trace()
    start = time.process_time()
    spans = [
        step_span(step, 0, parent, 1, 2, None, pipeline="digits", runner="triton", requests=1)
        for _ in range(n)
    ]
    made = time.process_time() - start
    start = time.process_time()
    for i in range(0, n, 512):
        encode(spans[i : i + 512], "tritonpipe")
    return made / n * 1e6, (time.process_time() - start) / n * 1e6


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def _served(
    urls: dict[str, str], image: np.ndarray, rounds: int, per_round: int
) -> dict[str, list[float]]:
    clients = {k: httpclient.InferenceServerClient(u.split("://")[1]) for k, u in urls.items()}
    inputs = httpclient.InferInput("image", [1, 1], "BYTES")
    inputs.set_data_from_numpy(image)
    times: dict[str, list[float]] = {k: [] for k in urls}
    for client in clients.values():  # warm both
        for _ in range(20):
            client.infer("digits", [inputs])
    for _ in range(rounds):
        for name, client in clients.items():
            for _ in range(per_round):
                start = time.perf_counter()
                client.infer("digits", [inputs])
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _in_process(spec: Path, url: str, image: np.ndarray, rounds: int,
                per_round: int) -> dict[str, list[float]]:  # fmt: skip
    from tritonpipe.pipeline import Pipeline

    os.environ.pop("TRITONPIPE_TRACE_URL", None)
    plain = Pipeline.load(spec, "digits", threads=1)
    os.environ["TRITONPIPE_TRACE_URL"] = url
    traced = Pipeline.load(spec, "digits", threads=1)
    os.environ.pop("TRITONPIPE_TRACE_URL")
    pipes = {"off": plain, "on": traced}
    times: dict[str, list[float]] = {k: [] for k in pipes}
    for pipe in pipes.values():
        for _ in range(20):
            pipe({"image": image})
    for _ in range(rounds):
        for name, pipe in pipes.items():
            for _ in range(per_round):
                start = time.perf_counter()
                pipe({"image": image})
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=25)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    image = np.array([[(DIGITS / "samples" / "three.png").read_bytes()]], dtype=object)
    load_before = os.getloadavg()
    ours, theirs = multiprocessing.Pipe()
    collector = multiprocessing.get_context("spawn").Process(target=_receive, args=(theirs,))
    collector.start()
    url = ours.recv()
    with tempfile.TemporaryDirectory() as tmp:
        spec = _spec(Path(tmp))
        repo = Path(tmp) / "repo"
        build_repository(spec, repo)
        plain = ServerOptions(repository=repo, exit_timeout_s=5)
        traced = ServerOptions(repository=repo, exit_timeout_s=5, trace_url=url)
        # Triton's own spans only: its OpenTelemetry mode without the models' step spans.
        triton_only = ServerOptions(
            repository=repo, exit_timeout_s=5, extra_args=tuple(traced.trace_arguments())
        )
        with (
            TritonServer(plain, restart=False) as off,
            TritonServer(triton_only, restart=False) as triton,
            TritonServer(traced, restart=False) as on,
        ):
            urls = {"off": off.http_url, "triton": triton.http_url, "on": on.http_url}
            served = _served(urls, image, args.rounds, args.per_round)
            time.sleep(1.0)  # the last exports
        in_process = _in_process(spec, url, image, args.rounds, args.per_round)
        time.sleep(1.0)
    ours.send("stop")
    total, steps = ours.recv()
    collector.join(10)
    load_after = os.getloadavg()
    made, encoded = _span_costs()
    rows = []
    for label, times in (
        ("Triton (HTTP, fused model)", served),
        ("in-process Pipeline", in_process),
    ):
        off50, off99 = _percentiles(times["off"])
        on50, on99 = _percentiles(times["on"])
        if "triton" in times:
            t50, t99 = _percentiles(times["triton"])
            triton = (f"{t50:.3f} ({t50 / off50:.2f})", f"{t99:.3f} ({t99 / off99:.2f})")
            steps_only = f"{on50 / t50:.2f}"
        else:
            triton, steps_only = ("-", "-"), f"{on50 / off50:.2f}"
        rows.append(
            f"| {label} | {off50:.3f} | {triton[0]} | {on50:.3f} | **{on50 / off50:.2f}** | "
            f"{steps_only} | {off99:.3f} | {triton[1]} | {on99:.3f} | {on99 / off99:.2f} |"
        )
    n = args.rounds * args.per_round
    lines = [
        "# Tracing overhead: step spans on and off",
        "",
        f"`python -m benchmarks.tracing` on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before / "
        f"{load_after[0]:.1f} after (the machine is shared; other sessions' work moves "
        "latency between minutes, which the alternating rounds spread over both sides).",
        "",
        f"{n} sequential requests per side (1 connection, batch 1, one PNG), in {args.rounds} "
        "alternating rounds of "
        f"{args.per_round}. Tracing on: Triton at `--trace-config mode=opentelemetry`, rate 1 "
        "(every request traced: Triton's 3 spans + 3 step spans), both exporters sending to a "
        f"loopback OTLP receiver; it decoded {total} spans, {steps} of them step spans.",
        "",
        "| runner | p50 off (ms) | p50 Triton's spans only (ratio) | p50 on (ms) | p50 on/off | "
        "p50 step spans' own share (on / Triton's only) | p99 off (ms) | "
        "p99 Triton's spans only (ratio) | p99 on (ms) | p99 on/off |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"CPU per step span: {made:.1f} us to make it on the answer path (ids, attributes, a "
        f"list append), {encoded:.1f} us to encode it (OTLP protobuf) on the exporter's thread.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
