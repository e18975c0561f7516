"""Stream benchmark (a script, not a timed test): the fraud stream job with 1 and 2 workers at a
replay rate above one worker's capacity, fresh features pushed to Feast's Redis online store,
scoring with the embedded pipeline and with a Triton server (`--url`); and, to show what the
online store costs, embedded workers pushing to the SQLite online store instead; and the same
embedded job on NATS JetStream and on Kafka (a 4-partition topic on Tansu) instead of the Redis
Stream. Events/s and end-to-end p50/p99 (producer stamp -> prediction written).

    python examples/fraud/bench_stream.py --out benchmarks/results/stream.md
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from stream_demo import bus_for, bus_server, heldout_events, job_for  # noqa: E402

from tritonpipe.perf.stream_load import StreamRun, drive  # noqa: E402
from tritonpipe.server.redis_server import RedisServer  # noqa: E402
from tritonpipe.stream import load_config  # noqa: E402

Row = tuple[str, str, str, StreamRun]  # bus, scorer, online store, run


@contextlib.contextmanager
def triton_for(folder: Path, job: Path, events: list) -> Iterator[str]:
    """A Triton server over the job's pipeline spec (its feature repo copy), warmed up with a
    batch of events (its first requests load the lookup's store); yields its URL."""
    from tritonpipe.ensembles import build_repository
    from tritonpipe.server import ServerOptions, TritonServer
    from tritonpipe.stream import Message, decode
    from tritonpipe.stream.replay import encoder
    from tritonpipe.stream.scoring import TritonScorer

    build_repository(folder / "pipeline.yaml", folder / "repo")
    with TritonServer(ServerOptions(repository=folder / "repo")) as triton:
        config = load_config(job)
        encode, scorer = encoder(config), TritonScorer(triton.http_url, str(config.name))
        requests = [decode(config, Message(id="warm", body=encode(e))).inputs for e in events]
        for _ in range(3):
            scorer.score(requests)
        scorer.close()
        yield triton.http_url


def with_bus(job: Path, bus: dict) -> Path:
    """The job file with another ``bus:`` (written beside it)."""
    import yaml

    raw = yaml.safe_load(job.read_text())
    raw["bus"] = bus
    path = job.with_name(f"job-{bus.get('topic') or bus['stream']}.yaml")
    path.write_text(yaml.safe_dump(raw))
    return path


def setting(
    scorer: str, online: str, events: list, rate: float, fresh: bool, repeats: int,
    bus: str = "redis",
) -> list[Row]:  # fmt: skip
    """1 then 2 workers, ``repeats`` times, alternating, on one Redis (streams and windows
    emptied before each run; on NATS and Kafka each run has streams / topics of its own), so
    each 2-worker run has a 1-worker run right beside it."""
    import redis

    rows = []
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp:
        folder = Path(tmp)
        server = RedisServer(folder).start()
        try:
            with bus_server(bus, folder) as address:
                job = job_for(server.url, folder, fresh=fresh, online=online)
                warm = events[:64]  # scored directly (no hook runs): the store stays as it was
                triton = triton_for(folder, job, warm) if scorer == "triton" else None
                with triton or contextlib.nullcontext() as url:
                    for n, workers in enumerate((1, 2) * repeats):
                        for db in (0, 1):  # the stream and the windows; Feast's (db 2) stays
                            redis.Redis.from_url(server.url.rsplit("/", 1)[0] + f"/{db}").flushdb()
                        if address:  # streams / topics of its own for each run
                            job = with_bus(job, bus_for(bus, address, f"run{n}"))
                        logs = folder / f"workers{n}"
                        run = drive(load_config(job), job, events, workers=workers, rate=rate,
                                    url=url, report=None, logs=logs)  # fmt: skip
                        print(bus, scorer, online, run, flush=True)
                        rows.append((bus, scorer, online, run))
        finally:
            server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="above one worker's capacity")
    parser.add_argument("--events", type=int, default=None, help="first N (all of the day)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each row (median)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-feature hook")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only-buses", action="store_true",
                        help="only the embedded + Redis-store rows, on each bus")  # fmt: skip
    args = parser.parse_args()
    events = heldout_events(limit=args.events)
    args.events = len(events)
    load_before = os.getloadavg()
    fresh = not args.no_fresh
    rows = setting("embedded", "redis", events, args.rate, fresh, args.repeats)
    if not args.only_buses:
        rows += setting("embedded", "sqlite", events, args.rate, fresh, args.repeats)
        rows += setting("triton", "redis", events, args.rate, fresh, args.repeats)
    for bus in ("nats", "kafka"):
        rows += setting("embedded", "redis", events, args.rate, fresh, args.repeats, bus=bus)
    load_after = os.getloadavg()
    text = report(rows, args, load_before, load_after)
    print(text)
    if args.out:
        args.out.write_text(text)


