"""Labels that arrive after the predictions, joined point-in-time.

A labels source is a Parquet file or folder, a SQL table (``postgresql://...`` / ``sqlite:///``
URL with the table name after ``#``), or a Feast feature view (``feast:REPO#VIEW``, see
:mod:`tritonpipe.monitor.feast_labels`), with a label column, the time the label became
known (``label_time``), and a key: the request id (``request_id``, and ``row`` when present), or
an entity and the event time (the label of the latest event of that entity at or before the
prediction, within ``tolerance``). ``as_of`` keeps only labels known by then, so a window
monitored yesterday sees what was known yesterday. Public: champion/challenger comparisons call
:func:`join_labels` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonpipe.errors import MonitorError


def read_labels(source: str | Path, *, as_of: Any = None) -> Any:
    """A labels DataFrame from a Parquet path, a SQL URL (``url#table``) or a Feast feature view
    (``feast:REPO#VIEW``; ``as_of`` bounds the rows read)."""
    import pandas as pd

    text = str(source)
    if text.startswith("feast:"):
        from tritonpipe.monitor.feast_labels import read_feast_labels

        return read_feast_labels(text, as_of=as_of)
    if "://" in text and not text.startswith("file://"):
        import sqlalchemy

        url, _, table = text.partition("#")
        if not table:
            raise MonitorError(f"{text}: name the table after '#', e.g. {url}#labels")
        try:
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as conn:
                return pd.read_sql_table(table, conn)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise MonitorError(f"{url}: cannot read labels table {table!r} ({exc})") from None
    path = Path(text.removeprefix("file://"))
    if not path.exists():
        raise MonitorError(f"{path}: no such labels file or folder")
    return pd.read_parquet(path)


def _utc(series: Any) -> Any:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series):
        return pd.to_datetime(series, unit="s", utc=True)
    return pd.to_datetime(series, utc=True)


def join_labels(
    predictions: Any,
    labels: Any,
    *,
    label: str = "label",
    key: str = "request_id",
    label_time: str | None = "label_time",
    entity: str | None = None,
    event_time: str = "event_time",
    tolerance: Any = None,
    as_of: Any = None,
) -> Any:
    """``predictions`` with a ``label`` column (NaN where no label is known as of ``as_of``).

    By request id: ``labels`` has ``key`` (and ``row`` when both frames have it). By entity:
    ``labels`` has ``entity`` and ``event_time``; each prediction takes the label of the latest
    event at or before its ``timestamp`` (within ``tolerance``: ``"7d"`` or a Timedelta), matched
    on the column
    ``entity_<entity>`` of the logs."""
    import pandas as pd

    missing = [c for c in (label, *([label_time] if label_time else [])) if c not in labels]
    if missing:
        raise MonitorError(f"labels have no column {missing[0]!r} (columns: {list(labels)})")
    known = labels
    if label_time and as_of is not None:
        when = pd.Timestamp(as_of)
        when = when.tz_localize("UTC") if when.tzinfo is None else when  # naive: UTC
        known = labels[_utc(labels[label_time]) <= when]
    out = predictions.drop(columns=[c for c in ("label",) if c in predictions])
    if entity is None:
        keys = [k for k in (key, "row") if k in known and k in predictions]
        if key not in keys:
            raise MonitorError(f"labels have no key column {key!r} (columns: {list(labels)})")
        right = known[[*keys, label]].drop_duplicates(subset=keys, keep="last")
        right = right.rename(columns={label: "label"})
        return out.merge(right, on=keys, how="left", validate="many_to_one")
    column = f"entity_{entity}"
    for frame, name, what in ((known, entity, "labels"), (known, event_time, "labels"),
                              (predictions, column, "prediction logs")):  # fmt: skip
        if name not in frame:
            raise MonitorError(f"{what} have no column {name!r}")
    right = known[[entity, event_time, label]].rename(
        columns={entity: column, label: "label", event_time: "_event_time"}
    )
    right["_event_time"] = _utc(right["_event_time"])
    right[column] = right[column].astype(out[column].dtype)
    order = out["timestamp"].argsort(kind="stable")
    joined = pd.merge_asof(
        out.iloc[order].reset_index(drop=True),
        right.sort_values("_event_time"),
        left_on="timestamp",
        right_on="_event_time",
        by=column,
        direction="backward",
        tolerance=pd.Timedelta(tolerance) if tolerance else None,
    )
    return joined.drop(columns="_event_time")
