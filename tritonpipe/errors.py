"""Every error tritonpipe raises on purpose derives from :class:`TritonPipeError`.

TritonPipeError
├── SpecError              a pipeline spec, input spec or other user file is wrong
├── ExportError            a model could not be exported
│   └── ParityError        an exported artifact disagrees with eager PyTorch
├── RepositoryError        a model repository (or config.pbtxt) is invalid
├── RegistryError          a model-registry version could not be found, fetched or trusted
├── FeatureStoreError      a feature-store lookup could not be set up or answered
├── PredictionLogError     prediction logs could not be written or read
├── MonitorError           a reference profile, logs window or labels source is unusable
├── ServerError            tritonserver could not be found, started or kept running
├── ClientError            a request could not be made or was refused
│   ├── InputError         inputs fail the model's metadata (caught before sending)
│   ├── InvalidArgument    the server rejected the request (HTTP 400 / INVALID_ARGUMENT)
│   ├── ModelNotFound      the server does not serve that model (HTTP 404 / NOT_FOUND)
│   ├── Unauthorized       a restricted endpoint was called without its token
│   ├── Unavailable        the server is down, not ready or overloaded (retried)
│   └── RequestTimeout     no answer within the client's timeout
├── PipelineError          a pipeline step failed while running in-process (``invalid``: bad input)
├── BatchError             a batch job failed: a bad row (file, row, column), a source, a store
├── PerfError              a profile or load test could not be run or read
└── DeployError            a model update was refused and rolled back (the old build serves)
"""

from __future__ import annotations

from collections.abc import Sequence


class TritonPipeError(Exception):
    """Root of every error tritonpipe raises on purpose."""


class SpecError(TritonPipeError):
    """A user-written file or argument is wrong; the message names the file and field."""


class ExportError(TritonPipeError):
    """A PyTorch model could not be exported."""


class ParityError(ExportError):
    """An exported artifact's outputs differ from eager PyTorch beyond tolerance."""


class RepositoryError(TritonPipeError):
    """A model repository is invalid. ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RegistryError(TritonPipeError):
    """A model-registry version could not be found, downloaded or matched its manifest."""


class FeatureStoreError(TritonPipeError):
    """A feature-store lookup could not be set up (bad repository, service) or answered."""


class PredictionLogError(TritonPipeError):
    """Prediction logs could not be configured, written or read."""


class MonitorError(TritonPipeError):
    """A reference profile, a window of prediction logs or a labels source is unusable."""


class ServerError(TritonPipeError):
    """tritonserver could not be found, started or kept running."""


class ClientError(TritonPipeError):
    """A request could not be made or was refused by the server."""


class InputError(ClientError):
    """Inputs do not match the model's metadata; found before anything was sent."""


class InvalidArgument(ClientError):
    """The server rejected the request as invalid (HTTP 400, gRPC INVALID_ARGUMENT)."""


class ModelNotFound(ClientError):
    """The server does not serve the requested model (HTTP 404, gRPC NOT_FOUND)."""


class Unauthorized(ClientError):
    """A restricted endpoint was called without the right token."""


class Unavailable(ClientError):
    """The server is unreachable, not ready or overloaded; worth retrying."""


class RequestTimeout(ClientError):
    """No answer arrived within the client's timeout."""


class PipelineError(TritonPipeError):
    """A pipeline run in-process failed; ``invalid`` when the input was at fault."""

    def __init__(self, message: str, *, invalid: bool) -> None:
        super().__init__(message)
        self.invalid = invalid


class PerfError(TritonPipeError):
    """A profile, load test or report could not be run or read."""


class DeployError(TritonPipeError):
    """A model update failed its load, readiness or smoke check; the old build still serves."""


class BatchError(TritonPipeError):
    """A batch-inference job failed: a bad row (file, row, column), a source or an output store."""
