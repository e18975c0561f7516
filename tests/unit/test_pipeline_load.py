from pathlib import Path

import numpy as np
import pytest
import yaml

from tritonpipe.errors import PipelineError, SpecError
from tritonpipe.pipeline import Pipeline


def _images(n: int) -> np.ndarray:
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(buffer, "PNG")
        out.append([buffer.getvalue()])
    return np.array(out, dtype=object)


def test_spec_and_built_spec_answer_alike(untrained_digits: Path) -> None:
    """A spec with a prediction log is built first (its parts exist only once built)."""
    images = _images(70)  # above max_batch_size: two chunks
    plain = Pipeline.load(untrained_digits / "pipeline.yaml", "digits", threads=1)
    spec = yaml.safe_load((untrained_digits / "pipeline.yaml").read_text())
    spec["ensembles"] = {"digits": spec["ensembles"]["digits"]}
    spec["ensembles"]["digits"]["log"] = {"sink": {"type": "parquet", "path": "logs"}}
    path = untrained_digits / "pipeline_logged_inproc.yaml"
    path.write_text(yaml.safe_dump(spec))
    built = Pipeline.load(path, threads=1)  # the only ensemble is the default
    a, b = plain({"image": images}), built({"image": images})
    assert a["labels"].shape == (70, 3)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert list(built.step_times()) == ["preprocess", "digits_onnx", "postprocess"]
    assert built.step_times()["preprocess"].executions == 2


def test_load_errors(untrained_digits: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="name one of digits, digits_ts, digits_steps"):
        Pipeline.load(untrained_digits / "pipeline.yaml")
    with pytest.raises(SpecError, match="no ensemble, stage or model 'nope'"):
        Pipeline.load(untrained_digits / "pipeline.yaml", "nope")
    with pytest.raises(PipelineError, match="name the model or ensemble"):
        Pipeline.load(tmp_path)
