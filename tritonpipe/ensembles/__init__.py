"""Pre/post-processing stages as Python-backend models, chained with scoring models."""

from tritonpipe.ensembles.builder import build_repository
from tritonpipe.ensembles.spec import PipelineSpec, load_spec

__all__ = ["PipelineSpec", "build_repository", "load_spec"]
