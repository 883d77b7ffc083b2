"""A batch over several providers: `provider:` as a list, `route:`, per-provider limits (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs.catalog import catalog
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.manifest import PROVIDER_LIMIT_FIELDS, load_manifest

HEAD = """\
version: 1
name: t
provider: {provider}
model: kling-o1/image-to-video
"""
ITEMS = """\
items:
  - id: a
    prompt: "hello"
    start_image: https://example.org/a.png
"""


def write(tmp_path: Path, provider: str, extra: str = "") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD.format(provider=provider) + extra + ITEMS)
    return path


def test_limit_fields_are_the_catalogue_providers():
    assert set(PROVIDER_LIMIT_FIELDS) == set(catalog().providers)


def test_a_list_keeps_its_order_and_per_provider_limits(tmp_path):
    m = load_manifest(write(tmp_path, "[fal, oxen, aimlapi]", "route: spread\nlimits:\n"
                            "  max_cost_usd: 200\n  fal: {max_concurrency: 10}\n"
                            "  oxen: {max_concurrency: 5, requests_per_minute: 30}\n"))
    assert m.providers == ("fal", "oxen", "aimlapi") and m.fanout and m.route == "spread"
    assert m.provider == "fal"
    assert m.limits.of("fal") == (10, 60) and m.limits.of("oxen") == (5, 30)
    assert m.limits.of("aimlapi") == (5, 60) and m.limits.max_cost_usd == 200


def test_one_provider_in_a_list_is_that_provider(tmp_path):
    listed = load_manifest(write(tmp_path, "[oxen]"))
    plain = load_manifest(write(tmp_path, "oxen"))
    assert listed.model_dump() == plain.model_dump()
    assert not listed.fanout and listed.providers == ("oxen",)


@pytest.mark.parametrize("provider, extra, message, line, field", [
    ("[fal, runway]", "", "unknown provider 'runway'", 3, "provider[1]"),
    ("[fal, fal]", "", "'fal' is listed twice", 3, "provider[1]"),
    ("[]", "", "expected at least one provider", 3, "provider"),
    ("[fal, oxen]", "limits:\n  aimlapi: {max_concurrency: 3}\n", "limits for aimlapi, which the batch",
     6, "limits.aimlapi"),
    ("oxen", "limits:\n  fal: {max_concurrency: 3}\n", "limits for fal", 6, "limits.fal"),
    ("[fal, oxen]", "route: fastest\n", "expected 'cheapest', 'spread' or 'in-order'", 5, "route"),
    ("[fal, oxen]", "limits:\n  fal: {max_concurency: 3}\n", "did you mean max_concurrency?", 6,
     "limits.fal.max_concurency"),
])
def test_bad_fanout_input_is_one_line(tmp_path, provider, extra, message, line, field):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, provider, extra))
    assert message in caught.value.message
    assert (caught.value.line, caught.value.field) == (line, field)


def test_a_key_known_elsewhere_is_not_suggested_as_itself(tmp_path):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, "[fal, oxen]", "limits:\n  fal: {max_cost_usd: 3}\n"))
    assert "unknown key 'max_cost_usd'" in caught.value.message
    assert "did you mean max_cost_usd" not in caught.value.message   # the batch-wide ceiling only


def test_a_provider_may_set_its_own_queue_depth(tmp_path):
    m = load_manifest(write(tmp_path, "[fal, oxen]", "limits:\n  queue_depth: 2\n  fal: {queue_depth: 0}\n"))
    assert (m.limits.depth_of("fal"), m.limits.depth_of("oxen")) == (0, 2)


def test_retry_on_other_provider_is_read(tmp_path):
    m = load_manifest(write(tmp_path, "[fal, oxen]", "retry: {on_other_provider: true}\n"))
    assert m.retry.on_other_provider
