"""Labels from a Feast feature view (``feast:REPO#VIEW``): the view's rows as its offline store
holds them, read with the offline store's ``pull_all_from_table_or_query`` (the query Feast's
own retrievals build on), and handed to :func:`tritonpipe.monitor.labels.join_labels` like any
other labels source.

The view's entity join keys are the key: a ``request_id`` entity to join by request, or a
business entity (``account_id``) to join by entity and event time. Its timestamp field becomes
``event_time`` (when the labelled event happened); ``label_time`` (when the label became known)
is the view's ``label_time`` feature where it has one, else the timestamp field too (a view of
chargebacks stamped when they arrived). The view's ``ttl`` is the default ``tolerance`` of an
entity join, as in Feast's point-in-time joins.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tritonpipe.errors import MonitorError

PREFIX = "feast:"


def parse(source: str) -> tuple[str, str]:
    """(repository folder, feature view) of ``feast:REPO#VIEW``."""
    repo, _, view = source.removeprefix(PREFIX).partition("#")
    if not repo or not view:
        raise MonitorError(f"{source}: a Feast labels source is feast:REPO_FOLDER#FEATURE_VIEW")
    return repo, view


def read_feast_labels(source: str, *, as_of: Any = None) -> Any:
    """The rows of the feature view named by ``source`` (``feast:REPO#VIEW``) with an event time
    up to ``as_of`` (default: now), with ``event_time`` and ``label_time`` columns; the view's
    ttl (or None) is in ``frame.attrs["ttl"]``."""
    import pandas as pd
    from feast.utils import _get_column_names

    from tritonpipe.features.store import feature_view, open_store

    repo, name = parse(source)

    def fail(message: str) -> MonitorError:
        return MonitorError(f"{source}: {message}")

    store = open_store(repo, fail)
    view = feature_view(store, repo, name, fail)
    entities = [store.get_entity(e) for e in view.entities]
    keys, features, timestamp, _ = _get_column_names(view, entities)
    end = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    provider: Any = store._get_provider()
    try:
        job = provider.offline_store.pull_all_from_table_or_query(
            config=store.config,
            data_source=view.batch_source,
            join_key_columns=keys,
            feature_name_columns=features,
            timestamp_field=timestamp,
            start_date=datetime(1970, 1, 1, tzinfo=UTC),
            # The offline store's end is exclusive; a label stamped exactly at as_of is known.
            end_date=end.to_pydatetime() + timedelta(microseconds=1),
        )
        frame = job.to_df()
    except Exception as exc:  # a missing file, a broken query: name the view
        raise MonitorError(
            f"{source}: cannot read view {name!r} from the offline store: {exc}"
        ) from None
    mapping = view.batch_source.field_mapping or {}
    frame = frame.rename(columns=mapping)
    stamp = mapping.get(timestamp, timestamp)
    frame = frame.rename(columns={stamp: "event_time"})
    if "label_time" not in frame:
        frame["label_time"] = frame["event_time"]
    ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
    frame.attrs["ttl"] = None if ttl is None else pd.Timedelta(ttl)
    return frame.reset_index(drop=True)
