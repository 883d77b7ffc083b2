"""Matrix value tags come from the value (issue 24.1): stems, short hashes, names."""

from __future__ import annotations

import pytest
import yaml

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.manifest import load_manifest
from reelbatch.jobs.variants import short_hash, variants


def matrix_of(tmp_path, matrix):
    doc = {"version": 1, "name": "m", "provider": "simulator", "model": "kling-o1/image-to-video",
           "defaults": {"duration": 5}, "items": [{"id": "a", "prompt": "p"}], "matrix": matrix}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_manifest(tmp_path / "m.yaml", 1 << 20)


def labels(tmp_path, matrix):
    return [v.label for v in variants(matrix_of(tmp_path, matrix))]


def test_tags_come_from_the_values_not_their_places(tmp_path):
    urls = ["https://e.org/x/ox.png", "https://e.org/yak.png?s=1"]
    assert labels(tmp_path, {"start_image": urls}) == [("ox",), ("yak",)]
    assert labels(tmp_path, {"start_image": urls[::-1]}) == [("yak",), ("ox",)]
    assert labels(tmp_path, {"prompt": ["calm", "storm"]}) == [(f"p{short_hash('calm')}",),
                                                               (f"p{short_hash('storm')}",)]
    assert labels(tmp_path, {"duration": [10, 5]}) == [("d10",), ("d5",)]


def test_a_mapping_names_its_values(tmp_path):
    assert labels(tmp_path, {"prompt": {"calm": "a calm sea", "storm": "a storm"}}) == [("calm",), ("storm",)]
    assert labels(tmp_path, {"prompt": [{"calm": "a calm sea"}, "a storm"]}) == [
        ("calm",), (f"p{short_hash('a storm')}",)]


def test_one_stem_in_two_folders_gets_its_hash_and_a_repeated_value_is_refused(tmp_path):
    urls = ["https://e.org/a/ox.png", "https://e.org/b/ox.png"]
    assert labels(tmp_path, {"start_image": urls}) == [(f"ox-{short_hash(urls[0])}",),
                                                       (f"ox-{short_hash(urls[1])}",)]
    with pytest.raises(ManifestError, match="given twice"):
        labels(tmp_path, {"prompt": ["same", "same"]})
