"""Kubernetes manifests for a pipeline: a Deployment of NGC Triton pods (GPU limits, readiness on
Triton's endpoint, the token from a Secret), a Service, and a HorizontalPodAutoscaler on queue
time per request, served to it by prometheus-adapter from Triton's own counters."""

from __future__ import annotations

from typing import Any

from tritonpipe.deploy.manifests import QUEUE_METRIC, TOKEN_ENV, Plan, triton_args

PORTS = (("http", 8000), ("grpc", 8001), ("metrics", 8002))


def _labels(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": plan.name, "app.kubernetes.io/part-of": "tritonpipe"}


def deployment(plan: Plan) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
    limits: dict[str, Any] = {"memory": "16Gi"}
    if plan.gpus_per_replica:
        limits["nvidia.com/gpu"] = plan.gpus_per_replica
    container = {
        "name": "triton",
        "image": plan.app_image,
        "args": triton_args(plan)[1:],
        "command": ["tritonserver"],
        "ports": [{"name": n, "containerPort": p} for n, p in PORTS],
        "env": [
            {
                "name": TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": f"{plan.name}-token", "key": "token"}},
            }
        ],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": "http"}},
        "startupProbe": {**probe, "failureThreshold": 60},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": limits},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": plan.name, "labels": _labels(plan)},
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": _labels(plan)},
            # One pod at a time, never below the planned count: a rollout drops no request.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": _labels(plan),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8002",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
                    ],
                },
            },
        },
    }


def service(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": plan.name, "labels": _labels(plan)},
        "spec": {
            "selector": _labels(plan),
            "ports": [
                {
                    "name": n,
                    "port": p,
                    "targetPort": n,
                    **({"appProtocol": "kubernetes.io/h2c"} if n == "grpc" else {}),
                }
                for n, p in PORTS
            ],
        },
    }


def autoscaler(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": plan.name, "labels": _labels(plan)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
            "minReplicas": plan.replicas,
            "maxReplicas": plan.max_replicas or 2 * plan.replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(plan.queue_target_us),
                        },
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def adapter_rules(plan: Plan) -> dict[str, Any]:
    """prometheus-adapter's rule turning Triton's counters into the HPA's per-pod metric."""
    query = (
        "sum(rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>) / "
        "clamp_min(sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])) "
        "by (<<.GroupBy>>), 1e-9)"
    )
    rules = {
        "rules": [
            {
                "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": "nv_inference_queue_duration_us", "as": QUEUE_METRIC},
                "metricsQuery": query,
            }
        ]
    }
    import yaml

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{plan.name}-adapter-rules", "labels": _labels(plan)},
        "data": {"config.yaml": yaml.safe_dump(rules, sort_keys=False)},
    }


def manifests(plan: Plan) -> list[dict[str, Any]]:
    return [deployment(plan), service(plan), autoscaler(plan), adapter_rules(plan)]
