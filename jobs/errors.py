"""The error tree. Every failure reelbatch reports is one of these.

    ReelbatchError
    ├─ BadInput                 bad input or usage (exit 2): carries file, line, field; nothing was submitted
    │  └─ ManifestError         the manifest (or a file it names) is wrong
    │     └─ ManifestErrors     several at once (every bad value of a plan), one line each
    ├─ ProviderError(provider, status_code, request_id, message)
    │  ├─ TransientProviderError    timeouts, connection errors, 429, 5xx: retried with backoff
    │  │  ├─ RateLimited(retry_after)
    │  │  ├─ ProviderUnreachable    connection refused, DNS, no route: waited out; the batch pauses
    │  │  └─ SubmitOutcomeUnknown   the submit request was sent but no answer came back
    │  └─ PermanentProviderError    400/401/403/404/422, content policy, no credits: not retried
    │     ├─ AccountProblem         the account cannot go on: the batch pauses for the provider, items
    │     │  │                      keep their state (an unbilled one goes back to pending)
    │     │  ├─ KeyRefused          401/403: the key was revoked or rotated (key_refused)
    │     │  ├─ ModelGone           404 "Model not found" on submit (model_gone)
    │     │  └─ NoCredits           out of credits: a refused submit or a generation failed for it
    │     │                         (no_credits; also a GenerationFailed)
    │     ├─ GenerationFailed       the provider ran it and reports failure: resubmitted up to max_attempts
    │     │  ├─ ContentRefused      ... for its content (content_policy): never resubmitted by itself
    │     │  └─ InvalidInput        ... as invalid at run time (invalid_input): never resubmitted by itself
    ├─ BudgetExceeded           submitting would pass limits.max_cost_usd: the item waits
    ├─ GenerationStuck          in flight past polling.give_up_after_s: the item fails (kind stuck), its
    │                           generation kept; `retry --kind stuck` polls it again, free
    ├─ InternalError            a step kept raising something unexpected: the item fails (kind internal)
    │  └─ DeliveryLimitExceeded a task message kept stopping its worker
    ├─ StorageError
    │  ├─ ResultUrlExpired      the result URL no longer serves the file: ask the provider for a fresh one
    │  ├─ NotAVideo             what was served is empty, HTML, or not an MP4/WebM container: retried
    │  ├─ DownloadFailed        the download budget is spent; `retry` downloads from the generation again
    │  ├─ ResultMissing         the provider no longer has a finished generation (`retry --kind missing`)
    │  ├─ OutputUnwritable      the output folder is full or read-only: the batch pauses, nothing is lost
    │  └─ UnsafeResult          the result cannot be accepted (scheme, host, size, path): not retried
    └─ ServiceUnavailable       the broker or another service cannot be reached (exit code 3)

Every constructor passes all of its arguments to ``super().__init__`` so Celery can rebuild them.
"""

from __future__ import annotations


class ReelbatchError(Exception):
    """Base of every error reelbatch raises on purpose."""

    kind = "error"


class BadInput(ReelbatchError):
    """Bad input or usage: a manifest, a setting, an argument. Nothing was submitted. ``str()`` is the
    one line the command line prints (``file:line: field: what was expected``); the command line
    exits 2 on it. ``file``, ``line`` and ``field`` are empty/None where they do not apply."""

    kind = "bad_input"

    def __init__(self, message: str, file: str = "", line: int | None = None, field: str = ""):
        super().__init__(message, file, line, field)
        self.message, self.file, self.line, self.field = message, file, line, field

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        parts = [p for p in (where, self.field) if p]
        return ": ".join(parts + [self.message])


class ManifestError(BadInput):
    """Bad input: the manifest (or a file it names) is wrong. Nothing was submitted."""

    kind = "manifest"


class ManifestErrors(ManifestError):
    """Several input errors found in one pass, each with its file and line; reads as the first."""

    def __init__(self, errors: list[ManifestError]):
        first = errors[0]
        super().__init__(first.message, first.file, first.line, first.field)
        self.args = (errors,)
        self.errors = errors

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


class ErrorCollector:
    """Collects the ManifestErrors raised inside ``collect()`` (each distinct one once), up to
    ``limit``; ``raise_any()`` raises them together."""

    def __init__(self, limit: int = 50):
        self.errors: list[ManifestError] = []
        self.seen: set[str] = set()
        self.limit = limit

    def add(self, exc: ManifestError) -> None:
        if str(exc) not in self.seen and len(self.errors) < self.limit:
            self.seen.add(str(exc))
            self.errors.append(exc)

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ManifestErrors(self.errors)


