"""Prometheus scrape config, alert rules and a Grafana dashboard over Triton's metrics, HAProxy's
and tritonpipe's own. Every query is written once here; the dashboard, the rules and the test
that runs each query against a real Prometheus all read the same table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

DATASOURCE_UID = "tritonpipe-prometheus"
# Metrics other parts of tritonpipe expose; until they land, their queries only have to parse.
PENDING = {
    "predlog": "prediction-log sink counters (tritonpipe_predlog_*) are not on this branch yet",
    "gpu": "GPU metrics (nv_gpu_*) exist only on a GPU node",
    "kafka": "per-partition lag (tritonpipe_stream_partition_lag_records) comes from Kafka workers",
    "monitor": "drift and quality gauges (tritonpipe_monitor_*) come from `monitor serve`",
}


def per_request(metric: str, window: str = "1m", by: str = "model") -> str:
    """Average of a cumulative-microseconds counter per successful request, in milliseconds."""
    return (
        f"sum by ({by}) (rate({metric}[{window}])) / "
        f"clamp_min(sum by ({by}) (rate(nv_inference_request_success[{window}])), 1e-9) / 1000"
    )


@dataclass(frozen=True, kw_only=True)
class Query:
    title: str
    expr: str
    unit: str = "short"
    pending: str | None = None  # a key of PENDING: the metric does not exist here yet


STEP_MS = (
    "sum by (model, step) (rate(tritonpipe_step_duration_us_total[1m])) / "
    "clamp_min(sum by (model, step) (rate(tritonpipe_step_requests_total[1m])), 1e-9) / 1000"
)

PANELS = (
    Query(
        title="Requests per second",
        expr="sum by (model) (rate(nv_inference_request_success[1m]))",
        unit="reqps",
    ),
    Query(
        title="Failed requests per second",
        expr="sum by (model) (rate(nv_inference_request_failure[1m]))",
        unit="reqps",
    ),
    Query(
        title="p99 latency (ms)",
        expr='max by (model) (nv_inference_request_summary_us{quantile="0.99"}) / 1000',
        unit="ms",
    ),
    Query(
        title="p50 latency (ms)",
        expr='max by (model) (nv_inference_request_summary_us{quantile="0.5"}) / 1000',
        unit="ms",
    ),
    Query(
        title="Queue time per request (ms)",
        expr=per_request("nv_inference_queue_duration_us"),
        unit="ms",
    ),
    Query(
        title="Compute (infer) time per request (ms)",
        expr=per_request("nv_inference_compute_infer_duration_us"),
        unit="ms",
    ),
    Query(
        title="Request time per request (ms)",
        expr=per_request("nv_inference_request_duration_us"),
        unit="ms",
    ),
    Query(
        title="Batch size (inferences per execution)",
        expr=(
            "sum by (model) (rate(nv_inference_count[1m])) / "
            "clamp_min(sum by (model) (rate(nv_inference_exec_count[1m])), 1e-9)"
        ),
    ),
    Query(title="Pending requests", expr="sum by (model) (nv_inference_pending_request_count)"),
    Query(title="Replicas up (scraped)", expr='sum(up{job="triton"})'),
    Query(
        title="Replicas in the balancer's rotation",
        expr='sum by (proxy) (haproxy_server_status{state="UP"})',
    ),
    Query(
        title="CPU utilisation", expr="avg by (instance) (nv_cpu_utilization)", unit="percentunit"
    ),
    Query(
        title="GPU utilisation",
        expr="avg by (instance, gpu_uuid) (nv_gpu_utilization)",
        unit="percentunit",
        pending="gpu",
    ),
    Query(
        title="GPU memory used",
        expr="sum by (instance, gpu_uuid) (nv_gpu_memory_used_bytes)",
        unit="bytes",
        pending="gpu",
    ),
    Query(title="Per-step time in fused models (ms)", expr=STEP_MS, unit="ms"),
    Query(
        title="Per-step requests per second",
        expr="sum by (model, step) (rate(tritonpipe_step_requests_total[1m]))",
        unit="reqps",
    ),
    Query(
        title="Prediction-log records per second",
        expr="sum by (sink) (rate(tritonpipe_predlog_records_total[1m]))",
        pending="predlog",
    ),
    Query(
        title="Prediction-log sink errors per second",
        expr="sum by (sink) (rate(tritonpipe_predlog_errors_total[1m]))",
        pending="predlog",
    ),
    # Exported by each `tritonpipe stream run --metrics-port` worker (tritonpipe/stream/metrics.py).
    Query(
        title="Stream lag (records)",
        expr="max by (stream) (tritonpipe_stream_lag_records)",
    ),
    Query(
        title="Stream lag per partition (Kafka, records)",
        expr="max by (stream, partition) (tritonpipe_stream_partition_lag_records)",
        pending="kafka",
    ),
    Query(
        title="Stream events per second, by outcome",
        expr="sum by (stream, outcome) (rate(tritonpipe_stream_events_total[1m]))",
        unit="ops",
    ),
    Query(
        title="Stream end-to-end p99 (ms)",
        expr=(
            "histogram_quantile(0.99, sum by (stream, le) "
            "(rate(tritonpipe_stream_e2e_seconds_bucket[1m]))) * 1000"
        ),
        unit="ms",
    ),
    Query(
        title="Feature drift: PSI of the latest window",
        expr="max by (model, version, feature) (tritonpipe_monitor_psi)",
        pending="monitor",
    ),
    Query(
        title="Feature drift: windows in a row (the drift alert's count)",
        expr="max by (model, version, feature) (tritonpipe_monitor_drift_windows)",
        pending="monitor",
    ),
    Query(
        title="Drifting columns",
        expr="sum by (model, version) (tritonpipe_monitor_drift)",
        pending="monitor",
    ),
    Query(
        title="Live quality (labelled windows)",
        expr="max by (model, version, metric) (tritonpipe_monitor_quality)",
        unit="percentunit",
        pending="monitor",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Alert:
    """Fires when ``query`` ``condition`` holds for ``for_``; ``query`` alone must return data."""

    name: str
    query: str
    condition: str  # e.g. "> {slo_ms}": formatted with the thresholds
    for_: str
    severity: str
    summary: str
    pending: str | None = None


# Per partition where the bus has partitions (Kafka: one slow partition is enough to page),
# the whole stream's lag elsewhere (Redis, NATS).
STREAM_LAG = (
    "max by (stream, partition) (tritonpipe_stream_partition_lag_records) or "
    "(max by (stream) (tritonpipe_stream_lag_records) unless on (stream) "
    "max by (stream) (tritonpipe_stream_partition_lag_records))"
)

QUEUE_5M = per_request("nv_inference_queue_duration_us", "5m")
QUEUE_1H = per_request("nv_inference_queue_duration_us", "1h")

ALERTS = (
    Alert(
        name="TritonP99AboveSLO",
        query='max by (model) (nv_inference_request_summary_us{quantile="0.99"}) / 1000',
        condition="> {slo_ms}",
        for_="5m",
        severity="page",
        summary=(
            'p99 latency of {{ $labels.model }} is {{ $value | printf "%.1f" }} ms, '
            "above the {slo_ms} ms SLO"
        ),
    ),
    Alert(
        name="TritonQueueTimeRising",
        query=QUEUE_5M,
        condition="> 2 * ({queue_1h}) and ({queue_5m}) > {queue_ms}",
        for_="10m",
        severity="warn",
        summary=(
            "queue time of {{ $labels.model }} doubled against its last hour: "
            "add replicas or instances"
        ),
    ),
    Alert(
        name="TritonRequestFailures",
        query=(
            "sum by (model) (rate(nv_inference_request_failure[5m])) / clamp_min(sum by (model) "
            "(rate(nv_inference_request_success[5m])) + sum by (model) "
            "(rate(nv_inference_request_failure[5m])), 1e-9)"
        ),
        condition="> {failure_ratio}",
        for_="5m",
        severity="page",
        summary="{{ $labels.model }} fails {{ $value | humanizePercentage }} of its requests",
    ),
    Alert(
        name="TritonReplicaDown",
        query='up{job="triton"}',
        condition="== 0",
        for_="1m",
        severity="page",
        summary="replica {{ $labels.instance }} does not answer metrics scrapes",
    ),
    Alert(
        name="BalancerReplicaOutOfRotation",
        query='haproxy_server_status{state="UP"}',
        condition="== 0",
        for_="2m",
        severity="warn",
        summary="HAProxy keeps {{ $labels.server }} out of {{ $labels.proxy }} (failing readiness)",
    ),
    Alert(
        name="PredictionLogSinkErrors",
        query="sum by (sink) (rate(tritonpipe_predlog_errors_total[5m]))",
        condition="> 0",
        for_="5m",
        severity="warn",
        summary="prediction-log sink {{ $labels.sink }} is failing to write records",
        pending="predlog",
    ),
    Alert(
        name="StreamLagHigh",
        query=STREAM_LAG,
        condition="> {stream_lag}",
        for_="10m",
        severity="warn",
        summary=(
            "stream {{ $labels.stream }}{{ if $labels.partition }} partition "
            "{{ $labels.partition }}{{ end }} is {{ $value }} records behind"
        ),
    ),
    Alert(
        name="ModelFeatureDrift",
        # A window drifts when PSI is above its threshold and the two-sample test agrees;
        # `monitor serve` counts the windows in a row that did, so this fires once drift has
        # held for N windows (one odd window does not page), then for ``for:`` more.
        query="max by (model, version, feature) (tritonpipe_monitor_drift_windows)",
        condition=">= {drift_windows}",
        for_="5m",
        severity="warn",
        summary=(
            "{{ $labels.feature }} of {{ $labels.model }} v{{ $labels.version }} drifted "
            "from its training reference for {{ $value }} windows in a row"
        ),
        pending="monitor",
    ),
    Alert(
        name="ModelQualityBelowFloor",
        query='min by (model, version) (tritonpipe_monitor_quality{metric="roc_auc"})',
        condition="< {auc_floor}",
        for_="1h",
        severity="page",
        summary=(
            "ROC AUC of {{ $labels.model }} v{{ $labels.version }} on labelled traffic is "
            "{{ $value }}"
        ),
        pending="monitor",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """``slo_ms`` is the p99 target of the capacity plan."""

    slo_ms: float = 100.0
    queue_ms: float = 5.0
    failure_ratio: float = 0.01
    stream_lag: int = 10000
    auc_floor: float = 0.7  # live ROC AUC from late labels (`monitor serve --labels`)
    drift_windows: int = 3  # monitor windows in a row a feature must drift before it alerts
    for_: str | None = None  # overrides every alert's hold time (tests use 0s)


def alert_expr(alert: Alert, thresholds: Thresholds) -> str:
    condition = alert.condition.format(
        slo_ms=thresholds.slo_ms,
        queue_ms=thresholds.queue_ms,
        failure_ratio=thresholds.failure_ratio,
        stream_lag=thresholds.stream_lag,
        auc_floor=thresholds.auc_floor,
        drift_windows=thresholds.drift_windows,
        queue_1h=QUEUE_1H,
        queue_5m=QUEUE_5M,
    )
    return f"({alert.query}) {condition}"


def alert_rules(thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """A Prometheus rules file (``rule_files:``)."""
    rules = [
        {
            "alert": a.name,
            "expr": alert_expr(a, thresholds),
            "for": thresholds.for_ or a.for_,
            "labels": {"severity": a.severity},
            "annotations": {"summary": a.summary.replace("{slo_ms}", f"{thresholds.slo_ms:g}")},
        }
        for a in ALERTS
    ]
    return {"groups": [{"name": "tritonpipe", "rules": rules}]}


def scrape_config(
    triton: Sequence[str],
    balancers: Sequence[str] = (),
    *,
    stream_workers: Sequence[str] = (),
    monitors: Sequence[str] = (),
    rules: str = "alerts.yml",
    interval: str = "15s",
    evaluation: str | None = None,
) -> dict[str, Any]:
    """prometheus.yml scraping Triton's metrics ports (host:port), HAProxy's exporter and the
    stream workers' ``--metrics-port`` and ``tritonpipe monitor serve``'s ``--port``."""
    jobs = [{"job_name": "triton", "static_configs": [{"targets": list(triton)}]}]
    if balancers:
        jobs.append({"job_name": "balancer", "static_configs": [{"targets": list(balancers)}]})
    if stream_workers:
        jobs.append({"job_name": "stream", "static_configs": [{"targets": list(stream_workers)}]})
    if monitors:
        jobs.append({"job_name": "monitor", "static_configs": [{"targets": list(monitors)}]})
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": evaluation or interval},
        "rule_files": [rules],
        "scrape_configs": jobs,
    }


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=1000)


def dashboard(title: str = "tritonpipe: Triton inference") -> dict[str, Any]:
    """Grafana dashboard JSON: one time-series panel per query, two per row."""
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    panels = []
    for i, query in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": query.title,
                "description": PENDING[query.pending] if query.pending else "",
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": query.unit}, "overrides": []},
                "options": {
                    "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"}
                },
                "targets": [
                    {
                        "refId": "A",
                        "datasource": datasource,
                        "expr": query.expr,
                        "legendFormat": "__auto",
                    }
                ],
            }
        )
    return {
        "uid": "tritonpipe-triton",
        "title": title,
        "tags": ["tritonpipe", "triton"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"
