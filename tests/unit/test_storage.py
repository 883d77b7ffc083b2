"""Downloads against a real local HTTP server and MockTransport, plus poster frames with ffmpeg."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from imageio_ffmpeg import get_ffmpeg_exe

from reelbatch.jobs.errors import ResultUrlExpired, StorageError
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.http import build_download_client
from reelbatch.worker.storage import download, poster_frame, safe_name
from tests.media import mini_mp4

SETTINGS = Settings(download_chunk_bytes=1024, download_max_bytes=10_000_000)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run([get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "1", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture(scope="module")
def server(mp4):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            routes = {"/clip.mp4": self._video, "/hop": self._redirect, "/short": self._truncated}
            routes.get(self.path, self._missing)()

        def _video(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(mp4)))
            self.end_headers()
            self.wfile.write(mp4)

        def _redirect(self):
            self.send_response(302)
            self.send_header("Location", "/clip.mp4")
            self.end_headers()

        def _truncated(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(mp4)))
            self.end_headers()
            self.wfile.write(mp4[: len(mp4) // 2])
            self.close_connection = True

        def _missing(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client():
    with build_download_client(SETTINGS) as c:
        yield c


def test_real_download_matches_sha256(server, client, tmp_path, mp4):
    stored = download(f"{server}/clip.mp4", tmp_path, "ox-zoom.mp4", client, SETTINGS)
    assert stored.path == tmp_path.resolve() / "ox-zoom.mp4"
    on_disk = hashlib.sha256(stored.path.read_bytes()).hexdigest()
    assert stored.sha256 == hashlib.sha256(mp4).hexdigest() == on_disk
    assert (stored.bytes, stored.content_type) == (len(mp4), "video/mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ox-zoom.mp4"]


def test_a_download_removes_what_an_abandoned_one_left(server, client, tmp_path, mp4):
    """Issue 22.2: a worker that died mid-download left its partial file; the next download of the
    same item (which holds the item's lease, so none other runs) removes it, and no one else's."""
    (tmp_path / ".ox-zoom.mp4.k2j4h1.part").write_bytes(b"half")
    (tmp_path / ".other.mp4.a1b2c3.part").write_bytes(b"another item's")
    download(f"{server}/clip.mp4", tmp_path, "ox-zoom.mp4", client, SETTINGS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.mp4.a1b2c3.part", "ox-zoom.mp4"]


def test_real_redirect_on_loopback_is_followed(server, client, tmp_path, mp4):
    assert download(f"{server}/hop", tmp_path, "a.mp4", client, SETTINGS).bytes == len(mp4)


def test_real_truncated_body_is_a_storage_error(server, client, tmp_path):
    with pytest.raises(StorageError) as info:
        download(f"{server}/short", tmp_path, "a.mp4", client, SETTINGS)
    assert not isinstance(info.value, ResultUrlExpired)
    assert list(tmp_path.iterdir()) == []


def test_real_404_is_expired(server, client, tmp_path):
    with pytest.raises(ResultUrlExpired):
        download(f"{server}/gone.mp4", tmp_path, "a.mp4", client, SETTINGS)


def test_poster_frame(server, client, tmp_path):
    video = download(f"{server}/clip.mp4", tmp_path, "a.mp4", client, SETTINGS).path
    for name, magic in (("a.jpg", b"\xff\xd8"), ("a.png", b"\x89PNG")):
        assert poster_frame(video, tmp_path / name).read_bytes().startswith(magic)


def test_poster_frame_of_a_non_video_fails(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StorageError, match="no poster frame"):
        poster_frame(bad, tmp_path / "p.jpg")
    assert not (tmp_path / "p.jpg").exists()


# --- MockTransport checks -------------------------------------------------------------------------

def mock(handler) -> httpx.Client:
    return build_download_client(SETTINGS, transport=httpx.MockTransport(handler))


def video(body: bytes, content_type: str = "video/mp4", length: int | None = None) -> httpx.Response:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body) if length is None else length)}
    return httpx.Response(200, headers=headers, content=iter([body]))


FAKE_MP4 = mini_mp4()


def test_truncated_against_content_length(tmp_path):
    with pytest.raises(StorageError, match="truncated"):
        download("https://cdn.test/a.mp4", tmp_path, "a.mp4", mock(lambda r: video(FAKE_MP4, length=500)),
                 SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_oversize_by_content_length_and_while_streaming(tmp_path):
    small = Settings(download_max_bytes=50, download_chunk_bytes=16)
    with pytest.raises(StorageError, match="cap"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(lambda r: video(FAKE_MP4)), small)
    no_length = lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, content=iter([FAKE_MP4]))
    with pytest.raises(StorageError, match="cap"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(no_length), small)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content_type, body, ok", [
    ("video/mp4", FAKE_MP4, True), ("video/webm; codecs=vp9", b"\x1a\x45\xdf\xa3" + b"\x00" * 20, True),
    ("application/octet-stream", FAKE_MP4, True), ("", FAKE_MP4, True),
    ("application/octet-stream", b"<html>nope</html>", False), ("text/html", FAKE_MP4, False),
    ("application/json", b"{}", False)])
def test_content_type(tmp_path, content_type, body, ok):
    client = mock(lambda r: video(body, content_type))
    if ok:
        assert download("https://cdn.test/a", tmp_path, "a.mp4", client, SETTINGS).bytes == len(body)
    else:
        with pytest.raises(StorageError):
            download("https://cdn.test/a", tmp_path, "a.mp4", client, SETTINGS)


@pytest.mark.parametrize("url", ["http://cdn.test/a.mp4", "http://10.0.0.1/a.mp4", "ftp://cdn.test/a.mp4",
                                 "file:///etc/passwd", "http://169.254.169.254/latest"])
def test_only_https_or_loopback_http(tmp_path, url):
    calls = []
    with pytest.raises(StorageError, match="refusing"):
        download(url, tmp_path, "a.mp4", mock(lambda r: calls.append(r) or video(FAKE_MP4)), SETTINGS)
    assert calls == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a", "http://127.8.9.10/a", "http://[::1]:9/a",
                                 "http://localhost/a"])
def test_loopback_http_is_allowed(tmp_path, url):
    assert download(url, tmp_path, "a.mp4", mock(lambda r: video(FAKE_MP4)), SETTINGS).bytes == len(FAKE_MP4)


@pytest.mark.parametrize("location", ["http://evil.test/a.mp4", "http://10.1.1.1/x"])
def test_redirect_to_plain_http_elsewhere_is_refused(tmp_path, location):
    def handler(request):
        if request.url.host == "cdn.test":
            return httpx.Response(302, headers={"Location": location})
        raise AssertionError("followed an unsafe redirect")
    with pytest.raises(StorageError, match="refusing"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(handler), SETTINGS)


def test_redirect_loop_is_capped(tmp_path):
    loop = lambda r: httpx.Response(302, headers={"Location": "/again"})
    with pytest.raises(StorageError, match="redirects"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(loop), SETTINGS)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired(tmp_path, status):
    with pytest.raises(ResultUrlExpired):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(lambda r: httpx.Response(status)), SETTINGS)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retryable_storage_errors(tmp_path, status):
    with pytest.raises(StorageError) as info:
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(lambda r: httpx.Response(status)), SETTINGS)
    assert not isinstance(info.value, ResultUrlExpired)


def test_no_credentials_are_sent(tmp_path):
    seen = []
    client = httpx.Client(auth=("user", "pw"), transport=httpx.MockTransport(
        lambda r: seen.append(r.headers.get("Authorization")) or video(FAKE_MP4)))
    download("https://cdn.test/a", tmp_path, "a.mp4", client, SETTINGS)
    assert seen == [None]


def test_symlink_target_is_refused(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"keep")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.mp4").symlink_to(outside)
    with pytest.raises(StorageError, match="symlink"):
        download("https://cdn.test/a", dest, "a.mp4", mock(lambda r: video(FAKE_MP4)), SETTINGS)
    assert outside.read_bytes() == b"keep"


@pytest.mark.parametrize("name, expected", [("../../etc/passwd", "passwd"), ("/abs/x.mp4", "x.mp4"),
                                            (".hidden.mp4", "hidden.mp4"), ("a b/c?.mp4", "c_.mp4"),
                                            ("ox-zoom_01.mp4", "ox-zoom_01.mp4")])
def test_file_names_are_sanitised(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["..", "", "/", "???"])
def test_unusable_names_are_refused(name):
    with pytest.raises(StorageError):
        safe_name(name)


def test_download_stays_inside_resolved_dest_dir(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    stored = download("https://cdn.test/a", tmp_path / "link", "../../x.mp4", mock(lambda r: video(FAKE_MP4)),
                      SETTINGS)
    assert stored.path == real.resolve() / "x.mp4" and stored.path.read_bytes() == FAKE_MP4
    assert os.listdir(real) == ["x.mp4"]


def test_plain_http_to_an_explicitly_allowed_host_is_followed():
    from reelbatch.jobs.errors import UnsafeResult
    from reelbatch.worker.storage import check_url

    with pytest.raises(UnsafeResult):
        check_url(httpx.URL("http://simulator:8765/media/x.mp4"))
    check_url(httpx.URL("http://simulator:8765/media/x.mp4"), ("simulator",))


def test_a_large_body_is_hashed_and_written_off_the_read_loop(tmp_path):
    """A body with no declared length (or a large one) goes through the sink thread in pieces:
    the same bytes and sha256 as the body, whatever the chunking."""
    body = FAKE_MP4
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]   # many pieces of 1,024 bytes (SETTINGS)
    no_length = lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"}, content=iter(pieces))
    stored = download("https://cdn.test/a", tmp_path, "a.mp4", mock(no_length), SETTINGS)
    assert stored.bytes == len(body) and stored.sha256 == hashlib.sha256(body).hexdigest()
    assert (tmp_path / "a.mp4").read_bytes() == body


def test_a_write_failing_in_the_sink_fails_the_download(tmp_path, monkeypatch):
    from reelbatch.worker import storage

    class Full:
        def __init__(self, out):
            self.out = out

        def __getattr__(self, name):
            return getattr(self.out, name)

        def write(self, data):
            raise OSError(28, "No space left on device")

    real = storage._Sink.__init__
    monkeypatch.setattr(storage._Sink, "__init__", lambda self, out: real(self, Full(out)))
    no_length = lambda r: httpx.Response(200, headers={"Content-Type": "video/mp4"},
                                         content=iter([FAKE_MP4] * 50))
    with pytest.raises(StorageError, match="No space"):
        download("https://cdn.test/a", tmp_path, "a.mp4", mock(no_length), SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_writeback_fails_the_download(monkeypatch):
    """Linux reports a writeback error to one sync only: the sink's own sync must not swallow it, or the
    final fsync succeeds and a damaged file counts as downloaded."""
    from reelbatch.worker import storage

    monkeypatch.setattr(storage, "SYNC_EVERY", 1)
    with open(os.devnull, "wb") as out:    # cannot be synced (EINVAL), as a failed writeback
        sink = storage._Sink(out)
        sink.put(b"x" * 10)
        sink._threads[1].join(5)           # the sync thread has met the error and stopped
        with pytest.raises(OSError):
            sink.close()
