"""Check generated files offline with maintained validators: Kubernetes objects against the
schemas kubernetes-validate ships, compose.yaml against the Compose Specification schema that
check-jsonschema vendors, the dashboard against Grafana's models from grafana-foundation-sdk
(generated from Grafana's own schema), alert rules and scrape config with promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tritonpipe.errors import SpecError

KUBERNETES_VERSION = "1.30.0"


def _missing(package: str) -> SpecError:
    return SpecError(f"{package} is needed to validate: pip install 'tritonpipe[deploy]'")


def kubernetes(documents: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems in Kubernetes objects (strict: unknown fields are errors too)."""
    try:
        import kubernetes_validate
    except ImportError:
        raise _missing("kubernetes-validate") from None
    problems = []
    for doc in documents:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            problems.append(f"{where}: no schema ({exc})")
    return problems


def compose(path: Path) -> list[str]:
    """Problems in a compose file, by the Compose Specification's JSON schema."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         "--output-format", "text", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if "No module named check_jsonschema" in result.stderr:
        raise _missing("check-jsonschema")
    return [] if result.returncode == 0 else [(result.stdout + result.stderr).strip()]


def _subset_problems(expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: not a field of Grafana's dashboard schema")
            else:
                problems += _subset_problems(value, actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: list changed"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in _subset_problems(e, a, f"{where}[{i}]")
        ]
    return [] if expected == actual else [f"{where}: {expected!r} read back as {actual!r}"]


def dashboard(data: dict[str, Any]) -> list[str]:
    """Problems in a dashboard: every field must be one Grafana's schema knows and read back
    unchanged through the SDK's models; panels need a type, grid position and targets."""
    try:
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models.dashboard import Dashboard
    except ImportError:
        raise _missing("grafana-foundation-sdk") from None
    try:
        model = Dashboard.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"dashboard: not readable as a Grafana dashboard: {exc}"]
    back = json.loads(json.dumps(model, cls=JSONEncoder))
    problems = _subset_problems(data, back, "dashboard")
    for i, panel in enumerate(data.get("panels", [])):
        for key in ("type", "gridPos", "targets", "datasource"):
            if key not in panel:
                problems.append(f"dashboard.panels[{i}]: no {key}")
    return problems


def promtool(config: Path) -> list[str]:
    """Problems promtool finds in a prometheus.yml and the rule files it names."""
    binary = shutil.which("promtool")
    if binary is None:
        raise SpecError("promtool not found: apt-get install prometheus (or make setup)")
    result = subprocess.run(
        [binary, "check", "config", str(config)], capture_output=True, text=True
    )
    return [] if result.returncode == 0 else [(result.stdout + result.stderr).strip()]


def generated(out: Path) -> list[str]:
    """Problems in a folder written by ``tritonpipe deploy manifests``."""
    problems = compose(out / "compose.yaml")
    docs = list(yaml.safe_load_all((out / "kubernetes" / "tritonpipe.yaml").read_text()))
    problems += kubernetes([d for d in docs if d])
    problems += dashboard(
        json.loads((out / "grafana" / "dashboards" / "tritonpipe.json").read_text())
    )
    # promtool resolves rule files next to the config; the compose paths are the same layout.
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("prometheus.yml", "alerts.yml"):
            shutil.copy(out / "prometheus" / name, Path(tmp) / name)
        problems += promtool(Path(tmp) / "prometheus.yml")
    return problems
