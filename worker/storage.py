"""Bringing results home: streamed download with checks, atomic rename, poster frames.

``download`` streams in constant memory to a temporary file beside the target, hashing and writing
in a second thread while the first reads (``_Sink``), then renames into place with ``os.replace``.
Its checks:

- only ``https`` URLs, or ``http`` to a loopback host (the simulator); every redirect hop re-checked;
- a size cap, against Content-Length and while streaming; a body shorter than Content-Length fails;
- Content-Type ``video/*``; ``application/octet-stream`` (or none) is accepted only when the first
  bytes carry a video container signature (MP4/MOV ``ftyp``, Matroska/WebM), since presigned
  object-store URLs often serve videos with that generic type;
- 403/404/410 mean the URL expired (``ResultUrlExpired``: ask the provider for a fresh one); other
  failures are ``StorageError`` and worth a retry;
- the file name is sanitised, the target stays inside ``dest_dir`` and may not be a symlink.

Credentials: none by default (presigned URLs, CDNs). With a ``HostCredential`` (the provider's key bound
to its own API host: Oxen's REST ``result_url`` is on hub.oxen.ai) the key goes with the request to that
exact origin only, and is dropped for good at the first redirect off it (an object store, a CDN).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import ipaddress
import os
import queue
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import httpx
from imageio_ffmpeg import get_ffmpeg_exe

from reelbatch.jobs import names
from reelbatch.jobs.errors import NotAVideo, OutputUnwritable, ResultUrlExpired, StorageError, UnsafeResult
from reelbatch.jobs.files import NotARegularFile, atomic_write
from reelbatch.jobs.settings import Settings
from reelbatch.worker.container import check_video
from reelbatch.worker.providers.http import HostCredential

MAX_REDIRECTS = 5
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
EXPIRED = frozenset({403, 404, 410})
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
FFMPEG_TIMEOUT_S = 120
BUFFERED = 4                 # pieces (of download_chunk_bytes) waiting to be hashed and written
SYNC_EVERY = 64 * (1 << 20)  # bytes written between two writeback starts
SMALL_BYTES = 16 * (1 << 20) # a body declared this small is hashed and written in the read loop


@dataclass(frozen=True)
class StoredFile:
    """A downloaded result, checked and in place."""

    path: Path
    sha256: str
    bytes: int
    content_type: str


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: httpx.URL, http_hosts: tuple[str, ...] = ()) -> None:
    """https anywhere; plain http only to 127.0.0.0/8, ::1, localhost, or hosts explicitly allowed
    (``download_http_hosts``: the compose demo's simulator)."""
    if url.scheme == "https" or (url.scheme == "http" and (is_loopback(url.host) or url.host in http_hosts)):
        return
    raise UnsafeResult(f"refusing to download from {url.scheme}://{url.host}: only https "
                       "(or http on loopback) is followed")


def safe_name(file_name: str) -> str:
    """A plain file name: no directories, no leading dots, only [A-Za-z0-9._-]."""
    name = names.file_name(Path(file_name).name)
    if not name:
        raise UnsafeResult(f"unusable file name {file_name!r}")
    return name


def target_path(dest_dir: Path, file_name: str) -> Path:
    """Where the file goes: inside the resolved ``dest_dir``, never through a symlink."""
    root = dest_dir.resolve()
    target = root / safe_name(file_name)
    if target.parent != root:
        raise UnsafeResult(f"{file_name!r} would land outside {root}")
    if target.is_symlink():
        raise UnsafeResult(f"refusing to write through the symlink {target}")
    return target


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _open(url: str, client: httpx.Client, http_hosts: tuple[str, ...] = (),
          credential: HostCredential | None = None) -> httpx.Response:
    """Follow redirects by hand, checking each hop; the caller closes the response. The credential
    rides along while every hop so far stayed on its origin."""
    first = current = httpx.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        check_url(current, http_hosts)
        if is_loopback(current.host) and not is_loopback(first.host):
            raise UnsafeResult(f"refusing a redirect from {first.host} into this machine ({current.host})")
        if credential is not None and not credential.applies_to(current):
            credential = None
        headers = {"Accept-Encoding": "identity", **(credential.headers() if credential else {})}
        request = client.build_request("GET", current, headers=headers)
        response = client.send(request, stream=True, follow_redirects=False, auth=None)
        if not response.is_redirect:
            return response
        response.close()
        current = current.join(response.headers["Location"])
    raise UnsafeResult(f"more than {MAX_REDIRECTS} redirects from {httpx.URL(url).host}")


def _check_response(response: httpx.Response, settings: Settings) -> int | None:
    """Status, type and declared size; returns Content-Length when given."""
    host = response.request.url.host
    if response.status_code in EXPIRED:
        raise ResultUrlExpired(f"{host} answered {response.status_code}: the result URL expired")
    if not response.is_success:
        raise StorageError(f"{host} answered {response.status_code}")
    media_type = _media_type(response)
    if not (media_type.startswith("video/") or media_type in GENERIC_TYPES):
        raise NotAVideo(f"{host} served {media_type!r}, not a video")
    length = response.headers.get("Content-Length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > settings.download_max_bytes:
        raise UnsafeResult(f"result is {declared} bytes, over the {settings.download_max_bytes} cap")
    return declared


class _Sink:
    """Hashes and writes what the read loop hands it, in a thread of its own (hashlib and file
    writes release the GIL on large buffers, so reading, hashing and writing overlap), and starts
    the disk's writeback every ``SYNC_EVERY`` bytes from a third thread, so the final fsync only
    flushes the tail. At most ``BUFFERED`` pieces wait: memory stays flat whatever the size."""

    def __init__(self, out: BinaryIO):
        self.out, self.digest = out, hashlib.sha256()
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=BUFFERED)
        self._flush_due, self._done = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._drain, daemon=True, name="rb-download-sink"),
                         threading.Thread(target=self._flush, daemon=True, name="rb-download-flush")]
        for thread in self._threads:
            thread.start()

    def put(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(data)

    def close(self) -> str:
        """Wait until everything handed over is hashed and written; the sha256."""
        self._queue.put(None)
        self._threads[0].join()
        self._done.set()
        self._flush_due.set()
        self._threads[1].join()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest()

    def _drain(self) -> None:
        unsynced = 0
        while (data := self._queue.get()) is not None:
            if self.error is not None:
                continue   # keep taking pieces so the read loop is never stuck on a full queue
            try:
                self.digest.update(data)
                self.out.write(data)
            except BaseException as exc:   # noqa: BLE001 - handed to the read loop, which raises it
                self.error = exc
                continue
            unsynced += len(data)
            if unsynced >= SYNC_EVERY:
                unsynced = 0
                self._flush_due.set()

    def _flush(self) -> None:
        while self._flush_due.wait() and not self._done.is_set():
            self._flush_due.clear()
            try:
                os.fdatasync(self.out.fileno())   # writes back what is written so far, as it goes
            except OSError as exc:   # reported once per file: the final fsync would not see it again
                self.error = self.error or exc
                return


def _stream_to(response: httpx.Response, out: BinaryIO, settings: Settings,
               declared: int | None = None) -> tuple[str, int]:
    """Hash and write the body as it comes: in the read loop for a small one (threads cost more
    than they save there), in a ``_Sink`` otherwise."""
    if declared is not None and declared <= SMALL_BYTES:
        return _stream_inline(response, out, settings)
    sink, size, pending, held = _Sink(out), 0, [], 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > settings.download_max_bytes:
                raise UnsafeResult(f"result passed the {settings.download_max_bytes} byte cap")
            pending.append(chunk)
            held += len(chunk)
            if held >= settings.download_chunk_bytes:
                sink.put(b"".join(pending))
                pending, held = [], 0
        if pending:
            sink.put(b"".join(pending))
    finally:
        sha256 = sink.close()
    return sha256, size


def _stream_inline(response: httpx.Response, out: BinaryIO, settings: Settings) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > settings.download_max_bytes:
            raise UnsafeResult(f"result passed the {settings.download_max_bytes} byte cap")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), size


