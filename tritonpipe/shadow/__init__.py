"""Shadow scoring: a challenger version scores sampled requests on the champion's inputs (the
same feature vector, one lookup), off the answer's path; its outputs go to the prediction log
tagged with its version, never into an answer. Configured by ``shadow:`` on a scoring model."""

from tritonpipe.shadow.build import SHADOW_FILE, ShadowSource, place_shadows, resolve_shadows

__all__ = ["SHADOW_FILE", "ShadowSource", "place_shadows", "resolve_shadows"]
