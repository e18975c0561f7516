"""Model registry (MLflow): register export folders as versions; resolve ``registry:`` in specs."""

from tritonpipe.registry.mlflow_registry import RegistryVersion, parse_uri, register, resolve

__all__ = ["RegistryVersion", "parse_uri", "register", "resolve"]
