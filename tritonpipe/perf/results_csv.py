"""Profile results in perf_analyzer's CSV format (times in microseconds)."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tritonpipe.errors import PerfError

# perf_analyzer's own header, column for column (its first column is "Request Rate" in rate mode).
COLUMNS = (
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
)
LOAD_COLUMNS = ("Concurrency", "Request Rate")


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One load level. ``load`` is the concurrency or the request rate."""

    load: float
    throughput: float
    client_send_us: int
    network_us: int
    server_queue_us: int
    server_input_us: int
    server_infer_us: int
    server_output_us: int
    client_recv_us: int
    p50_us: int
    p90_us: int
    p95_us: int
    p99_us: int

    def values(self) -> list[str]:
        data = asdict(self)
        data.pop("load")
        return [f"{v:g}" if isinstance(v, float) else str(v) for v in data.values()]


def header(mode: str) -> list[str]:
    return [LOAD_COLUMNS[0] if mode == "concurrency" else LOAD_COLUMNS[1], *COLUMNS]


def write_csv(path: Path, rows: list[ResultRow], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header(mode))
        for row in sorted(rows, key=lambda r: r.load):
            load = f"{row.load:g}"
            writer.writerow([load, *row.values()])


def read_csv(path: Path) -> tuple[str, list[ResultRow]]:
    """Read a CSV written by tritonpipe or perf_analyzer; returns (mode, rows)."""
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            head = next(reader, None)
            body = [r for r in reader if r]
    except OSError as exc:
        raise PerfError(f"{path}: cannot read ({exc.strerror})") from exc
    if not head or head[0] not in LOAD_COLUMNS or tuple(head[1:13]) != COLUMNS:
        raise PerfError(f"{path}: not a perf_analyzer CSV (header {head[:3] if head else []}...)")
    mode = "concurrency" if head[0] == LOAD_COLUMNS[0] else "request_rate"
    rows = []
    names = [f.name for f in fields(ResultRow)]
    for n, record in enumerate(body, start=2):
        try:
            if len(record) < 1 + len(COLUMNS):
                raise ValueError(f"{len(record)} columns, expected {1 + len(COLUMNS)}")
            values = [
                float(record[0]),
                float(record[1]),
                *(int(float(v or 0)) for v in record[2:13]),
            ]
        except (ValueError, IndexError) as exc:
            raise PerfError(f"{path}:{n}: malformed row ({exc})") from exc
        rows.append(ResultRow(**dict(zip(names, values, strict=True))))  # type: ignore[arg-type]
    return mode, rows
