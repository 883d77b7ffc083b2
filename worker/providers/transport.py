"""Transport configuration: the clients a provider talks over (explicit timeouts, a user agent, the
key as a header that never shows in a repr) and the download client that carries no key, with the
one host a ``HostCredential`` lends the key to."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from reelbatch.jobs.settings import Settings

USER_AGENT = "reelbatch/0.1"

class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>`` (fal: ``Key <key>``) on every request; the key never shows
    in a repr."""

    def __init__(self, key: str, scheme: str = "Bearer"):
        self._key, self._scheme = key, scheme

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"{self._scheme} {self._key}"
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth(scheme={self._scheme!r}, key=<redacted>)"


def timeout_from(settings: Settings) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts: no call may hang forever."""
    return httpx.Timeout(connect=settings.http_connect_timeout_s, read=settings.http_read_timeout_s,
                         write=settings.http_write_timeout_s, pool=settings.http_pool_timeout_s)


def build_client(settings: Settings, base_url: str, key: str | None,
                 transport: httpx.BaseTransport | None = None, scheme: str = "Bearer") -> httpx.Client:
    """One pooled client per provider per worker process. Redirects are never followed."""
    return httpx.Client(base_url=base_url, auth=BearerAuth(key, scheme) if key else None,
                        timeout=timeout_from(settings), follow_redirects=False,
                        headers={"User-Agent": USER_AGENT}, transport=transport)


def build_download_client(settings: Settings,
                          transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client without credentials, for result URLs (which live on other hosts)."""
    return httpx.Client(timeout=timeout_from(settings), follow_redirects=False,
                        headers={"User-Agent": USER_AGENT}, transport=transport)


class HostCredential:
    """A provider's key, lent to downloads on exactly one origin (scheme, host and port): the
    provider's own API host, where Oxen's REST result_url lives. Never shown in a repr."""

    def __init__(self, base_url: str, key: str):
        url = httpx.URL(base_url)
        self.origin = (url.scheme, url.host.lower(), url.port)
        self._key = key

    def applies_to(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host.lower(), url.port) == self.origin

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        return f"HostCredential({scheme}://{host}{f':{port}' if port else ''}, key=<redacted>)"


def host_credential(base_url: str, key: str | None) -> HostCredential | None:
    return HostCredential(base_url, key) if key else None
