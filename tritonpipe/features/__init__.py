"""Feature-store lookups as pipeline steps (Feast): spec desugaring at build, runtime in Triton.

Feast is imported only where a lookup is built or run."""

from tritonpipe.features.runtime import MissingEntityError, OnlineLookup
from tritonpipe.features.transform import desugar_lookup, place

__all__ = ["MissingEntityError", "OnlineLookup", "desugar_lookup", "place"]
