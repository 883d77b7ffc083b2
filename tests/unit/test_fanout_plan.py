"""`plan` of a batch over several providers: each item against each listed provider (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch, sizing_lines

MANIFEST = """\
version: 1
name: fan
provider: {providers}
model: kling-o1/image-to-video
limits:
  max_concurrency: {concurrency}
items:
  - id: pro
    prompt: "hello"
    start_image: https://example.org/a.png
  - id: std
    prompt: "hello"
    tier: standard
    start_image: https://example.org/a.png
"""


def plan(tmp_path: Path, providers: str, extra: str = "", concurrency: int = 5):
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.format(providers=providers, concurrency=concurrency) + extra)
    return plan_batch(path, Settings())


def test_an_item_only_some_providers_make_goes_only_there(tmp_path):
    items = {i.item_id: i for i in plan(tmp_path, "[oxen, fal]").items}
    assert [o.provider for o in items["std"].offers] == ["fal"]     # only fal serves the standard tier
    assert items["std"].provider == "fal"
    assert {o.provider for o in items["pro"].offers} == {"oxen", "fal"}


def test_cheapest_offers_the_cheapest_first_and_in_order_keeps_the_list(tmp_path):
    cheapest = {i.item_id: i for i in plan(tmp_path, "[oxen, fal]").items}["std"]
    assert cheapest.provider == "fal"
    pro = {i.item_id: i for i in plan(tmp_path, "[oxen, fal]").items}["pro"]
    costs = [o.estimated_cost_usd for o in pro.offers]
    assert costs == sorted(costs) and pro.estimated_cost_usd == costs[0]
    in_order = {i.item_id: i for i in plan(tmp_path, "[oxen, fal]", "route: in-order\n").items}["pro"]
    assert [o.provider for o in in_order.offers] == ["oxen", "fal"] and in_order.provider == "oxen"


def test_the_content_key_names_no_provider(tmp_path):
    one = {i.item_id: i.content_key for i in plan(tmp_path, "[oxen, fal]").items}
    other = {i.item_id: i.content_key for i in plan(tmp_path, "[fal, aimlapi, oxen]").items}
    assert one == other


def test_an_item_no_listed_provider_makes_is_refused_with_its_line(tmp_path):
    with pytest.raises(ManifestError) as caught:
        plan(tmp_path, "[oxen, aimlapi]")            # neither serves the standard tier
    assert "no listed provider can make it" in caught.value.message
    assert caught.value.line == 13 and caught.value.field == "items[1].tier"


def test_a_one_provider_list_plans_as_that_provider(tmp_path):
    listed = plan(tmp_path, "[fal]").items
    plain = plan(tmp_path, "fal").items
    assert [i.model_dump_json() for i in listed] == [i.model_dump_json() for i in plain]
    assert all(i.offers == () for i in plain) and '"offers"' not in plain[0].model_dump_json()


EXTRA_ITEM = "  - {id: other, prompt: hi, start_image: 'https://example.org/b.png'}" + chr(10)


def test_the_plan_shows_each_provider_and_the_combined_wall_time(tmp_path):
    found = plan(tmp_path, "[oxen, fal]", EXTRA_ITEM)
    lines, _ = sizing_lines(found)
    text = chr(10).join(lines)
    assert "oxen: $0.112/video second, can make 2 of 3 items, max_concurrency 5" in text
    assert "fal: " in text and "can make 3 of 3 items, max_concurrency 5" in text
    assert "at their combined capacity" in text
