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
├── RecordError            records do not fit the pipeline's inputs (``refusals``: one per record)
├── PipelineError          a pipeline failed while running in-process (``invalid``: bad input)
│   └── PipelineInputError inputs fail the pipeline's signature (also an InputError)
├── BatchError             a batch job failed: a bad row (file, row, column), a source, a store
├── PerfError              a profile or load test could not be run or read
└── DeployError            a model update was refused and rolled back (the old build serves)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest candidate, or "" when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


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


class RecordError(TritonPipeError):
    """Records (or columns, or arrays) do not fit the pipeline's inputs.

    ``refusals`` holds one :class:`tritonpipe.records.Refusal` per refused record (row, input,
    reason); it is empty when the whole batch is wrong (a missing column or input)."""

    def __init__(
        self, refusals: Sequence[Any], *, what: str = "record", message: str | None = None
    ) -> None:
        self.refusals = list(refusals)
        if message is None:
            shown = [f"{what} {r.row}: {r.reason}" for r in self.refusals[:5]]
            more = len(self.refusals) - len(shown)
            message = "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
        super().__init__(message)


class PipelineError(TritonPipeError):
    """A pipeline run in-process failed; ``invalid`` when the input was at fault, and
    ``refusals`` (one ``tritonpipe.records.Refusal`` per bad row) when records were refused."""

    def __init__(self, message: str, *, invalid: bool, refusals: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.invalid = invalid
        self.refusals = list(refusals)  # records.Refusal per refused row, when inputs were


class PipelineInputError(PipelineError, InputError):
    """In-process inputs that fail the pipeline's signature, found before any step runs.

    Both a :class:`PipelineError` (``invalid`` is True), so ``except PipelineError`` catches
    every in-process failure, and an :class:`InputError`, as the clients raise for the same
    inputs."""

    def __init__(self, message: str, *, refusals: Sequence[Any] = ()) -> None:
        super().__init__(message, invalid=True, refusals=refusals)


class PerfError(TritonPipeError):
    """A profile, load test or report could not be run or read."""


class DeployError(TritonPipeError):
    """A model update failed its load, readiness or smoke check; the old build still serves."""


class BatchError(TritonPipeError):
    """A batch-inference job failed: a bad row (file, row, column), a source or an output store."""
