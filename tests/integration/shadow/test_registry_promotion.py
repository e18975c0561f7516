"""Shadow and promotion through a real MLflow registry (SQLite): the build takes the challenger
from its alias, and promotion moves @champion to it, keeping the old version as @previous."""

from __future__ import annotations

import json
from pathlib import Path

from tritonpipe.ensembles import build_repository
from tritonpipe.registry import register
from tritonpipe.registry.mlflow_registry import version_of
from tritonpipe.shadow.variants import promote_aliases


def test_registry_shadow_builds_and_promotion_moves_the_alias(churn_spec: Path) -> None:
    root = churn_spec.parent
    uri = f"sqlite:///{root / 'mlflow.db'}"
    champion = register(root / "champion_export", name="churn", tracking_uri=uri, alias="champion")
    challenger = register(
        root / "challenger_export", name="churn", tracking_uri=uri, alias="challenger"
    )
    text = churn_spec.read_text()
    text = text.replace("export: champion_export", "registry: models:/churn@champion")
    text = text.replace(
        "shadow: {export: challenger_export, sample: 0.3}",
        "shadow: {registry: models:/churn@challenger, sample: 0.3}",
    )
    spec = root / "registry_pipeline.yaml"
    spec.write_text("registry_uri: sqlite:///mlflow.db\n" + text)
    build_repository(spec, root / "registry_repo")
    shadow = json.loads((root / "registry_repo" / "churn" / "1" / "shadow.json").read_text())
    assert shadow["version"] == challenger and shadow["uri"] == "models:/churn@challenger"
    assert [s["name"] for s in shadow["plan"]["steps"]] == ["churn_scorer", "decide"]

    moved = promote_aliases(spec)
    assert moved == [f"models:/churn@champion -> version {challenger} (was {champion})"]
    assert version_of("models:/churn@champion", tracking_uri=uri) == challenger
    assert version_of("models:/churn@previous", tracking_uri=uri) == champion
