"""Generated manifests validate against the Kubernetes, Compose and Grafana schemas offline,
follow the spec and the replica count, and the committed docker/ files are what is generated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ASSETS, DIGITS, ROOT
from tritonpipe.deploy import validate
from tritonpipe.deploy.kubernetes import manifests
from tritonpipe.deploy.manifests import plan_from_spec, render, write
from tritonpipe.deploy.monitoring import dashboard
from tritonpipe.errors import SpecError


def docs(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(files["kubernetes/tritonpipe.yaml"]) if d]


def test_committed_docker_files_are_what_the_generator_writes() -> None:
    plan = plan_from_spec(DIGITS / "pipeline.yaml", replicas=2)
    for relative, text in render(plan, "examples/digits/pipeline.yaml").items():
        committed = ROOT / "docker" / relative
        assert committed.read_text() == text, (
            f"docker/{relative} is stale: run `tritonpipe deploy manifests examples/digits/pipeline.yaml --out docker`"
        )


@pytest.mark.parametrize("replicas", [1, 3])
def test_generated_files_validate(replicas: int, tmp_path: Path) -> None:
    plan = plan_from_spec(
        ASSETS / "deploy_pipeline.yaml", name="affine", replicas=replicas, gpus_per_replica=2
    )
    files = render(plan, "deploy_pipeline.yaml")
    write(files, tmp_path)
    assert validate.generated(tmp_path) == []
    compose = yaml.safe_load(files["compose.yaml"])
    tritons = [s for s in compose["services"] if s.startswith("triton-")]
    assert len(tritons) == replicas
    last = compose["services"][tritons[-1]]
    assert last["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == [
        str(2 * replicas - 2),
        str(2 * replicas - 1),
    ]
    assert [a for a in last["command"] if a.startswith("--load-model")] == [
        "--load-model=scale",
        "--load-model=shift",
        "--load-model=affine",
    ]
    assert {"balancer", "prometheus", "grafana", "redis"} <= set(compose["services"])
    deployment, service, hpa, _ = docs(files)
    assert deployment["spec"]["replicas"] == replicas
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
            "nvidia.com/gpu"
        ]
        == 2
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (replicas, 2 * replicas)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "triton_queue_us_per_request"
    assert [p["name"] for p in service["spec"]["ports"]] == ["http", "grpc", "metrics"]


def test_kubernetes_validator_finds_wrong_objects() -> None:
    plan = plan_from_spec(ASSETS / "deploy_pipeline.yaml", name="affine")
    deployment, service, hpa, rules = manifests(plan)
    deployment["spec"]["replicas"] = "two"
    hpa["spec"]["maxReplicaz"] = 4
    problems = validate.kubernetes([deployment, service, hpa, rules])
    assert len(problems) == 2
    assert problems[0].startswith("Deployment/affine: spec.replicas")
    assert "maxReplicaz" in problems[1]


def test_compose_validator_finds_wrong_files(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        yaml.safe_dump({"services": {"triton": {"image": "x", "ports": "8000:8000", "restart": 3}}})
    )
    problems = validate.compose(path)
    assert problems and "ports" in problems[0]


def test_dashboard_validator_finds_unknown_fields() -> None:
    data = dashboard()
    assert validate.dashboard(data) == []
    data["panels"][0]["gridPoz"] = {"h": 1}
    del data["panels"][1]["targets"]
    problems = validate.dashboard(data)
    assert "dashboard.panels[0].gridPoz: not a field of Grafana's dashboard schema" in problems
    assert "dashboard.panels[1]: no targets" in problems


def test_dashboard_has_one_panel_per_query_on_a_known_datasource() -> None:
    data = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "tritonpipe.json").read_text())
    exprs = [p["targets"][0]["expr"] for p in data["panels"]]
    assert any("nv_inference_queue_duration_us" in e for e in exprs)
    assert any("tritonpipe_step_duration_us_total" in e for e in exprs)
    assert any("tritonpipe_predlog_errors_total" in e for e in exprs)
    datasource = yaml.safe_load(
        (ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert {p["datasource"]["uid"] for p in data["panels"]} == {datasource["datasources"][0]["uid"]}


def test_bad_names_are_refused() -> None:
    with pytest.raises(SpecError, match="name 'My_Pipe'"):
        plan_from_spec(ASSETS / "deploy_pipeline.yaml", name="My_Pipe")
