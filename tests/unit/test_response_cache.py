"""response_cache: true: build writes Triton's response_cache, refuses it where the answer can
change for the same input, and the server options start the cache only when a model wants it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ASSETS, ROOT
from tests.integration.test_response_cache import SPEC
from tritonpipe.ensembles import build_repository, load_spec
from tritonpipe.ensembles.cache import cache_refusals
from tritonpipe.ensembles.spec import shadowed_models
from tritonpipe.errors import SpecError
from tritonpipe.repository.config import parse_pbtxt
from tritonpipe.server import ServerOptions

FRAUD = ROOT / "examples" / "fraud" / "pipeline.yaml"


def _cached_fraud(tmp_path: Path, log: bool = True) -> Path:
    data = yaml.safe_load(FRAUD.read_text())
    data["ensembles"]["fraud"]["response_cache"] = True
    if not log:
        del data["ensembles"]["fraud"]["log"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_build_refuses_a_cache_on_the_fraud_pipeline_and_says_why(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        build_repository(_cached_fraud(tmp_path), tmp_path / "repo")
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert all(
        line.startswith(f"{tmp_path / 'pipeline.yaml'}: ensembles.fraud.response_cache: refused: ")
        for line in lines
    )
    assert "lookup read features from an online store" in lines[0]
    assert "logs every prediction" in lines[1]
    assert not (tmp_path / "repo").exists()


def test_each_reason_stands_alone(tmp_path: Path) -> None:
    spec = load_spec(_cached_fraud(tmp_path, log=False))
    (reason,) = cache_refusals(spec, "fraud")
    assert "stale features" in reason


def test_cached_pipeline_config_enables_the_response_cache(tmp_path: Path) -> None:
    shutil.copyfile(ASSETS / "test_stages.py", tmp_path / "test_stages.py")
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    build_repository(tmp_path / "pipeline.yaml", tmp_path / "repo")
    enabled = {
        p.parent.name: parse_pbtxt(p.read_text()).response_cache.enable
        for p in (tmp_path / "repo").glob("*/config.pbtxt")
    }
    # The top model of each cached ensemble: the fused model, or the ensemble itself.
    assert enabled == {
        "cached": True,
        "cached_steps": True,
        "uncached": False,
        "scale": False,
        "shift": False,
    }
    args = ServerOptions(repository=tmp_path / "repo", cache_bytes=1000).arguments()
    assert "--cache-config=local,size=1000" in args
    mine = ServerOptions(repository=tmp_path / "repo", extra_args=("--cache-config=redis,host=h",))
    assert [a for a in mine.arguments() if a.startswith("--cache-config")] == [
        "--cache-config=redis,host=h"
    ]


def test_no_cache_flag_without_a_cached_model(tmp_path: Path) -> None:
    build_repository(ASSETS / "capped_pipeline.yaml", tmp_path / "repo")
    args = ServerOptions(repository=tmp_path / "repo").arguments()
    assert not any(a.startswith("--cache-config") for a in args)


def test_a_shadowed_pipeline_is_refused_a_cache() -> None:
    spec = load_spec(ROOT / "examples/fraud/challenger.yaml")
    (name,) = [n for n in spec.ensembles if shadowed_models(spec, n)]
    assert any("shadow a challenger" in r for r in cache_refusals(spec, name))
