"""Read prediction logs back as a DataFrame: a Parquet folder, or ``redis://host:port/0#stream``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonpipe.errors import PredictionLogError

DEFAULT_STREAM = "tritonpipe:predictions"


def _read_parquet(folder: Path) -> Any:
    import pandas as pd

    if not folder.is_dir():
        raise PredictionLogError(f"{folder}: no such prediction-log folder")
    # Complete parts (written, then renamed), and the journals of parts still open.
    frames = [pd.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))]
    records = []
    for journal in sorted(folder.glob("journal-*.jsonl")):
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
    if records:
        frames.append(pd.DataFrame(records))
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    # A process killed between rolling a part and clearing its journal leaves both copies.
    keys = [c for c in ("request_id", "row", "timestamp") if c in frame]
    return frame.drop_duplicates(subset=keys) if keys else frame


def _read_redis(url: str) -> Any:
    import pandas as pd
    import redis

    base, _, stream = url.partition("#")
    client = redis.Redis.from_url(base, socket_timeout=5.0)
    try:
        entries = client.xrange(stream or DEFAULT_STREAM)
    except redis.RedisError as exc:
        raise PredictionLogError(f"{url}: cannot read the stream ({exc})") from None
    finally:
        client.close()
    return pd.DataFrame([json.loads(fields[b"record"]) for _, fields in entries])


def read_logs(source: str | Path) -> Any:
    """All records at ``source`` as a pandas DataFrame, sorted by time (timestamp as datetime)."""
    import pandas as pd

    text = str(source)
    frame = _read_redis(text) if text.startswith("redis://") else _read_parquet(Path(text))
    if "timestamp" in frame:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
        frame = frame.sort_values(["timestamp", "request_id", "row"], kind="stable")
    return frame.reset_index(drop=True)
