"""Compare two model versions over their prediction logs: decision agreement and score deltas
on the same requests (shadow pairs), latency and quality per version, a report with plots."""

from tritonpipe.compare.logs import Comparison, VersionStats, compare_logs
from tritonpipe.compare.quality import bootstrap_ci, read_labels
from tritonpipe.compare.report import write_report

__all__ = [
    "Comparison",
    "VersionStats",
    "bootstrap_ci",
    "compare_logs",
    "read_labels",
    "write_report",
]
