"""Our transcriptions of the providers' request schemas (configs/schemas/) check every request body
reelbatch builds: for every example manifest and for every model of the catalogue."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reelbatch.jobs import schemas
from reelbatch.jobs.catalog import catalog, provider_request
from reelbatch.jobs.item import Element, Item, Params
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch

EXAMPLES = sorted((Path(__file__).parents[2] / "jobs" / "examples").glob("*.yaml"))
SERVED = [(p, s.name) for s in catalog().models.values() for p in s.ids]
URL = "https://example.org/{}.png"


def payload(provider: str, model_id: str, body: dict) -> dict:
    return {"model": model_id, **body} if catalog().dialect_for(provider).model_in_body else body


def assert_fits(provider: str, model_id: str, body: dict) -> None:
    folders = catalog().schema_folders(provider)
    found = schemas.schema(folders, model_id)
    assert found is not None, f"no schema for {provider} {model_id}"
    sent = payload(provider, model_id, body)
    assert schemas.violation(folders, model_id, sent) is None, (provider, model_id, sent)
    # stricter than the providers: we send only fields they document
    assert set(sent) <= set(found["properties"]), set(sent) - set(found["properties"])


@pytest.mark.parametrize("provider, model", SERVED)
def test_every_served_model_has_a_valid_schema_citing_its_source(provider, model):
    model_id = catalog().model_for(provider, model).ids[provider]
    found = schemas.schema(catalog().schema_folders(provider), model_id)
    Draft202012Validator.check_schema(found)
    comment = found["$comment"]
    assert ("edc2a516" in comment and "2026-08-08" in comment) or ("f14fa72f" in comment and "2026-08-21" in comment) \
        or ("381105e1" in comment and "2026-08-02" in comment)   # fal-ai/fal-js


def test_there_is_no_schema_for_a_model_nobody_serves():
    root = resources.files("reelbatch.configs").joinpath("schemas")
    files = {str(p) for p in Path(str(root)).rglob("*.json")}
    ids = {(p, i) for p, m in SERVED for spec in [catalog().model_for(p, m)]
           for i in (spec.ids[p], *([spec.standard.id] if spec.standard else []))}
    expected = {str(Path(str(root)) / folder / f"{model_id}.json")
                for p, model_id in ids for folder in catalog().schema_folders(p)}
    assert files <= expected


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_request_fits_its_providers_schema(path):
    plan = plan_batch(path, Settings())
    for item in plan.items:
        request = provider_request(item)
        assert_fits(item.provider, request.model, request.body)


def full_params(provider: str, model: str) -> Params:
    """Every parameter the model takes, set to an allowed value."""
    spec = catalog().model_for(provider, model)
    values = {"prompt": "@Image1 and @Element1", "start_image": URL.format("s"), "end_image": URL.format("e"),
              "images": (URL.format("i"),), "video": "https://example.org/v.mp4",
              "elements": (Element(frontal_image=URL.format("f"), reference_images=(URL.format("r"),)),),
              "aspect_ratio": spec.aspect_ratios[-1], "duration": spec.durations[-1], "keep_audio": False,
              "backend": "kling"}
    return Params(**{k: v for k, v in values.items() if k == "prompt" or k in spec.takes})


def item_of(provider: str, model: str, params: Params) -> Item:
    spec = catalog().model_for(provider, model)
    return Item(item_id="a", source_id="a", content_key="k", provider=provider, model=model,
                provider_model=spec.ids[provider], params=params, video_seconds=5, estimated_cost_usd=1)


@pytest.mark.parametrize("provider, model", SERVED)
def test_every_catalogue_model_fits_fully_and_minimally(provider, model):
    spec = catalog().model_for(provider, model)
    full = provider_request(item_of(provider, model, full_params(provider, model)))
    assert_fits(provider, full.model, full.body)
    minimal = {"prompt": "go", **{name: full_params(provider, model).__dict__[name] for name in spec.required}}
    if spec.required_one_of:
        name = spec.required_one_of[0]
        minimal[name] = full_params(provider, model).__dict__[name]
    small = provider_request(item_of(provider, model, Params(**minimal)))
    assert_fits(provider, small.model, small.body)


@pytest.mark.parametrize("provider, model, body, field", [
    ("aimlapi", "kling-o1/reference-to-video",
     {"prompt": "p", "elements": [{"frontal_image_url": URL.format("f"), "reference_image_urls": []}]},
     "elements.0.reference_image_urls"),
    ("aimlapi", "kling-o1/image-to-video", {"prompt": "p"}, "image_url"),
    ("aimlapi", "kling-o1/video-reference", {"prompt": "p", "video_url": "v", "image_list": ["a"] * 5}, "image_list"),
    ("oxen", "kling-o1/reference-to-video", {"prompt": "p", "elements": [{"frontal_image_url": "f"}]}, "input_image"),
    ("oxen", "kling-o1/image-to-video", {"prompt": "p", "input_image": "i", "duration": 7}, "duration"),
])
def test_bodies_the_providers_refuse_are_refused(provider, model, body, field):
    model_id = catalog().model_for(provider, model).ids[provider]
    problem = schemas.violation(catalog().schema_folders(provider), model_id, payload(provider, model_id, body))
    assert problem is not None and problem.field == field


@pytest.mark.parametrize("provider, model", SERVED)
def test_the_catalogue_prompt_limit_is_within_every_schemas(provider, model):
    """check_wire checks each body shape once with the prompt blanked, relying on this."""
    spec = catalog().model_for(provider, model)
    prompt = schemas.schema(catalog().schema_folders(provider), spec.ids[provider])["properties"]["prompt"]
    assert prompt["type"] == "string" and spec.prompt_max_chars <= prompt.get("maxLength", spec.prompt_max_chars)


def test_schema_files_are_plain_json():
    root = Path(str(resources.files("reelbatch.configs").joinpath("schemas")))
    for path in root.rglob("*.json"):
        assert json.loads(path.read_text())["type"] == "object"
