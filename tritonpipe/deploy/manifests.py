"""Deployable files generated from a pipeline spec and a replica count: a Docker Compose stack
(NGC Triton with the native runtime behind HAProxy, Prometheus, Grafana with the dashboard,
Redis) and Kubernetes manifests (Deployment, Service, HorizontalPodAutoscaler on queue time)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tritonpipe.deploy.balancer import Backend, BalancerOptions, render_config
from tritonpipe.deploy.monitoring import (
    DATASOURCE_UID,
    Thresholds,
    alert_rules,
    dashboard_json,
    dump_yaml,
    scrape_config,
)
from tritonpipe.deploy.replicas import METRICS_ARGS
from tritonpipe.errors import SpecError
from tritonpipe.server.options import RESTRICTED, TOKEN_HEADER

TOKEN_ENV = "TRITONPIPE_TOKEN"
QUEUE_METRIC = "triton_queue_us_per_request"  # served to the HPA by prometheus-adapter
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What the manifests are generated from: the spec's models and the capacity plan."""

    name: str
    models: tuple[str, ...]
    replicas: int = 2
    max_replicas: int | None = None
    gpus_per_replica: int = 1
    image: str | None = None
    slo_ms: float = 100.0
    queue_target_us: int = 2000

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise SpecError(
                f"name {self.name!r}: Kubernetes needs lowercase letters, digits and '-' (--name)"
            )
        if self.replicas < 1 or self.gpus_per_replica < 0:
            raise SpecError("replicas must be 1 or more and GPUs per replica 0 or more")

    @property
    def app_image(self) -> str:
        return self.image or f"tritonpipe-{self.name}:latest"


def plan_from_spec(spec_path: Path, **options: Any) -> Plan:
    """Models in load order (ensembles last) from a pipeline spec."""
    from tritonpipe.ensembles.plan import served_models
    from tritonpipe.ensembles.spec import load_spec

    models = tuple(served_models(load_spec(spec_path)))
    name = options.pop("name", None) or spec_path.resolve().parent.name.lower().replace("_", "-")
    return Plan(name=name, models=tuple(models), **options)


def triton_args(plan: Plan, token: str = f"$({TOKEN_ENV})") -> list[str]:
    """tritonserver's arguments in a container; ``token`` is how the platform spells the env."""
    rule = f"{','.join((*RESTRICTED, 'inference'))}:{TOKEN_HEADER}={token}"
    return [
        "tritonserver",
        "--model-repository=/models",
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in plan.models],
        *METRICS_ARGS,
        f"--http-restricted-api={rule}",
        f"--grpc-restricted-protocol={rule}",
    ]


# -- Docker Compose --------------------------------------------------------------------------
def compose(plan: Plan) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for i in range(plan.replicas):
        gpu = {
            "driver": "nvidia",
            "device_ids": [
                str(i * plan.gpus_per_replica + g) for g in range(plan.gpus_per_replica)
            ],
            "capabilities": ["gpu"],
        }
        services[f"triton-{i}"] = {
            "image": plan.app_image,
            "build": {"context": "..", "dockerfile": "docker/Dockerfile"},
            "command": triton_args(plan, token=f"${{{TOKEN_ENV}:?set {TOKEN_ENV}}}"),
            "shm_size": "1g",
            "restart": "unless-stopped",
            "deploy": {"resources": {"reservations": {"devices": [gpu]}}}
            if plan.gpus_per_replica
            else {},
            "healthcheck": {
                "test": ["CMD", "curl", "-fsS", "http://localhost:8000/v2/health/ready"],
                "interval": "5s",
                "retries": 3,
            },
        }
    services["balancer"] = {
        "image": "haproxy:2.6",
        "ports": ["8000:8000", "8001:8001", "8404:8404"],
        "volumes": ["./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"],
        "environment": {TOKEN_ENV: f"${{{TOKEN_ENV}:?set {TOKEN_ENV}}}"},
        "depends_on": [f"triton-{i}" for i in range(plan.replicas)],
        "restart": "unless-stopped",
    }
    services["prometheus"] = {
        "image": "prom/prometheus:v2.53.0",
        "ports": ["9090:9090"],
        "volumes": ["./prometheus:/etc/prometheus:ro"],
        "command": ["--config.file=/etc/prometheus/prometheus.yml"],
    }
    services["grafana"] = {
        "image": "grafana/grafana:11.1.0",
        "ports": ["3000:3000"],
        "volumes": [
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
        ],
        "depends_on": ["prometheus"],
    }
    services["redis"] = {
        "image": "redis:7",
        "ports": ["6379:6379"],
        "command": ["redis-server", "--appendonly", "yes"],
        "volumes": ["redis-data:/data"],
    }
    return {"name": f"tritonpipe-{plan.name}", "services": services, "volumes": {"redis-data": {}}}


def compose_haproxy(plan: Plan) -> str:
    options = BalancerOptions(
        backends=tuple(
            Backend(name=f"triton-{i}", host=f"triton-{i}", http_port=8000, grpc_port=8001)
            for i in range(plan.replicas)
        ),
        host="0.0.0.0",
        http_port=8000,
        grpc_port=8001,
        metrics_port=8404,
        token_env=TOKEN_ENV,
        dns="127.0.0.11:53",
    )
    return render_config(options, Path("/tmp/haproxy.sock"), None)


def grafana_provisioning() -> dict[str, str]:
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "uid": DATASOURCE_UID, "type": "prometheus",
             "access": "proxy", "url": "http://prometheus:9090", "isDefault": True}
        ],
    }  # fmt: skip
    dashboards = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "tritonpipe",
                "type": "file",
                "options": {"path": "/var/lib/grafana/dashboards"},
            }
        ],
    }
    return {
        "grafana/provisioning/datasources/prometheus.yml": dump_yaml(datasource),
        "grafana/provisioning/dashboards/tritonpipe.yml": dump_yaml(dashboards),
        "grafana/dashboards/tritonpipe.json": dashboard_json(),
    }


HEADER = "# Generated by `tritonpipe deploy manifests` from {spec}; edit the spec, not this file.\n"


def render(plan: Plan, spec: str, thresholds: Thresholds | None = None) -> dict[str, str]:
    """Every generated file, by path relative to the output folder."""
    from tritonpipe.deploy.kubernetes import manifests

    header = HEADER.format(spec=spec)
    thresholds = thresholds or Thresholds(slo_ms=plan.slo_ms)
    prometheus = scrape_config(
        [f"triton-{i}:8002" for i in range(plan.replicas)], ["balancer:8404"], rules="alerts.yml"
    )
    files = {
        "compose.yaml": header + dump_yaml(compose(plan)),
        "haproxy/haproxy.cfg": compose_haproxy(plan),
        "prometheus/prometheus.yml": header + dump_yaml(prometheus),
        "prometheus/alerts.yml": header + dump_yaml(alert_rules(thresholds)),
        "kubernetes/tritonpipe.yaml": header
        + yaml.safe_dump_all(manifests(plan), sort_keys=False, width=1000),
        **grafana_provisioning(),
    }
    return files


def write(files: dict[str, str], out: Path) -> list[Path]:
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
