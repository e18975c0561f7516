"""Model registry (MLflow): register export folders as versions; resolve ``registry:`` in specs."""

from tritonpipe.registry.mlflow_registry import (
    RegistryVersion,
    fetch_profile,
    parse_uri,
    register,
    resolve,
)

__all__ = ["RegistryVersion", "fetch_profile", "parse_uri", "register", "resolve"]
