"""Run a pipeline in the caller's process: the plan and runtime Triton runs, without a server.

``Pipeline.load("examples/digits/pipeline.yaml", "digits")`` or
``Pipeline.load("model_repository", "digits")``, then ``pipe({"image": pngs})``. Batch and stream
jobs use it as their embedded default; because it runs the same stage code and runtimes as the
served model, training, batch and online paths compute features the same way.

Every failure is a :class:`PipelineError` (``invalid`` when the input was at fault); inputs that
fail the pipeline's signature raise its subclass :class:`PipelineInputError`, which is also the
:class:`~tritonpipe.errors.InputError` a client raises for them.
"""

from tritonpipe.errors import PipelineError, PipelineInputError
from tritonpipe.pipeline.runner import Pipeline, StepTime

__all__ = ["Pipeline", "PipelineError", "PipelineInputError", "StepTime"]
