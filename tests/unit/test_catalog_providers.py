"""Per-provider constraints checked at plan time (issue 13): what Oxen and the AI/ML API each
require or refuse, the neutral defaults sent on the wire, routing, media limits and typical times."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
import yaml

from reelbatch.jobs.catalog import catalog, provider_request
from reelbatch.jobs.content import params_json
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.item import Params
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from tests.media import IEND

URL = "https://example.org/{}.png"


def plan(tmp_path: Path, provider: str, model: str, **item):
    doc = {"version": 1, "name": "t", "provider": provider, "model": model,
           "items": [{"id": "a", "prompt": "go", **item}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan_batch(path, Settings())


def refused(tmp_path: Path, provider: str, model: str, **item) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        plan(tmp_path, provider, model, **item)
    return info.value


def element(views: int = 1) -> dict:
    return {"frontal_image": URL.format("front"), "reference_images": [URL.format(f"v{n}") for n in range(views)]}


# --- 2: Oxen reference-to-video needs reference images ---------------------------------------

@pytest.mark.parametrize("provider", ["oxen", "simulator"])
def test_oxen_reference_to_video_refuses_elements_only(tmp_path, provider):
    error = refused(tmp_path, provider, "kling-o1/reference-to-video", prompt="@Element1 flies",
                    elements=[element()])
    assert error.field == "items[0].images"
    assert f"on {provider} needs images" in error.message and "input_image as required" in error.message


def test_aimlapi_reference_to_video_takes_elements_only(tmp_path):
    items = plan(tmp_path, "aimlapi", "kling-o1/reference-to-video", prompt="@Element1 flies",
                 elements=[element()]).items
    assert "image_list" not in provider_request(items[0]).body


# --- 3: AI/ML elements need 1-4 views; no provider gets an empty list -------------------------

def test_aimlapi_refuses_an_element_without_views(tmp_path):
    error = refused(tmp_path, "aimlapi", "kling-o1/reference-to-video", images=[URL.format("i")],
                    elements=[element(0)], prompt="@Element1 next to @Image1", backend="kling")
    assert error.field == "items[0].elements"
    assert "element 1 has 0 reference images" in error.message and "1-4 per element" in error.message


def test_aimlapi_refuses_five_views(tmp_path):
    error = refused(tmp_path, "aimlapi", "kling-o1/video-edit", video="https://e.org/v.mp4",
                    elements=[element(5)])
    assert "element 1 has 5 reference images" in error.message


def test_oxen_element_without_views_sends_no_empty_list(tmp_path):
    items = plan(tmp_path, "oxen", "kling-o1/reference-to-video", images=[URL.format("i")],
                 elements=[element(0)]).items
    assert provider_request(items[0]).body["elements"] == [{"frontal_image_url": URL.format("front")}]


# --- issue 23.11: 4 views per element pass only where the upstream takes them ------------------

@pytest.mark.parametrize("provider", ["oxen", "simulator"])
@pytest.mark.parametrize("model, inputs", [
    ("kling-o1/reference-to-video", {"images": [URL.format("i")], "prompt": "@Element1 near @Image1"}),
    ("kling-o1/video-edit", {"video": "https://e.org/v.mp4"})])
def test_oxen_refuses_four_views_per_element(tmp_path, provider, model, inputs):
    error = refused(tmp_path, provider, model, elements=[element(4)], **inputs)
    assert error.field == "items[0].elements"
    assert "element 1 has 4 reference images" in error.message and "0-3 per element" in error.message
    assert "Max 3 images per element" in error.message
    assert plan(tmp_path, provider, model, elements=[element(3)], **inputs).items


@pytest.mark.parametrize("backend", ["fal", "auto", None])
@pytest.mark.parametrize("model", ["kling-o1/reference-to-video", "kling-o1/video-edit",
                                   "kling-o1/video-reference"])
def test_aimlapi_fal_backend_refuses_four_views(tmp_path, backend, model):
    inputs = {"video": "https://e.org/v.mp4"} if "video-" in model else {}
    chosen = {"backend": backend} if backend else {}
    error = refused(tmp_path, "aimlapi", model, elements=[element(4)], **inputs, **chosen)
    assert error.field == "items[0].elements"
    assert f"with backend {backend or 'auto'} takes 1-3 per element" in error.message
    assert "fal.ai" in error.message and "backend kling" in error.message
    assert plan(tmp_path, "aimlapi", model, elements=[element(3)], **inputs, **chosen).items


def test_aimlapi_kling_backend_takes_four_views(tmp_path):
    item = plan(tmp_path, "aimlapi", "kling-o1/video-edit", video="https://e.org/v.mp4",
                elements=[element(4)], backend="kling").items[0]
    assert len(provider_request(item).body["elements"][0]["reference_image_urls"]) == 4


# --- 5: image-to-video takes no aspect_ratio ---------------------------------------------------

@pytest.mark.parametrize("provider", ["oxen", "aimlapi", "simulator"])
def test_image_to_video_refuses_aspect_ratio_and_says_why(tmp_path, provider):
    error = refused(tmp_path, provider, "kling-o1/image-to-video", start_image=URL.format("s"),
                    aspect_ratio="9:16")
    assert error.field == "items[0].aspect_ratio"
    assert "does not take aspect_ratio" in error.message and "start image" in error.message


# --- 6: keep_audio is always sent, true unless the manifest says otherwise ---------------------

@pytest.mark.parametrize("provider, model", [("oxen", "kling-o1/video-edit"), ("aimlapi", "kling-o1/video-edit"),
                                             ("aimlapi", "kling-o1/video-reference"),
                                             ("simulator", "kling-o1/video-reference")])
def test_keep_audio_defaults_to_true_and_is_sent_explicitly(tmp_path, provider, model):
    unset = plan(tmp_path, provider, model, video="https://e.org/v.mp4").items[0]
    assert provider_request(unset).body["keep_audio"] is True
    off = plan(tmp_path, provider, model, video="https://e.org/v.mp4", keep_audio=False).items[0]
    assert provider_request(off).body["keep_audio"] is False


def test_models_without_keep_audio_never_send_it(tmp_path):
    item = plan(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image=URL.format("s")).items[0]
    assert "keep_audio" not in provider_request(item).body


# --- 14: backend routing, AI/ML only -------------------------------------------------------------

def test_backend_is_the_aimlapi_provider_field(tmp_path):
    item = plan(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image=URL.format("s"),
                backend="fal").items[0]
    assert provider_request(item).body["provider"] == "fal"


@pytest.mark.parametrize("provider", ["oxen", "simulator"])
def test_backend_is_refused_where_there_is_no_choice(tmp_path, provider):
    error = refused(tmp_path, provider, "kling-o1/image-to-video", start_image=URL.format("s"),
                    backend="kling")
    assert error.field == "items[0].backend" and "Only the AI/ML API documents it" in error.message


def test_backend_values_are_checked(tmp_path):
    error = refused(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image=URL.format("s"),
                    backend="replicate")
    assert error.field == "items[0].backend"


def test_unset_backend_keeps_existing_content_keys():
    old = ('{"prompt":"p","start_image":null,"end_image":null,"images":[],"elements":[],"video":null,'
           '"aspect_ratio":null,"duration":null,"keep_audio":null,"raw":{}}')
    assert params_json(Params(prompt="p")) == old
    assert '"backend":"kling"' in params_json(Params(prompt="p", backend="kling"))


# --- schema checks at plan time ------------------------------------------------------------------

def test_a_raw_field_the_schema_refuses_is_a_manifest_error(tmp_path):
    error = refused(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image=URL.format("s"),
                    raw={"duration": 7})
    assert error.field == "items[0].duration"
    assert "aimlapi would refuse this request: duration" in error.message
    assert "configs/schemas/aimlapi/klingai/video-o1-image-to-video.json" in error.message


def test_oxen_schema_violation_names_the_field(tmp_path):
    error = refused(tmp_path, "oxen", "kling-o1/video-edit", video="https://e.org/v.mp4",
                    raw={"keep_audio": "yes"})
    assert error.field == "items[0].keep_audio" and "oxen would refuse" in error.message


# --- typical times and overrides as data -----------------------------------------------------

@pytest.mark.parametrize("provider, model, seconds", [
    ("aimlapi", "kling-o1/image-to-video", 79), ("aimlapi", "kling-o1/reference-to-video", 126),
    ("aimlapi", "kling-o1/video-edit", 235), ("aimlapi", "kling-o1/video-reference", 203),
    ("oxen", "kling-o1/image-to-video", 180), ("oxen", "kling-o1/video-edit", 180)])
def test_typical_seconds_per_provider(provider, model, seconds):
    spec = catalog().model_for(provider, model)
    assert spec.expected_seconds == seconds and spec.typical_source and spec.poll_every_s


def test_oxen_range_and_polling_are_recorded():
    spec = catalog().model_for("oxen", "kling-o1/reference-to-video")
    assert spec.typical_range_s == (60, 300) and spec.poll_every_s == (10, 30)


def test_image_formats_follow_each_providers_page():
    assert catalog().model_for("oxen", "kling-o1/image-to-video").image_formats == ("jpeg", "png", "gif", "webp")
    for provider, model in [("aimlapi", "kling-o1/image-to-video"), ("oxen", "kling-o1/reference-to-video")]:
        assert catalog().model_for(provider, model).image_formats == ("jpeg", "png")


def test_every_limit_says_where_it_comes_from():
    for spec in catalog().models.values():
        for provider in spec.ids:
            view = catalog().model_for(provider, spec.name)
            assert view.media.source and view.typical_source and view.price_source


# --- 13: media limits for local files ----------------------------------------------------------

def png(path: Path, width: int, height: int) -> Path:
    # a real PNG header is all imagesize reads (signature + IHDR), then the end chunk
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
                     + struct.pack(">I", zlib.crc32(chunk)) + IEND)
    return path


def gif(path: Path, width: int, height: int) -> Path:
    import struct
    path.write_bytes(b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 16 + b";")
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")

    def make(name: str, size: str, seconds: float, fps: int = 24) -> Path:
        out = folder / name
        if not out.exists():
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                            f"color=c=blue:size={size}:rate={fps}:duration={seconds}", "-c:v", "libx264",
                            "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)], check=True)
        return out
    return make


@pytest.mark.parametrize("size, problem", [((200, 400), "at least 300 px"),
                                           ((1200, 300), "width/height must be between 0.4 and 2.5")])
def test_local_image_dimensions(tmp_path, size, problem):
    png(tmp_path / "s.png", *size)
    error = refused(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image="s.png")
    assert problem in error.message and error.field == "items[0].start_image"


def test_local_image_size(tmp_path):
    path = png(tmp_path / "s.png", 800, 600)
    path.write_bytes(path.read_bytes() + b"\0" * (10 * 2**20))
    error = refused(tmp_path, "oxen", "kling-o1/image-to-video", start_image="s.png")
    assert "images may be at most 10.0 MiB" in error.message


def test_a_good_local_image_plans(tmp_path):
    png(tmp_path / "s.png", 1280, 720)
    assert len(plan(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image="s.png").items) == 1


def test_gif_only_where_the_provider_lists_it(tmp_path):
    gif(tmp_path / "s.gif", 800, 600)
    assert plan(tmp_path, "oxen", "kling-o1/image-to-video", start_image="s.gif").items
    error = refused(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image="s.gif")
    assert "is a gif image; expected jpeg, png" in error.message
    error = refused(tmp_path, "oxen", "kling-o1/reference-to-video", images=["s.gif"])
    assert "is a gif image" in error.message
    error = refused(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image="https://e.org/a.webp")
    assert "is a webp image" in error.message


def test_video_length(tmp_path, videos):
    short = videos("short.mp4", "1280x720", 2)
    error = refused(tmp_path, "oxen", "kling-o1/video-edit", video=str(short))
    assert "lasts 2.00 s; input videos must last 3-10.05 s" in error.message
    assert error.field == "items[0].video"
    assert plan(tmp_path, "oxen", "kling-o1/video-edit", video=str(videos("ok.mp4", "1280x720", 4))).items


def test_video_resolution_per_provider(tmp_path, videos):
    small = videos("small.mp4", "640x360", 4)
    assert "each be 720-2160 px" in refused(tmp_path, "aimlapi", "kling-o1/video-edit", video=str(small)).message
    square = videos("square.mp4", "1440x1440", 3)
    assert "up to 1080p" in refused(tmp_path, "oxen", "kling-o1/video-edit", video=str(square)).message
    assert plan(tmp_path, "aimlapi", "kling-o1/video-edit", video=str(square)).items


def test_video_frame_rate(tmp_path, videos):
    slow = videos("slow.mp4", "1280x720", 4, fps=10)
    assert "runs at 10 fps" in refused(tmp_path, "aimlapi", "kling-o1/video-reference", video=str(slow)).message


def test_video_container(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 64)   # Matroska, not MP4/MOV
    assert "expected an MP4 or MOV" in refused(tmp_path, "oxen", "kling-o1/video-edit", video="v.mp4").message


def test_plan_json_shows_backend(tmp_path):
    item = plan(tmp_path, "aimlapi", "kling-o1/image-to-video", start_image=URL.format("s"), backend="auto").items[0]
    assert json.loads(item.model_dump_json())["params"]["backend"] == "auto"
