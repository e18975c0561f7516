"""Opening a Feast repository, in one place: the ``FeatureStore`` of a repository folder and the
feature view or service named in it, each failure raised as the caller's error (``fail``), naming
the repository and listing what is there. Feast is imported only when a store is opened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonpipe.errors import TritonPipeError

Fail = Callable[[str], TritonPipeError]  # the caller's error for a message


def open_store(repo: str | Path, fail: Fail) -> Any:
    """The ``FeatureStore`` of the Feast repository folder ``repo``."""
    from feast import FeatureStore

    if not (Path(repo) / "feature_store.yaml").is_file():
        raise fail(f"{repo} is not a Feast repository (no feature_store.yaml)")
    try:
        return FeatureStore(repo_path=str(repo))
    except Exception as exc:  # Feast raises its own tree: name the repository
        raise fail(f"cannot open Feast repository {repo}: {exc}") from None


def feature_view(store: Any, repo: str | Path, name: str, fail: Fail) -> Any:
    """The feature view ``name`` of ``store`` (opened from ``repo``); a missing one lists the
    views there are."""
    return _named(
        store.get_feature_view, store.list_feature_views, "feature view", name, f"{repo}", fail
    )


def feature_service(store: Any, repo: str | Path, name: str, fail: Fail) -> Any:
    """The feature service ``name`` of ``store`` (opened from ``repo``); a missing one lists the
    services there are."""
    return _named(
        store.get_feature_service,
        store.list_feature_services,
        "feature service",
        name,
        f"{repo}",
        fail,
    )


def _named(
    get: Callable[[str], Any], known: Callable[[], Any], kind: str, name: str, repo: str, fail: Fail
) -> Any:
    try:
        return get(name)
    except Exception:  # Feast raises its own tree for an unknown name
        names = ", ".join(item.name for item in known()) or "none"
        raise fail(f"no {kind} {name!r} in {repo} ({kind}s: {names})") from None
