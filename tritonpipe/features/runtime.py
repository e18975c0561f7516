"""The feature-lookup step as it runs inside Triton (imported by the stage file `build` generates).

At load: the Feast repository copied into the model (feature_store.yaml + a registry snapshot) is
opened once, the feature service is resolved once to its feature views and features, and the
user's transform is imported. Per merged batch: one ``online_read`` per feature view (Feast's
online-store interface: one SQLite query or one Redis pipeline for all rows), missing entities
handled by the declared policy, then the transform computes on-demand features.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonpipe.errors import FeatureStoreError

Array = np.ndarray[Any, Any]
PLAN = "plan.json"
MODULES = "modules"
log = logging.getLogger("tritonpipe.features")
_warming = False


@contextmanager
def warming() -> Iterator[None]:
    """Lookups run inside are a model's warmup at load: an online store that cannot be read
    (a Redis not up yet) is logged once and the lookup goes on with the missing-entity defaults,
    so the transform and the steps after it still run; the reject policy does not apply."""
    global _warming
    _warming = True
    try:
        yield
    finally:
        _warming = False


class MissingEntityError(ValueError):
    """An entity is not in the online store and the policy is reject (becomes INVALID_ARG)."""


@dataclass(frozen=True)
class _View:
    table: Any  # feast.FeatureView
    features: list[str]
    join_keys: list[str]
    value_types: list[Any]  # feast ValueType per join key


def _load_transform(folder: Path, ref: str | None) -> Callable[..., Mapping[str, Array]] | None:
    if ref is None:
        return None
    module_name, _, func = ref.rpartition(":")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return getattr(importlib.import_module(module_name), func)  # type: ignore[no-any-return]


class OnlineLookup:
    """Reads a feature service's features for a batch of entities and builds the step's outputs."""

    def __init__(self, folder: Path) -> None:
        from feast import FeatureStore

        self.plan: dict[str, Any] = json.loads((folder / PLAN).read_text())
        try:
            store = FeatureStore(repo_path=str(folder))
            service = store.get_feature_service(self.plan["feature_service"])
        except Exception as exc:  # Feast raises many kinds; name the repository and service
            raise FeatureStoreError(
                f"feature service '{self.plan['feature_service']}' in {folder}: {exc}"
            ) from exc
        self.config = store.config
        provider: Any = store._get_provider()
        self.store = provider.online_store  # Feast's OnlineStore interface (online_read)
        self.views: list[_View] = []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            columns = view.entity_columns
            self.views.append(
                _View(
                    table=view,
                    features=[f.name for f in projection.features],
                    join_keys=[c.name for c in columns],
                    value_types=[c.dtype.to_value_type() for c in columns],
                )
            )
        self.transform = _load_transform(folder / MODULES, self.plan.get("transform"))
        self.defaults: dict[str, float] = self.plan["missing"]["defaults"]

    def _entity_keys(self, view: _View, inputs: Mapping[str, Array]) -> list[Any]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import python_values_to_proto_values

        columns = [
            python_values_to_proto_values(np.asarray(inputs[k]).reshape(-1).tolist(), t)
            for k, t in zip(view.join_keys, view.value_types, strict=True)
        ]
        return [
            EntityKey(join_keys=view.join_keys, entity_values=list(values))
            for values in zip(*columns, strict=True)
        ]

    def read(self, inputs: Mapping[str, Array]) -> tuple[dict[str, Array], Array]:
        """Stored features by name (float64, defaults where missing) and a found-mask per row."""
        rows = len(np.asarray(inputs[self.views[0].join_keys[0]]).reshape(-1))
        found = np.ones(rows, dtype=bool)
        stored: dict[str, Array] = {}
        for view in self.views:
            # A copy: Feast's Redis store appends "_ts:<view>" to the list it is given, so the
            # same list would ask Redis for one more field on every call, without end.
            keys = self._entity_keys(view, inputs)
            try:
                results = self.store.online_read(self.config, view.table, keys, list(view.features))
            except Exception as exc:
                if not _warming:
                    raise
                log.warning(
                    "warmup: the online store of feature view '%s' could not be read (%s: %s); "
                    "the lookup is warmed with the missing-entity defaults instead",
                    view.table.name,
                    type(exc).__name__,
                    str(exc)[:200],
                )
                results = [(None, None)] * rows
            values = {n: np.full(rows, self.defaults.get(n, 0.0)) for n in view.features}
            for i, (_, row) in enumerate(results):
                if row is None:
                    found[i] = False
                    continue
                for name, proto in row.items():
                    kind = proto.WhichOneof("val")
                    if kind is not None and name in values:
                        values[name][i] = getattr(proto, kind)
            if not found.all() and self.plan["missing"]["policy"] == "reject" and not _warming:
                missing = [
                    ", ".join(f"{k}={np.asarray(inputs[k]).reshape(-1)[i]}" for k in view.join_keys)
                    for i in np.flatnonzero(~found)
                ]
                raise MissingEntityError(
                    f"entity {'; '.join(missing[:5])} is not in the online store "
                    f"(feature view '{view.table.name}')"
                )
            stored.update(values)
        return stored, found

    def __call__(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        stored, found = self.read(inputs)
        request = {n: inputs[n] for n in self.plan["request_data"] if n in inputs}
        request.update({k: inputs[k] for k in self.plan["entity_keys"]})
        if self.transform is not None:
            out = dict(self.transform(stored, request))
        else:
            out = {n: stored[n].reshape(-1, 1) for n in self.plan["outputs"]}
        flag = self.plan["missing"].get("flag")
        if flag and self.plan["missing"]["policy"] == "defaults":
            out[flag] = found.reshape(-1, 1)
        return out
