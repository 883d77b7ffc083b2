"""The model catalogue: provider mapping, native ids, wire fields, inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs import inputs
from reelbatch.jobs.catalog import catalog, provider_request
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Element, Item, Params
from tests.media import IEND

# a PNG signature and header chunk (640x480): the plan reads an image's dimensions
PNG_HEADER = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0\x08\x02\x00\x00\x00\xba\xb3K\xb3'
PNG = PNG_HEADER + IEND


def make_item(provider: str, model: str, **params) -> Item:
    spec = catalog().model_for(provider, model)
    return Item(item_id="a", source_id="a", content_key="k", provider=provider, model=spec.name,
                provider_model=spec.ids[provider], params=Params(**params), video_seconds=5,
                estimated_cost_usd=0.5)


@pytest.mark.parametrize("provider, model, native", [
    ("oxen", "kling-o1/image-to-video", "kling-video-o1-image-to-video"),
    ("oxen", "kling-o1/reference-to-video", "kling-video-o1-reference-to-video"),
    ("oxen", "kling-o1/video-edit", "kling-video-o1-video-to-video-edit"),
    ("aimlapi", "kling-o1/image-to-video", "klingai/video-o1-image-to-video"),
    ("aimlapi", "kling-o1/reference-to-video", "klingai/video-o1-reference-to-video"),
    ("aimlapi", "kling-o1/video-edit", "klingai/video-o1-video-to-video-edit"),
    ("aimlapi", "kling-o1/video-reference", "klingai/video-o1-video-to-video-reference"),
    ("simulator", "kling-o1/image-to-video", "kling-video-o1-image-to-video"),
    ("simulator", "kling-o1/video-reference", "kling-video-o1-video-to-video-reference"),
])
def test_neutral_and_native_names(provider, model, native):
    assert catalog().model_for(provider, model).ids[provider] == native
    assert catalog().model_for(provider, native).name == model


def test_oxen_has_no_video_reference():
    with pytest.raises(ManifestError, match="oxen does not serve"):
        catalog().model_for("oxen", "kling-o1/video-reference")


def test_every_model_has_a_price_and_source():
    for spec in catalog().models.values():
        assert spec.price_per_second > 0 and spec.price_source


def test_oxen_image_to_video_body():
    item = make_item("oxen", "kling-o1/image-to-video", prompt="p", start_image="s.png",
                     end_image="e.png", duration=10, raw={"seed": 7})
    request = provider_request(item, resolve=str.upper)
    assert request.model == "kling-video-o1-image-to-video"
    assert request.body == {"prompt": "p", "input_image": "S.PNG", "tail_image_url": "E.PNG",
                            "duration": 10, "seed": 7}


def test_oxen_reference_body_lists_images_and_elements():
    item = make_item("simulator", "kling-o1/reference-to-video", prompt="@Image1 @Element1",
                     images=("a",), elements=(Element(frontal_image="f", reference_images=("r",)),),
                     aspect_ratio="9:16")
    assert provider_request(item).body == {
        "prompt": "@Image1 @Element1", "input_image": ["a"], "aspect_ratio": "9:16",
        "elements": [{"frontal_image_url": "f", "reference_image_urls": ["r"]}]}


def test_aimlapi_bodies():
    i2v = make_item("aimlapi", "kling-o1/image-to-video", prompt="p", start_image="s", end_image="e")
    assert provider_request(i2v).body == {"prompt": "p", "image_url": "s", "last_image_url": "e"}
    edit = make_item("aimlapi", "kling-o1/video-edit", prompt="p", video="v", images=("a", "b"),
                     keep_audio=True)
    assert provider_request(edit).body == {"prompt": "p", "video_url": "v", "image_list": ["a", "b"],
                                           "keep_audio": True}


def test_oxen_edit_body_and_raw_wins():
    item = make_item("oxen", "kling-o1/video-edit", prompt="p", video="v", keep_audio=False,
                     raw={"keep_audio": True})
    assert provider_request(item).body == {"prompt": "p", "input_video": "v", "keep_audio": True}


def test_is_url():
    assert inputs.is_url("https://e.org/a.png") and inputs.is_url("data:image/png;base64,AA")
    assert not inputs.is_url("images/a.png")


def test_magic_bytes():
    assert inputs.image_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert inputs.image_format(b"GIF89a") == "gif"
    assert inputs.image_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert inputs.image_format(b"hello") is None
    assert inputs.video_format(b"\0\0\0\x18ftypmp42") == "mp4"


def test_to_data_uri(tmp_path: Path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    assert inputs.to_data_uri(path, 1000).startswith("data:image/png;base64,iVBORw0KGgo")
    with pytest.raises(ManifestError, match="more than max_data_uri_bytes"):
        inputs.to_data_uri(path, 10)
    with pytest.raises(ManifestError, match="file not found"):
        inputs.to_data_uri(tmp_path / "absent.png", 1000)


@pytest.mark.parametrize("provider, model, bound", [
    ("oxen", "kling-o1/image-to-video", 3600.0),          # 3 x 300 s is less than the hour's floor
    ("simulator", "kling-o1/image-to-video", 3600.0),     # 3 x 900 s
    ("aimlapi", "kling-o1/image-to-video", 3600.0),
])
def test_give_up_after_s_is_generous(provider, model, bound):
    """Issue 23.5: polling.give_up_after_s defaults to 3x the model's typical upper time, at least 1 h."""
    spec = catalog().model_for(provider, model)
    upper = spec.typical_range_s[1] if spec.typical_range_s else spec.expected_seconds
    assert spec.give_up_after_s == bound and spec.give_up_after_s >= 3 * upper
