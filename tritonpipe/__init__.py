"""tritonpipe: from a trained PyTorch model to a measured inference pipeline on Triton."""

from tritonpipe.errors import (
    ClientError,
    DeployError,
    ExportError,
    InputError,
    InvalidArgument,
    ModelNotFound,
    ParityError,
    PerfError,
    PipelineError,
    PipelineInputError,
    RepositoryError,
    RequestTimeout,
    ServerError,
    SpecError,
    TritonPipeError,
    Unauthorized,
    Unavailable,
)
from tritonpipe.tensors import TensorSpec

__version__ = "0.1.0"

__all__ = [
    "ClientError",
    "DeployError",
    "ExportError",
    "InputError",
    "InvalidArgument",
    "ModelNotFound",
    "ParityError",
    "PerfError",
    "PipelineError",
    "PipelineInputError",
    "RepositoryError",
    "RequestTimeout",
    "ServerError",
    "SpecError",
    "TensorSpec",
    "TritonPipeError",
    "Unauthorized",
    "Unavailable",
    "__version__",
]
