"""Prediction-log sinks, the background logger and reading logs back (real files, real Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tritonpipe.errors import PredictionLogError
from tritonpipe.perf.redis_server import RedisServer
from tritonpipe.predlog import ParquetSink, PredictionLogger, make_sink, read_logs
from tritonpipe.predlog.sinks import Record, Sink


def record(i: int) -> Record:
    return {"request_id": f"r{i}", "row": 0, "timestamp": 1.0 + i, "features": [0.5, float(i)]}


def test_parquet_sink_rolls_parts_and_is_readable_while_written(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "logs", roll_rows=10, roll_seconds=3600)
    sink.write([record(i) for i in range(25)])
    assert len(list((tmp_path / "logs").glob("part-*.parquet"))) == 1  # 25 rows: one roll
    assert len(read_logs(tmp_path / "logs")) == 25  # 5 still open: read from the journal
    sink.close()
    frame = read_logs(tmp_path / "logs")
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(25)]
    assert frame["features"].iloc[3].tolist() == [0.5, 3.0]
    assert not list((tmp_path / "logs").glob("journal-*"))


def test_logger_writes_everything_queued_before_close(tmp_path: Path) -> None:
    logger = PredictionLogger(ParquetSink(tmp_path, roll_rows=1000), queue_size=5000)
    for i in range(3000):
        logger.log(record(i))
    logger.close()
    assert logger.written == 3000 and logger.errors == 0 and logger.dropped == 0
    assert len(read_logs(tmp_path)) == 3000


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