class ProviderError(ReelbatchError):
    """A provider call failed. Never carries the API key."""

    kind = "provider"

    def __init__(self, provider: str, status_code: int | None = None, request_id: str | None = None,
                 message: str = ""):
        super().__init__(provider, status_code, request_id, message)
        self.provider, self.status_code, self.request_id, self.message = (
            provider, status_code, request_id, message)

    def __str__(self) -> str:
        code = f" {self.status_code}" if self.status_code else ""
        rid = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.provider}{code}: {self.message}{rid}"


class TransientProviderError(ProviderError):
    """Timeouts, connection errors, 429 and 5xx: worth retrying with backoff."""

    kind = "transient"


class RateLimited(TransientProviderError):
    """429: retry after ``retry_after`` seconds when the provider says so."""

    kind = "rate_limited"

    def __init__(self, provider: str, status_code: int | None = 429, request_id: str | None = None,
                 message: str = "rate limited", retry_after: float | None = None):
        ReelbatchError.__init__(self, provider, status_code, request_id, message, retry_after)
        self.provider, self.status_code, self.request_id, self.message = (
            provider, status_code, request_id, message)
        self.retry_after = retry_after


class ProviderUnreachable(TransientProviderError):
    """The provider's host cannot be reached at all (refused, no such host, no route): not the
    item's fault, so it does not use up the item's retries; a long outage pauses the batch."""

    kind = "unreachable"


class SubmitOutcomeUnknown(TransientProviderError):
    """The submit request went out but no answer came back: a paid generation may exist."""

    kind = "submit_unknown"


class PermanentProviderError(ProviderError):
    """400/401/403/404/422, content policy, no credits: retrying cannot help."""

    kind = "permanent"


class AccountProblem(PermanentProviderError):
    """The provider account cannot take work (key, credits, model): the batch pauses, not the item."""

    kind = "account"


class KeyRefused(AccountProblem):
    """401/403: the provider refuses the key (revoked or rotated since the run started)."""

    kind = "key_refused"


class ModelGone(AccountProblem):
    """The provider no longer knows the model (404 "Model not found" on submit)."""

    kind = "model_gone"


class GenerationFailed(PermanentProviderError):
    """The provider ran the generation and reports that it failed."""

    kind = "generation_failed"


class ContentRefused(GenerationFailed):
    """The provider refused the content (its safety or content policy)."""

    kind = "content_policy"


class NoCredits(GenerationFailed, AccountProblem):
    """The account has no credits left: a submit refused for it, or a generation failed for it
    (unbilled)."""

    kind = "no_credits"


class InvalidInput(GenerationFailed):
    """The provider found the request invalid when it ran it."""

    kind = "invalid_input"


class BudgetExceeded(ReelbatchError):
    """Submitting more would take the batch past ``limits.max_cost_usd``."""

    kind = "budget"


class GenerationStuck(ReelbatchError):
    """The generation stayed in flight past ``polling.give_up_after_s``; it is kept, not cancelled."""

    kind = "stuck"


class InternalError(ReelbatchError):
    """A step raised something unexpected more often than the item's budget allows."""

    kind = "internal"


class DeliveryLimitExceeded(InternalError):
    """A task message was delivered more often than the cap: it kept stopping its worker."""


class StorageError(ReelbatchError):
    """A result could not be downloaded, checked or stored."""

    kind = "storage"


class ResultUrlExpired(StorageError):
    """The result URL answered 403/404/410: the provider must be asked for a fresh URL."""

    kind = "url_expired"


class NotAVideo(StorageError):
    """The body is empty, an HTML page, or not a video container: a CDN hiccup, worth a retry."""

    kind = "not_a_video"


class DownloadFailed(StorageError):
    """Every download attempt failed; the generation is kept and can be downloaded again."""

    kind = "download"


class ResultMissing(StorageError):
    """The provider no longer has the finished generation (or its file)."""

    kind = "missing"


class OutputUnwritable(StorageError):
    """The output folder cannot be written (full, read-only, permissions): not the item's fault."""

    kind = "output"


class UnsafeResult(StorageError):
    """The result URL or file breaks a safety rule (scheme, host, size, type, path): not retried."""

    kind = "unsafe_result"


class ServiceUnavailable(ReelbatchError):
    """The broker or another service could not be reached."""

    kind = "service"


# Failure kinds that retrying cannot fix: `reelbatch retry` skips them unless asked.
PERMANENT_FAILURE_KINDS = frozenset({"content_policy", "no_credits", "invalid_input"})
PERMANENT_KINDS = PERMANENT_FAILURE_KINDS | {"permanent", "unsafe_result", "manifest",
                                             "cancel_unsupported"}   # (the last: items of earlier versions)
# Kinds meaning the provider ran the generation and it failed: a retry submits a new one.
REMOTE_FAILURE_KINDS = PERMANENT_FAILURE_KINDS | {"generation_failed"}
