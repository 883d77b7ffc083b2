"""Size caps on input, beyond those in test_manifest_errors.py (manifest bytes, items_from bytes,
YAML aliases, expansion count): local files sent inline as data URIs are capped at plan time, with
the manifest line, so an oversize input refuses the batch before anything is submitted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelbatch.jobs import inputs
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from tests.media import padded_png

REPO = Path(__file__).parents[2]
# a PNG signature and header chunk (640x480): the plan reads an image's dimensions
PNG_HEADER = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0\x08\x02\x00\x00\x00\xba\xb3K\xb3'
PNG = padded_png(PNG_HEADER, 2008)       # 2,008 bytes
MANIFEST = """\
version: 1
name: t
provider: oxen
model: kling-o1/image-to-video
items:
  - id: a
    prompt: "hello"
    start_image: big.png
"""


def test_data_uri_cap_boundary(tmp_path: Path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    assert inputs.to_data_uri(path, len(PNG)).startswith("data:image/png;base64,")
    with pytest.raises(ManifestError, match=f"{len(PNG)} bytes is more than max_data_uri_bytes "
                                            rf"\({len(PNG) - 1}\); use a URL"):
        inputs.to_data_uri(path, len(PNG) - 1)


def test_oversize_local_input_is_refused_at_plan_time_with_its_line(tmp_path: Path):
    (tmp_path / "big.png").write_bytes(PNG)
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    with pytest.raises(ManifestError, match="more than max_data_uri_bytes") as caught:
        plan_batch(path, Settings(max_data_uri_bytes=1000))
    assert (caught.value.line, caught.value.field) == (8, "items[0].start_image")
    assert plan_batch(path, Settings(max_data_uri_bytes=len(PNG))).items


@pytest.mark.cli
def test_oversize_local_input_through_the_cli_is_one_line_and_exit_2(tmp_path: Path):
    (tmp_path / "big.png").write_bytes(PNG)
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    env = {**os.environ, "REELBATCH_MAX_DATA_URI_BYTES": "1000"}
    done = subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"reelbatch: error: {path}:8: items[0].start_image: 2008 bytes is more than "
        "max_data_uri_bytes (1000); use a URL for large inputs"]
