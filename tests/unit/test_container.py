"""What is written is a video (issue 11 point 2): an empty body, an HTML page sent as video/mp4, an
MP4 cut short or without its moov box are refused and leave no file; real containers pass."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from imageio_ffmpeg import get_ffmpeg_exe

from reelbatch.jobs.errors import NotAVideo, StorageError
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.http import build_download_client
from reelbatch.worker.storage import download
from tests.media import box, mini_mp4

SETTINGS = Settings(download_chunk_bytes=1024)
HTML = b"<!DOCTYPE html><html><body>503 Service Temporarily Unavailable</body></html>"


def fetch(tmp_path, body: bytes, content_type: str = "video/mp4", length: bool = True):
    headers = {"Content-Type": content_type}
    if not length:
        headers["Transfer-Encoding"] = "chunked"
    client = build_download_client(SETTINGS, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, headers=headers, content=body)))
    return download("https://cdn.test/v.mp4", tmp_path, "v.mp4", client, SETTINGS)


@pytest.mark.parametrize("name, body, content_type, message", [
    ("empty", b"", "video/mp4", "empty body"),
    ("html-as-mp4", HTML, "video/mp4", "HTML page"),
    ("html-typed", HTML, "text/html", "not a video"),
    ("json-error", b'{"error": "expired"}', "video/mp4", "not an MP4 or WebM"),
    ("no-moov", box(b"ftyp", b"isom\0\0\0\0") + box(b"mdat", b"\0" * 64), "video/mp4", "moov"),
    ("cut-short", mini_mp4()[:-30], "application/octet-stream", "cut off"),
])
def test_what_is_not_a_video_is_refused_and_not_kept(tmp_path, name, body, content_type, message):
    with pytest.raises(NotAVideo, match=message) as caught:
        fetch(tmp_path, body, content_type)
    assert isinstance(caught.value, StorageError)    # retried by the engine, not fatal
    assert list(tmp_path.iterdir()) == []


def test_a_real_mp4_with_moov_at_the_end_and_a_webm_pass(tmp_path):
    ffmpeg = get_ffmpeg_exe()
    for name, args in {"end.mp4": [], "v.webm": ["-c:v", "libvpx"]}.items():   # ffmpeg: moov last
        path = tmp_path / name
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=5", "-t", "1",
                        *args, str(path)], check=True, timeout=60)
        out = tmp_path / f"out-{name}"
        out.mkdir()
        stored = fetch(out, path.read_bytes())
        assert stored.bytes == path.stat().st_size


def test_a_box_claiming_more_than_the_file_is_refused(tmp_path):
    lying = mini_mp4()[:-4] + b"\0\0\0\0"
    lying = lying[:-108] + (200).to_bytes(4, "big") + lying[-104:]   # mdat says 200 bytes, has 108
    with pytest.raises(NotAVideo):
        fetch(tmp_path, lying, length=False)
