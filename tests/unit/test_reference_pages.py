"""The committed reference pages (docs/reference/*.md) are what the generator writes from the
pydantic models today; a changed field description or a new field makes this fail."""

from __future__ import annotations

import runpy

from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "reference"


def test_reference_pages_are_current() -> None:
    render = runpy.run_path(str(REFERENCE / "generate.py"))["render"]
    pages = render()
    assert set(pages) == {p.name for p in REFERENCE.glob("*.md")}
    for name, text in pages.items():
        assert (REFERENCE / name).read_text() == text, (
            f"docs/reference/{name} is stale: run `make reference`"
        )


def test_pages_name_every_field_and_what_streams_create() -> None:
    from tritonpipe.ensembles.spec import Tensor

    pipeline = (REFERENCE / "pipeline.md").read_text()
    for field in Tensor.model_fields:
        assert f"| `{field}` |" in pipeline
    assert "`<stream>_OUT`" in (REFERENCE / "stream-job-nats.md").read_text()
    assert "input 'cat': 50 is outside [0, 49]" in (REFERENCE / "records.md").read_text()