def _loads(values: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.2f}" for x in values)


def _median(runs: list[StreamRun], value: Callable[[StreamRun], float]) -> float:
    return float(np.median([value(r) for r in runs]))


def report(rows: list[Row], args: argparse.Namespace,
           before: tuple[float, ...], after: tuple[float, ...]) -> str:  # fmt: skip
    fresh = "off" if args.no_fresh else "on (one window update and one Feast push per micro-batch)"
    lines = [
        "# Stream workers: fraud job, 1 vs 2 workers, embedded pipeline vs Triton-backed, "
        "on Redis Streams, NATS JetStream and Kafka",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
        "shared with other agents' jobs (load average 1/5/15 min before "
        f"{_loads(before)}, after {_loads(after)}). "
        f"{args.events:,} held-out transactions replayed into the bus at {args.rate:.0f}/s "
        f"(producer-stamped), fresh features {fresh}, micro-batches of up to 64 events or 20 ms. "
        f"Each row: the median of {args.repeats} runs, 1 and 2 workers alternating; events/s "
        "from the first event published to the last prediction written. Redis, the producer, "
        "the workers (and Triton) all share the same 2 cores. Kafka: a 4-partition topic on "
        "Tansu (in-memory storage), events spread over the partitions; NATS: one JetStream "
        "stream with a durable pull consumer. The fresh-feature windows and Feast's online "
        "store are on Redis whatever the bus.",
        "",
        "| bus | scorer | online store | workers | events/s (median) | runs' events/s "
        "| e2e p50 ms | e2e p99 ms | max lag | scored per run | dead |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    groups: dict[tuple[str, str, str, int], list[StreamRun]] = {}
    for bus, kind, online, r in rows:
        groups.setdefault((bus, kind, online, r.workers), []).append(r)
    for (bus, kind, online, workers), runs in groups.items():
        med = functools.partial(_median, runs)
        each = " / ".join(f"{r.events_per_s:,.0f}" for r in runs)
        scored = sorted({r.scored for r in runs})
        lines.append(
            f"| {bus} | {kind} | {online} | {workers} "
            f"| {med(lambda r: r.events_per_s):,.0f} | {each} "
            f"| {med(lambda r: r.p50_ms):,.0f} | {med(lambda r: r.p99_ms):,.0f} "
            f"| {med(lambda r: r.max_lag):,.0f} | {'/'.join(f'{x:,}' for x in scored)} "
            f"| {sum(r.dead for r in runs)} |"
        )
    ratios = []
    for bus, kind, online in dict.fromkeys((b, k, o) for b, k, o, _ in rows):
        one, two = groups[(bus, kind, online, 1)], groups[(bus, kind, online, 2)]
        pair = [b.events_per_s / a.events_per_s for a, b in zip(one, two, strict=True)]
        ratios.append(f"{bus}, {kind} + {online}: {np.median(pair):.2f} "
                      f"({' / '.join(f'{x:.2f}' for x in pair)})")  # fmt: skip
    lines += ["", "2 workers / 1 worker, events/s, median of the side-by-side pairs (each pair): "
              + "; ".join(ratios)]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
