"""`monitor serve`: a Prometheus endpoint whose gauges are the latest window's drift per model,
version and feature (and for how many windows in a row it has drifted), recomputed from the logs
every ``interval_s``."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from tritonpipe.monitor.run import Result

log = logging.getLogger("tritonpipe.monitor")


class Exporter:
    def __init__(self, compute: Callable[[], Result], registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.compute = compute
        self.registry = registry or CollectorRegistry()
        by_feature = ["model", "version", "feature"]
        by_model = ["model", "version"]

        def gauge(name: str, text: str, labels: list[str]) -> Any:
            return Gauge(name, text, labels, registry=self.registry)

        self.psi = gauge("tritonpipe_monitor_psi", "PSI of the latest window", by_feature)
        self.p_value = gauge("tritonpipe_monitor_p_value", "KS/chi-square p-value", by_feature)
        self.drift = gauge("tritonpipe_monitor_drift", "1 when the column drifts", by_feature)
        self.streak = gauge(
            "tritonpipe_monitor_drift_windows",
            "Windows in a row, up to the latest, in which the column drifted", by_feature,
        )  # fmt: skip
        self.nulls = gauge("tritonpipe_monitor_null_rate", "Null rate", by_feature)
        self.outside = gauge("tritonpipe_monitor_out_of_range", "Out-of-range rate", by_feature)
        self.rows = gauge("tritonpipe_monitor_window_rows", "Rows in the latest window", by_model)
        self.quality = gauge(
            "tritonpipe_monitor_quality", "Quality of the latest labelled window",
            [*by_model, "metric"],
        )  # fmt: skip
        self.errors = gauge("tritonpipe_monitor_errors", "Failed refreshes", [])

    def refresh(self) -> None:
        try:
            result = self.compute()
        except Exception as exc:  # noqa: BLE001 - keep serving the last values, count the failure
            self.errors.inc()
            log.warning("monitor refresh failed: %s", exc)
            return
        if not result.windows:
            return
        last = result.windows[-1]
        model = {"model": result.model, "version": result.version}
        self.rows.labels(**model).set(last.rows)
        streaks = result.streaks()
        for c in last.columns:
            labels = {**model, "feature": c.feature}
            self.psi.labels(**labels).set(c.psi)
            self.p_value.labels(**labels).set(c.p_value)
            self.drift.labels(**labels).set(1.0 if c.drift else 0.0)
            self.streak.labels(**labels).set(streaks[c.feature])
            self.nulls.labels(**labels).set(c.null_rate)
            self.outside.labels(**labels).set(c.out_of_range)
        labelled = [w for w in result.windows if w.quality]
        if labelled:
            q = labelled[-1].quality
            for metric in ("roc_auc", "precision", "recall", "calibration_error"):
                value = getattr(q, metric)
                if not math.isnan(value):
                    self.quality.labels(**model, metric=metric).set(value)

    def serve(self, port: int, host: str, interval_s: float, stop: threading.Event) -> None:
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=self.registry)
        try:
            while not stop.is_set():
                self.refresh()
                stop.wait(interval_s)
        finally:
            server.shutdown()
            thread.join(5)
