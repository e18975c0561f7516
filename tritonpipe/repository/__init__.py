"""Triton model repositories: config.pbtxt generation and validation."""

from tritonpipe.repository.config import (
    Batching,
    Instances,
    Serving,
    Step,
    ensemble_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
)
from tritonpipe.repository.validate import LoadedModel, validate_repository

__all__ = [
    "Batching",
    "Instances",
    "LoadedModel",
    "Serving",
    "Step",
    "ensemble_config",
    "model_config",
    "parse_pbtxt",
    "to_pbtxt",
    "validate_repository",
]
