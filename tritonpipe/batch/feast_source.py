"""Rows from a Feast feature store (offline store), for batch jobs with ``source.type: feast``.

Two retrievals, both point-in-time correct:

- entity rows (:func:`join_entities`): each row's keys and ``event_timestamp`` joined with the
  feature service's features as they were at that time (``get_historical_features``);
- the latest values of every entity (:func:`latest_values`) as of a time: per feature view, the
  offline store's ``pull_latest_from_table_or_query`` over the view's batch source within
  ``[as_of - ttl, as_of]``, the very query materialization runs to fill the online store, so the
  rows equal what the online store would hold after materializing up to ``as_of``. One scan per
  view; no entity list is needed up front (building one from the sources' distinct keys and
  then calling ``get_historical_features`` would scan every source twice and sort-join them).
  Views are outer-joined on their join keys; an entity a view has no row for gets nulls there,
  which the job's bad-row policy then names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from tritonpipe.errors import BatchError

TIMESTAMP = "event_timestamp"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@lru_cache(maxsize=4)
def _store_and_service(repo: str, service: str) -> tuple[Any, Any]:
    from tritonpipe.features.store import feature_service, open_store

    store = open_store(repo, lambda message: BatchError(f"source.repo: {message}"))
    found = feature_service(
        store, repo, service, lambda message: BatchError(f"source.feature_service: {message}")
    )
    return store, found


def feature_names(repo: str, service: str) -> list[str]:
    """The columns a retrieval of ``service`` adds: its features, as named in the service."""
    _, features = _store_and_service(repo, service)
    return [f.name for p in features.feature_view_projections for f in p.features]


def join_entities(repo: str, service: str, entities: Any, where: str) -> Any:
    """``entities`` (keys, ``event_timestamp``, other columns kept) with the service's features
    as of each row's timestamp, in the entities' order."""
    if TIMESTAMP not in entities.columns:
        raise BatchError(f"{where}: feast entity rows need an {TIMESTAMP} column")
    store, features = _store_and_service(repo, service)
    order = "_feast_order"
    try:
        joined = store.get_historical_features(
            entity_df=entities.assign(**{order: range(len(entities))}), features=features
        ).to_df()
    except Exception as exc:  # Feast raises its own tree: name the repo, service and rows
        raise BatchError(
            f"{where}: feast {repo} feature service '{service}': retrieval failed: {exc}"
        ) from None
    return joined.sort_values(order).drop(columns=[order]).reset_index(drop=True)


def _view_latest(store: Any, projection: Any, as_of: datetime) -> tuple[list[str], Any]:
    """One view's latest row per entity in ``[as_of - ttl, as_of]``: join keys and the
    projection's features (named as the service exposes them)."""
    from feast.utils import _get_column_names

    view = store.get_feature_view(projection.name)
    entities = [store.get_entity(name) for name in view.entities]
    keys, features, timestamp, created = _get_column_names(view, entities)
    ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
    start = as_of - ttl if ttl else datetime(1970, 1, 1, tzinfo=UTC)
    provider: Any = store._get_provider()
    job = provider.offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=view.batch_source,
        join_key_columns=keys,
        feature_name_columns=features,
        timestamp_field=timestamp,
        created_timestamp_column=created,
        start_date=start,
        # The offline store's end is exclusive; a feature row stamped exactly at as_of is in.
        end_date=as_of + timedelta(microseconds=1),
    )
    frame = job.to_df()
    mapping = view.batch_source.field_mapping or {}
    frame = frame.rename(columns=mapping)
    wanted = [f.name for f in projection.features]
    join_keys = [c.name for c in view.entity_columns]
    return join_keys, frame[join_keys + wanted]


@lru_cache(maxsize=4)
def latest_values(repo: str, service: str, as_of: datetime) -> Any:
    """Every entity's latest feature values as of ``as_of``, one row per entity, sorted by the
    join keys (so a rerun of the same job sees the same rows in the same units)."""
    import pandas as pd

    as_of = _utc(as_of)
    store, features = _store_and_service(repo, service)
    frame: Any = None
    keys: list[str] = []
    for projection in features.feature_view_projections:
        try:
            view_keys, rows = _view_latest(store, projection, as_of)
        except Exception as exc:  # Feast raises its own tree: name the service and the view
            raise BatchError(
                f"feast {repo} feature service '{service}' view '{projection.name}': "
                f"cannot read the offline store: {exc}"
            ) from None
        if frame is None:
            frame, keys = rows, view_keys
        else:
            shared = [k for k in view_keys if k in keys]
            clash = [c for c in rows.columns if c in frame.columns and c not in shared]
            if clash:
                raise BatchError(
                    f"feature service '{service}': feature '{clash[0]}' comes from two views"
                )
            if not shared:
                raise BatchError(
                    f"feature service '{service}': view '{projection.name}' shares no join key "
                    f"with the others ({', '.join(keys)})"
                )
            frame = frame.merge(rows, on=shared, how="outer")
            keys += [k for k in view_keys if k not in keys]
    if frame is None:
        raise BatchError(f"feature service '{service}' has no feature views")
    frame = frame.sort_values(keys).reset_index(drop=True)
    frame[TIMESTAMP] = pd.Timestamp(as_of)
    return frame
