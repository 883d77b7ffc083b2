"""fal in the catalogue: its field names, string durations 3-10, element views 1-3, and the neutral
``tier`` (standard only where a provider serves it), checked at plan time."""

from __future__ import annotations

import pytest
import yaml

from reelbatch.jobs.catalog import provider_request
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch

IMAGE = "https://example.org/ox.png"


def plan(tmp_path, provider: str, model: str = "kling-o1/image-to-video", **doc):
    body = {"version": 1, "name": "t", "provider": provider, "model": model, "output": "out",
            "defaults": {"start_image": IMAGE}, "items": [{"id": "a", "prompt": "an ox"}], **doc}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(body))
    return plan_batch(path, Settings())


def test_fal_sends_its_field_names_and_a_string_duration(tmp_path):
    item = plan(tmp_path, "fal", defaults={"start_image": IMAGE, "end_image": IMAGE, "duration": 3}).items[0]
    request = provider_request(item)
    assert request.model == "fal-ai/kling-video/o1/image-to-video"
    assert request.body == {"prompt": "an ox", "start_image_url": IMAGE, "end_image_url": IMAGE, "duration": "3"}
    assert item.estimated_cost_usd == pytest.approx(3 * 0.112)


def test_durations_fal_alone_takes_are_refused_elsewhere(tmp_path):
    with pytest.raises(ManifestError, match="duration: 3 is not allowed|3 is not allowed"):
        plan(tmp_path, "oxen", defaults={"start_image": IMAGE, "duration": 3})


def test_the_standard_tier_is_fal_s_own_endpoint_and_price(tmp_path):
    items = plan(tmp_path, "fal", defaults={"start_image": IMAGE, "duration": 5},
                 matrix={"tier": ["standard", "pro"]}).items
    assert [(i.item_id, i.provider_model, i.estimated_cost_usd) for i in items] == [
        ("a.standard", "fal-ai/kling-video/o1/standard/image-to-video", pytest.approx(5 * 0.084)),
        ("a.pro", "fal-ai/kling-video/o1/image-to-video", pytest.approx(5 * 0.112))]
    assert provider_request(items[0]).model == "fal-ai/kling-video/o1/standard/image-to-video"


@pytest.mark.parametrize("provider", ["oxen", "aimlapi", "simulator"])
def test_providers_without_a_standard_tier_refuse_it_at_plan_time(tmp_path, provider):
    with pytest.raises(ManifestError, match="has no standard tier"):
        plan(tmp_path, provider, defaults={"start_image": IMAGE, "duration": 5, "tier": "standard"})


def test_tier_pro_is_accepted_everywhere_and_changes_nothing(tmp_path):
    plain = plan(tmp_path, "oxen", defaults={"start_image": IMAGE, "duration": 5}).items[0]
    pro = plan(tmp_path, "oxen", defaults={"start_image": IMAGE, "duration": 5, "tier": "pro"}).items[0]
    sent = [(r.model, r.body) for r in (provider_request(plain), provider_request(pro))]
    assert sent[0] == sent[1]


@pytest.mark.parametrize("views", [0, 4])
def test_fal_elements_take_one_to_three_views(tmp_path, views):
    element = {"frontal_image": IMAGE, "reference_images": [IMAGE] * views}
    with pytest.raises(ManifestError, match="reference images"):
        plan(tmp_path, "fal", model="kling-o1/reference-to-video",
             defaults={"images": [IMAGE]}, items=[{"id": "a", "prompt": "@Element1", "elements": [element]}])
