"""What test_storage.py leaves out: item ids cannot steer a file (video or sidecar) out of the output
folder, redirects to other schemes are refused, and a public host cannot redirect a download into
this machine (plain http to loopback is for the simulator, not for whoever serves a result URL)."""

from __future__ import annotations

import httpx
import pytest

from reelbatch.jobs.errors import UnsafeResult
from reelbatch.jobs.names import file_stem as safe_stem
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.http import build_download_client
from reelbatch.worker.storage import download, target_path
from tests.media import mini_mp4

SETTINGS = Settings()
FAKE_MP4 = mini_mp4()
HOSTILE_IDS = ["../evil", "../../etc/passwd", "a/../../b", "/abs/path", "..", ".", "", "a\\..\\b",
               "x\x00y", "..%2F..%2Fz", "~/x", "ok/..", "é/../ü"]


def mock(handler) -> httpx.Client:
    return build_download_client(SETTINGS, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("item_id", HOSTILE_IDS)
def test_item_ids_cannot_leave_the_output_folder(tmp_path, item_id):
    out = tmp_path / "out"
    out.mkdir()
    stem = safe_stem(item_id)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert target_path(out, stem + ".mp4").parent == out.resolve()
    assert (out / (stem + ".json")).resolve().parent == out.resolve()     # the sidecar


@pytest.mark.parametrize("item_id", ["../evil", "a/../../b", "/abs/path"])
def test_a_download_named_from_a_hostile_id_lands_inside(tmp_path, item_id):
    out = tmp_path / "out"
    stored = download("https://cdn.test/a", out, safe_stem(item_id) + ".mp4",
                      mock(lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"},
                                                    content=FAKE_MP4)), SETTINGS)
    assert stored.path.parent == out.resolve()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [stored.path.name]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://cdn.test/a.mp4", "gopher://cdn.test/",
                                      "http://127.0.0.1:6379/", "http://localhost:5555/api/tasks",
                                      "https://127.0.0.1/a.mp4", "http://[::1]/a"])
def test_redirects_to_other_schemes_or_into_this_machine_are_refused(tmp_path, location):
    def handler(request):
        if request.url.host == "cdn.test" and request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": location})
        raise AssertionError(f"followed a redirect to {request.url}")
    with pytest.raises(UnsafeResult, match="refusing"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(handler), SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_loopback_may_still_redirect_within_loopback(tmp_path):
    def handler(request):
        if request.url.path == "/a":
            return httpx.Response(302, headers={"Location": "http://localhost:9/b"})
        return httpx.Response(200, headers={"Content-Type": "video/mp4"}, content=FAKE_MP4)
    assert download("http://127.0.0.1:9/a", tmp_path, "a.mp4", mock(handler), SETTINGS).bytes == len(FAKE_MP4)
