"""Model monitoring from the prediction logs: feature and prediction drift against a reference
profile stored with the registry version, and live quality once labels arrive."""

from tritonpipe.monitor.drift import Thresholds, column_drift, psi
from tritonpipe.monitor.labels import join_labels, read_labels
from tritonpipe.monitor.profile import FeatureProfile, Profile, build_profile
from tritonpipe.monitor.quality import Quality, quality, roc_auc
from tritonpipe.monitor.run import Result, WindowResult, monitor

__all__ = [
    "FeatureProfile",
    "Profile",
    "Quality",
    "Result",
    "Thresholds",
    "WindowResult",
    "build_profile",
    "column_drift",
    "join_labels",
    "monitor",
    "psi",
    "quality",
    "read_labels",
    "roc_auc",
]
