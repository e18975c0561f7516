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
    parts = sorted(folder.glob("part-*.parquet"))  # complete parts only (written then renamed)
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


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
