import shutil
from pathlib import Path

import pytest

from tests.conftest import DIGITS
from tritonpipe.capacity.apply import apply_settings, spec_entry
from tritonpipe.ensembles.spec import load_spec
from tritonpipe.errors import SpecError


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    shutil.copy(DIGITS / "pipeline.yaml", tmp_path / "pipeline.yaml")
    return tmp_path / "pipeline.yaml"


def test_apply_round_trips_the_spec_keeping_comments(spec: Path) -> None:
    before = spec.read_text()
    apply_settings(
        spec,
        {
            "digits": {
                "count": 1,
                "max_batch_size": 32,
                "max_queue_delay_us": 1000,
                "preferred_batch_size": 16,
            },
            "digits_onnx": {
                "count": 3,
                "max_batch_size": 64,
                "max_queue_delay_us": 0,
                "preferred_batch_size": 0,
            },
        },
    )
    after = spec.read_text()
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(c in after.splitlines() for c in comments)
    # Untouched entries keep their text, line for line, and the sections their order.
    assert before.split("postprocess:")[0] in after
    assert after.index("stages:") < after.index("models:") < after.index("ensembles:")
    loaded = load_spec(spec)
    serving = loaded.ensembles["digits"].serving
    assert serving is not None and serving.max_batch_size == 32
    assert serving.instance_groups[0].count == 1
    assert serving.dynamic_batching is not None
    assert serving.dynamic_batching.max_queue_delay_microseconds == 1000
    assert serving.dynamic_batching.preferred_batch_size == [16]
    onnx = loaded.models["digits_onnx"]
    assert onnx.instance_groups[0].count == 3
    assert onnx.dynamic_batching is not None and onnx.dynamic_batching.preferred_batch_size == []
    assert loaded.ensembles["digits_ts"].serving is None  # the other fused ensemble is untouched
    # Applying the same settings again changes nothing.
    apply_settings(spec, {"digits_onnx": {"count": 3}})
    assert spec.read_text() == after


def test_fused_groups_map_to_their_ensemble(spec: Path) -> None:
    assert spec_entry(spec, "digits_preprocess_postprocess") == ("ensembles", "digits")
    assert spec_entry(spec, "preprocess") == ("stages", "preprocess")


def test_a_model_not_in_the_spec_is_named(spec: Path) -> None:
    with pytest.raises(
        SpecError, match="model 'resnet' is not in the spec .*preprocess, postprocess, digits_onnx"
    ):
        apply_settings(spec, {"resnet": {"count": 2}})
    assert spec.read_text() == (DIGITS / "pipeline.yaml").read_text()


def test_an_invalid_winner_leaves_the_spec_alone(spec: Path) -> None:
    with pytest.raises(
        SpecError, match="do not make a valid spec.*preferred_batch_size 64 is outside"
    ):
        apply_settings(spec, {"digits_onnx": {"max_batch_size": 8, "preferred_batch_size": 64}})
    assert spec.read_text() == (DIGITS / "pipeline.yaml").read_text()
