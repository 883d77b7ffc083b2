"""Whatever the input, loading and expanding either works or raises ManifestError: never a crash."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.errors import ManifestError
from jobs.manifest import KNOWN_KEYS
from jobs.settings import Settings
from scheduler.plan import plan_batch

VALID = {"version": 1, "provider": "oxen", "model": "kling-o1/image-to-video",
         "items": [{"id": "a", "prompt": "hi {x}", "start_image": "https://e.org/a.png",
                    "vars": {"x": ["1", "2"]}}]}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["16:9", "4:3", "a.png", "../x", "{y}"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


def plans_or_refuses(path: Path) -> None:
    try:
        plan_batch(path, Settings(max_items=1000))
    except ManifestError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text(tmp_path: Path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    plans_or_refuses(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KNOWN_KEYS), value=values, where=st.sampled_from(["top", "item"]))
def test_a_valid_manifest_with_one_value_changed(tmp_path: Path, key: str, value, where: str):
    data = {**VALID, "items": [dict(VALID["items"][0])]}
    (data if where == "top" else data["items"][0])[key] = value
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    plans_or_refuses(path)
