"""Prediction-log sinks, the background logger and reading logs back (real files, real Redis)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest

from tritonpipe.errors import PredictionLogError
from tritonpipe.predlog import ParquetSink, PredictionLogger, make_sink, read_logs
from tritonpipe.predlog.sinks import Record, Sink
from tritonpipe.server.redis_server import RedisServer


def record(i: int) -> Record:
    return {"request_id": f"r{i}", "row": 0, "timestamp": 1.0 + i, "features": [0.5, float(i)]}


def test_parquet_sink_rolls_parts_and_is_readable_while_written(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    sink = ParquetSink(logs, roll_rows=10, roll_seconds=3600, idle_seconds=3600)
    sink.write([record(i) for i in range(5)])
    sink.tick()  # 5 rows, young, still being written: not due
    assert not list(logs.glob("part-*.parquet"))
    sink.write([record(i) for i in range(5, 25)])
    sink.tick()  # 25 rows: one part
    assert len(list(logs.glob("part-*.parquet"))) == 1
    sink.write([record(i) for i in range(25, 30)])
    assert len(read_logs(logs)) == 30  # 5 still open: read from the journal
    sink.close()
    frame = read_logs(logs)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(30)]
    assert frame["features"].iloc[3].tolist() == [0.5, 3.0]
    assert len(list(logs.glob("part-*.parquet"))) == 2
    assert not list(logs.glob("journal-*"))


def test_parquet_sink_rolls_by_age_and_after_a_pause(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, roll_rows=1000, roll_seconds=0.3, idle_seconds=3600)
    sink.write([record(0)])
    assert not sink.due()
    time.sleep(0.35)
    assert sink.due()
    sink.tick()
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    paused = ParquetSink(tmp_path / "p", roll_rows=1000, roll_seconds=3600, idle_seconds=0.2)
    paused.write([record(1)])
    time.sleep(0.25)
    assert paused.due()


def test_logger_writes_everything_queued_before_close(tmp_path: Path) -> None:
    logger = PredictionLogger(ParquetSink(tmp_path, roll_rows=1000), queue_size=5000)
    for i in range(3000):
        logger.log(record(i))
    logger.close()
    assert logger.written == 3000 and logger.errors == 0 and logger.dropped == 0
    assert len(read_logs(tmp_path)) == 3000


def test_a_record_logged_to_a_parquet_sink_survives_sigkill_right_after(tmp_path: Path) -> None:
    """The Triton hook logs before returning the answer; Triton may then be killed (its exit
    timeout) with no finalize. Whatever ``log`` returned from must be on disk."""
    script = f"""
import os, signal
from pathlib import Path
from tritonpipe.predlog import ParquetSink, PredictionLogger
logger = PredictionLogger(ParquetSink(Path({str(tmp_path)!r}), roll_rows=100))
for i in range(1000):
    logger.log({{"request_id": f"r{{i}}", "row": 0, "timestamp": 1.0 + i}})
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    frame = read_logs(tmp_path)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(1000))


def test_parquet_sink_keeps_every_record_once_while_threads_write_and_parts_roll(
    tmp_path: Path,
) -> None:
    logger = PredictionLogger(ParquetSink(tmp_path, roll_rows=50, roll_seconds=0.05))

    def log(thread: int) -> None:
        for i in range(400):
            logger.log({"request_id": f"t{thread}-{i}", "row": 0, "timestamp": 1.0})

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.close()
    parts = [pd.read_parquet(p) for p in tmp_path.glob("part-*.parquet")]
    ids = pd.concat(parts)["request_id"].tolist()
    assert len(parts) > 1 and len(ids) == 1600 and len(set(ids)) == 1600
    assert not list(tmp_path.glob("journal-*"))


class Failing(Sink):
    type = "failing"

    def write(self, records: Sequence[Record]) -> None:
        raise ConnectionError("sink is down")


class Slow(Sink):
    type = "slow"

    def write(self, records: Sequence[Record]) -> None:
        time.sleep(0.5)


def test_a_failing_sink_is_counted_and_never_raises_into_log() -> None:
    logger = PredictionLogger(Failing())
    for i in range(10):
        logger.log(record(i))
    logger.close()
    assert logger.errors == 10 and logger.written == 0


def test_a_full_queue_drops_instead_of_blocking() -> None:
    logger = PredictionLogger(Slow(), queue_size=4)
    start = time.perf_counter()
    for i in range(100):
        logger.log(record(i))
    assert time.perf_counter() - start < 0.2
    assert logger.dropped >= 90
    logger.close()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_redis_stream_sink_round_trip(redis: RedisServer) -> None:
    sink = make_sink({"type": "redis", "url": redis.url, "stream": "preds"})
    logger = PredictionLogger(sink)
    for i in range(50):
        logger.log(record(i))
    logger.close()
    frame = read_logs(f"{redis.url}#preds")
    assert len(frame) == 50 and frame["features"].iloc[7] == [0.5, 7.0]


def test_sink_config_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(PredictionLogError, match="type 'kafka': choose parquet or redis"):
        make_sink({"type": "kafka"})
    with pytest.raises(PredictionLogError, match="missing field 'path'"):
        make_sink({"type": "parquet"})
    with pytest.raises(PredictionLogError, match="no such prediction-log folder"):
        read_logs(tmp_path / "nothing")


def test_cli_logs_read_prints_and_writes(tmp_path: Path) -> None:
    import subprocess
    import sys

    import pandas as pd

    sink = ParquetSink(tmp_path / "logs")
    sink.write([record(i) for i in range(12)])
    sink.close()
    cli = [sys.executable, "-m", "tritonpipe.cli", "logs", "read", str(tmp_path / "logs")]
    out = subprocess.run([*cli, "--tail", "2"], capture_output=True, text=True, check=True)
    assert "r11" in out.stdout and "12 records in" in out.stdout
    subprocess.run([*cli, "--out", str(tmp_path / "all.csv")], check=True, capture_output=True)
    assert len(pd.read_csv(tmp_path / "all.csv")) == 12
    bad = subprocess.run([*cli[:-1], str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 1 and "no such prediction-log folder" in bad.stderr
