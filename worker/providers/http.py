"""The shared HTTP layer: client construction and the one seam where failures enter the error tree.

Every provider call goes through :class:`HttpSeam`, which maps failures like this:

    httpx exception (no response)
    ├─ ConnectError, ConnectTimeout, ProxyError     nothing was sent; the host cannot be reached
    │                                                                              -> ProviderUnreachable
    ├─ PoolTimeout                                  nothing was sent (our pool)  -> TransientProviderError
    ├─ WriteError, WriteTimeout                     the request was still being sent: the provider
    │                                               never had a whole request, nothing was created
    │                                                                            -> TransientProviderError
    ├─ UnsupportedProtocol, LocalProtocolError                 our own bug/config -> PermanentProviderError
    └─ any other TransportError / DecodingError / ...           the request may have arrived:
         submit (POST that may create a paid generation)                          -> SubmitOutcomeUnknown
         any other call                                                           -> TransientProviderError
    HTTP response
    ├─ body names missing credits (any status)          -> NoCredits (an account problem: the batch pauses)
    ├─ body names content policy (any status), or invalid input (on submit)
    │                                                    -> PermanentProviderError
    ├─ 401, 403                                          -> KeyRefused (an account problem, once confirmed)
    ├─ 404 "Model not found" on submit                   -> ModelGone (an account problem)
    ├─ 429                                               -> RateLimited(retry_after from Retry-After)
    ├─ 408, 5xx                                          -> TransientProviderError, except on submit:
    │    503 (and 429, 408) are refusals: nothing was created               -> transient, safe to retry
    │    5xx whose text the AI/ML API documents as a refusal ("The model is under maintenance",
    │    "Coupon code not found", 504 "Generation timeout")                  -> PermanentProviderError
    │    500, 502, 504 and other 5xx may hide a created generation          -> SubmitOutcomeUnknown
    ├─ 3xx                                               -> PermanentProviderError (base URL is wrong)
    └─ other 4xx (400, 401, 403, 404, 422, ...)          -> PermanentProviderError
    2xx whose body is an error envelope and carries no result (Oxen's {"generations": [], "error": ...})
                                                         -> as a 4xx: a refusal (RateLimited or NoCredits
                                                            if it says so)

A 2xx submit answer whose body cannot be read is also SubmitOutcomeUnknown: the generation probably
exists but its id is lost. The engine reconciles those with the provider's ``find`` helper.

``failure_kind`` sorts the text of any failure (an HTTP error or a generation's failure message)
into content_policy, no_credits, invalid_input (all permanent) or generation_failed (worth a retry).

Result downloads use a separate client without credentials; a ``HostCredential`` lends the provider's
key to a download only on the provider's own API host, never across a redirect to another host.

The API key never appears in a message, a log line or a repr: requests are described by method and
URL only, and every message the seam builds is scrubbed of the key in case a server echoes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from reelbatch.jobs.errors import ProviderError, SubmitOutcomeUnknown, TransientProviderError
from reelbatch.worker.providers.description import describe, error_message, request_id, request_of, scrub
from reelbatch.worker.providers.error_map import (
    AUTH_REFUSED,
    check_answer,
    error_for_body,
    error_for_exception,
    error_for_response,
    failure_kind,
    generation_failure,
    parse_retry_after,
    permanent_reason,
)
from reelbatch.worker.providers.transport import (
    BearerAuth,
    HostCredential,
    build_client,
    build_download_client,
    host_credential,
    timeout_from,
)

__all__ = [   # the names providers and the engine import from here (the seam's face)
    "AUTH_REFUSED", "BearerAuth", "HostCredential", "HttpSeam", "build_client", "build_download_client",
    "check_answer", "describe", "error_for_body", "error_for_exception", "error_for_response", "error_message",
    "failure_kind", "generation_failure", "host_credential", "parse_retry_after", "permanent_reason", "scrub",
    "timeout_from",
]

log = logging.getLogger(__name__)


class HttpSeam:
    """A provider's client plus the mapping of every failure into the error tree."""

    def __init__(self, provider: str, client: httpx.Client, secrets: Sequence[str] = (),
                 tally: Callable[[str], None] | None = None):
        self.provider, self.client, self._secrets = provider, client, tuple(s for s in secrets if s)
        self._tally = tally   # told each answer's outcome: ok | transient | permanent (metrics)

    def _count(self, error: ProviderError | None) -> None:
        if self._tally is not None:
            self._tally("ok" if error is None else
                        "transient" if isinstance(error, TransientProviderError) else "permanent")

    def __repr__(self) -> str:
        return f"HttpSeam(provider={self.provider!r}, base_url={str(self.client.base_url)!r})"

    @contextmanager
    def mapped(self, submit: bool = False) -> Iterator[None]:
        """Turn httpx exceptions raised inside the block into the error tree."""
        try:
            yield
        except httpx.HTTPError as exc:
            error = error_for_exception(self.provider, exc, request_of(exc), submit, self._secrets)
            self._count(error)
            raise error from None

    def check(self, response: httpx.Response, submit: bool = False) -> None:
        error = error_for_response(self.provider, response, submit, self._secrets)
        self._count(error)
        if error is not None:
            log.info("%s -> %s", describe(response.request), error)
            raise error

    def json(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> Any:
        """Send, check the status, and return the JSON body."""
        return self.answer(method, url, submit, **kwargs)[0]

    def send(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> httpx.Response:
        """Send and check the status; the body is left to the caller."""
        with self.mapped(submit):
            response = self.client.request(method, url, **kwargs)
        self.check(response, submit)
        return response

    def answer(self, method: str, url: str, submit: bool = False, **kwargs: Any) -> tuple[Any, httpx.Response]:
        """Send, check the status, and return the JSON body with its response."""
        response = self.send(method, url, submit, **kwargs)
        try:
            return response.json(), response
        except ValueError:
            cls = SubmitOutcomeUnknown if submit else TransientProviderError
            raise cls(self.provider, response.status_code, request_id(response, None),
                      f"{describe(response.request)}: answer is not JSON") from None

    def scrubbed(self, text: str) -> str:
        """``text`` with the key redacted (a server may echo it), cut to the message length."""
        return scrub(text, self._secrets)

    def refused(self, response: httpx.Response, body: Any) -> ProviderError:
        """A 2xx answer that is an error envelope, mapped like an error response."""
        error = error_for_body(self.provider, response, body, self._secrets)
        log.info("%s -> %s", describe(response.request), error)
        return error

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response with its status checked; errors while reading are mapped too."""
        with self.mapped(), self.client.stream(method, url, **kwargs) as response:
            if not response.is_success:
                response.read()
                self.check(response)
            yield response

    def close(self) -> None:
        self.client.close()