def _fetch(url: str, client: httpx.Client, out: BinaryIO, settings: Settings,
           credential: HostCredential | None = None) -> tuple[str, int, str]:
    try:
        response = _open(url, client, tuple(settings.download_http_hosts), credential)
        try:
            declared = _check_response(response, settings)
            sha256, size = _stream_to(response, out, settings, declared)
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise StorageError(f"download failed: {type(exc).__name__}: {exc}") from None
    if declared is not None and size != declared:
        raise StorageError(f"truncated download: {size} of {declared} bytes")
    out.flush()
    check_video(out, size, response.request.url.host)
    return sha256, size, _media_type(response) or "application/octet-stream"


def download(url: str, dest_dir: Path, file_name: str, client: httpx.Client,
             settings: Settings, credential: HostCredential | None = None) -> StoredFile:
    """Download ``url`` to ``dest_dir/<sanitised file_name>``, checked and atomically renamed.
    ``credential``: the provider's key for its own host only (``Provider.download_credential``)."""
    try:
        return _download(url, dest_dir, file_name, client, settings, credential)
    except OSError as exc:
        if exc.errno in OUTPUT_ERRNOS:
            raise OutputUnwritable(f"{dest_dir}: {exc.strerror}") from None
        raise


def _download(url: str, dest_dir: Path, file_name: str, client: httpx.Client, settings: Settings,
              credential: HostCredential | None) -> StoredFile:
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = target_path(dest_dir, file_name)
    remove_partials(target)
    try:
        with atomic_write(target, binary=True, fsync=True) as out:
            sha256, size, content_type = _fetch(url, client, cast(BinaryIO, out), settings, credential)
            target_path(dest_dir, file_name)  # re-check just before the rename
    except NotARegularFile as exc:
        raise UnsafeResult(f"refusing to write through the symlink {target}: {exc}") from None
    return StoredFile(path=target, sha256=sha256, bytes=size, content_type=content_type)


def remove_partials(target: Path) -> None:
    """Remove what an abandoned download of ``target`` left (its worker died mid-transfer): the one
    downloading now holds the item's task lease, so no other download of it is running."""
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        part.unlink(missing_ok=True)


def poster_frame(video: Path, out: Path) -> Path:
    """The first frame of ``video`` as an image (JPEG or PNG, from ``out``'s suffix)."""
    tmp = out.with_name(f".part-{out.name}")
    command = [get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(video),
               "-frames:v", "1", "-update", "1", "-q:v", "3", str(tmp)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise StorageError(f"ffmpeg took over {FFMPEG_TIMEOUT_S}s on {video.name}") from None
    if done.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StorageError(f"no poster frame for {video.name}: {message[0]}")
    os.replace(tmp, out)
    return out
