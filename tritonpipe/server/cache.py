"""Which models of a repository ask for Triton's response cache, and the flag that starts it."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

CACHE_FLAG = "--cache-config"
DEFAULT_CACHE_BYTES = 64 << 20


def cached_models(repository: Path) -> list[str]:
    """Model folders whose config.pbtxt enables ``response_cache`` (unreadable configs are left
    to tritonserver, which names them in its own error)."""
    names = []
    for config in sorted(repository.glob("*/config.pbtxt")):
        try:
            parsed = text_format.Parse(config.read_text(), pb.ModelConfig())
        except (OSError, text_format.ParseError):
            continue
        if parsed.response_cache.enable:
            names.append(config.parent.name)
    return names


def cache_arguments(repository: Path, size_bytes: int, extra: tuple[str, ...]) -> list[str]:
    """``--cache-config=local,size=N`` when a model wants the cache and ``extra`` does not
    configure one already; Triton ignores a model's response_cache without it."""
    if any(a.startswith(CACHE_FLAG) for a in extra) or not cached_models(repository):
        return []
    return [f"{CACHE_FLAG}=local,size={size_bytes}"]
