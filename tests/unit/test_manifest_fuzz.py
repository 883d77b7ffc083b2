"""Whatever the input, loading and expanding either works or raises ManifestError: never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.manifest import KNOWN_KEYS
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch

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


def _mutations(seed: int, count: int) -> list[bytes]:
    """Random and mutated manifests: byte flips, cuts, shuffled lines, noise; reproducible."""
    import random

    rng, text = random.Random(seed), yaml.safe_dump(VALID).encode()
    out = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))]
    while len(out) < count:
        data = bytearray(text)
        kind = len(out) % 3
        if kind == 0:
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.choice(b":-[]{}&*!|>'\"\t\n #%@`\xff\x00")
        elif kind == 1:
            data = data[:rng.randrange(len(data))]
        else:
            lines = bytes(data).split(b"\n")
            rng.shuffle(lines)
            data = bytearray(b"\n".join(lines))
        out.append(bytes(data))
    return out


@pytest.mark.cli
def test_the_real_cli_answers_mutated_manifests_in_one_line(tmp_path: Path):
    """The same through `reelbatch plan` in a subprocess: exit 0, or exit 2 with one stderr line and
    never a traceback."""
    import subprocess
    import sys

    repo = Path(__file__).parents[2]
    for n, data in enumerate(_mutations(seed=6, count=8)):
        path = tmp_path / f"m{n}.yaml"
        path.write_bytes(data)
        done = subprocess.run([sys.executable, "-m", "reelbatch", "plan", str(path)], cwd=repo,
                              capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, (data, done.stderr)
        assert done.returncode in (0, 2), (data, done.returncode, done.stderr)
        if done.returncode == 2:
            assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("reelbatch: "), \
                (data, done.stderr)
