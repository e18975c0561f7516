"""Stream benchmark (a script, not a timed test): the fraud stream job with 1 and 2 workers at a
replay rate above one worker's capacity, scoring with the embedded pipeline and with a Triton
server (`--url`); events/s and end-to-end p50/p99 (producer stamp -> prediction written).

    python examples/fraud/bench_stream.py --out tritonpipe/perf/results/stream.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from stream_demo import heldout_events, job_for  # noqa: E402

from tritonpipe.perf.redis_server import RedisServer  # noqa: E402
from tritonpipe.perf.stream_load import StreamRun, drive  # noqa: E402
from tritonpipe.stream import load_config  # noqa: E402


def one(events: list, workers: int, rate: float, url: str | None, fresh: bool) -> StreamRun:
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            job = job_for(server.url, Path(tmp), fresh=fresh)
            return drive(load_config(job), job, events, workers=workers, rate=rate, url=url,
                         report=None, logs=Path(tmp) / "workers")  # fmt: skip
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-feature hook")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from tritonpipe.ensembles import build_repository
    from tritonpipe.server import ServerOptions, TritonServer

    events = heldout_events(limit=args.events)
    load_before = os.getloadavg()
    rows: list[tuple[str, StreamRun]] = []
    for workers in (1, 2):
        run = one(events, workers, args.rate, None, not args.no_fresh)
        rows.append(("embedded", run))
        print("embedded", run, flush=True)
    with tempfile.TemporaryDirectory(prefix="stream-bench-repo-") as tmp:
        build_repository(HERE / "pipeline.yaml", Path(tmp) / "repo")
        with TritonServer(ServerOptions(repository=Path(tmp) / "repo")) as triton:
            for workers in (1, 2):
                run = one(events, workers, args.rate, triton.http_url, not args.no_fresh)
                rows.append(("triton", run))
                print("triton", run, flush=True)
    load_after = os.getloadavg()
    text = report(rows, args, load_before, load_after)
    print(text)
    if args.out:
        args.out.write_text(text)


def _loads(values: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.2f}" for x in values)


def report(rows: list[tuple[str, StreamRun]], args: argparse.Namespace,
           before: tuple[float, ...], after: tuple[float, ...]) -> str:  # fmt: skip
    lines = [
        "# Stream workers: fraud job, 1 vs 2 workers, embedded pipeline vs Triton-backed",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
        "shared with four other agents' jobs (load average 1/5/15 min before "
        f"{_loads(before)}, after {_loads(after)}). "
        f"One run of each row, in order; {args.events:,} held-out transactions replayed into a "
        f"Redis Stream at {args.rate:.0f}/s (producer-stamped), fresh features "
        f"{'off' if args.no_fresh else 'on'}, micro-batches of up to 64 events or 20 ms. Redis, "
        "the producer, the workers (and Triton) all share the same 2 cores.",
        "",
        "| scorer | workers | events/s | e2e p50 ms | e2e p99 ms | max lag | scored | dead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in rows:
        lines.append(
            f"| {kind} | {r.workers} | {r.events_per_s:,.0f} | {r.p50_ms:,.0f} | {r.p99_ms:,.0f} "
            f"| {r.max_lag:,} | {r.scored:,} | {r.dead} |"
        )
    by = {(k, r.workers): r for k, r in rows}
    lines += ["", "Ratios (2 workers / 1 worker, events/s): "
              + ", ".join(f"{k}: {by[(k, 2)].events_per_s / by[(k, 1)].events_per_s:.2f}"
                          for k in ("embedded", "triton"))]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
