"""Notifications: one message when a batch ends, one when it pauses, to Apprise URLs (Slack, email,
ntfy, Discord, a JSON webhook ``json://host/path``, ...).

Notification URLs carry secrets (webhook tokens), so they live only in the process that sends:
the manifest's ``notify:`` is read by `reelbatch run` (which has the manifest), and each process
adds its own ``REELBATCH_NOTIFY``; the fleet's `reelbatch scheduler` tells its own when it sees a
batch end or pause (``BatchWatcher``). No URL is written to Redis, logs, results or reports: a
notifier is named in a log line by its position and scheme only. A notifier that fails is logged
and never fails the batch. Each message is sent once per batch, event and last outcome (a store
flag), so a watcher and a rerun do not repeat it, while a retry that ends again is news.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reelbatch.jobs.manifest import Manifest
from reelbatch.jobs.settings import Settings
from reelbatch.jobs.state import IN_FLIGHT, ItemState as S
from reelbatch.jobs.store import REDIS_DOWN, Store
from reelbatch.scheduler.views.progress import settled
from reelbatch.scheduler.views.status import ran, summary
from reelbatch.worker.results import RESULTS

log = logging.getLogger("reelbatch.notify")
ENDED, PAUSED = "ended", "paused"
SEND_TIMEOUT_S = 10
WATCH_EVERY_S = 30.0
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str = "info"   # Apprise NotifyType: info | success | warning | failure


def parse_urls(text: str | None) -> list[str]:
    """Apprise URLs from REELBATCH_NOTIFY: separated by spaces or commas."""
    return [url for url in _SEPARATORS.split(text or "") if url]


def urls_for(manifest_urls: Iterable[str], settings: Settings) -> list[str]:
    """The manifest's URLs and the environment's, each once, in that order."""
    env = parse_urls(settings.notify.get_secret_value() if settings.notify else None)
    return list(dict.fromkeys([*manifest_urls, *env]))


def scheme(url: str) -> str:
    """What a log line may say about a URL: its scheme, never its host, path or tokens."""
    head, sep, _ = url.partition("://")
    return f"{head}://" if sep and head.isalnum() else "an unparseable URL"


def _apprise():
    """The apprise module, with the logging that may quote a URL and its token silenced: apprise's
    own, and urllib3's (under requests), whose debug lines name every request path."""
    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return apprise


def check_urls(manifest: Manifest) -> None:
    """Refuse (exit 2, with the manifest line) a ``notify:`` entry Apprise does not understand."""
    apprise = _apprise()
    for n, url in enumerate(manifest.notify):
        if not apprise.Apprise().add(url):
            raise manifest.error(f"not an Apprise URL Apprise can send to ({scheme(url)})", ("notify", n))


def message(store: Store, batch: str, event: str, reason: str | None = None) -> Message:
    """Title with the batch name; body with counts, money, failures by reason, the results path."""
    info, meta = summary(store, batch), store.batch(batch)
    counts = ", ".join(f"{n} {state}" for state, n in info["counts"].items() if n) or "no items"
    lines = [f"paused: {reason}" if event == PAUSED and reason else None,
             f"{info['total']} items: {counts}", f"cost: {info['spend']}"]
    if info["failures"]:
        lines.append("failures:")
        lines += [f"  {f['count']} × {f['reason']} (e.g. {', '.join(f['examples'])})" for f in info["failures"]]
    took = ran(*store.pace(batch))
    lines.append(" · ".join(t for t in (took, f"created {info['created_at']}" if info["created_at"] else "") if t))
    if meta is not None:
        lines.append(f"results: {Path(meta.output) / RESULTS}")
    cancelled = meta is not None and meta.cancelled
    verb = "paused" if event == PAUSED else "cancelled" if cancelled else "finished"
    return Message(f"reelbatch: {batch} {verb}", "\n".join(line for line in lines if line),
                   kind(event, info["counts"], cancelled))


def kind(event: str, counts: dict[str, int], cancelled: bool) -> str:
    """Apprise's notification type: success when every item succeeded, failure when none did and
    some failed, warning otherwise (failures, a pause, a cancel)."""
    if event == PAUSED or cancelled:
        return "warning"
    if not counts.get(S.FAILED.value):
        return "success" if counts.get(S.SUCCEEDED.value) else "info"
    return "warning" if counts.get(S.SUCCEEDED.value) else "failure"


def send(urls: list[str], msg: Message) -> int:
    """Send ``msg`` to every URL, each on its own; returns how many took it. Failures are logged
    (position and scheme only) and never raised."""
    apprise = _apprise()
    delivered = 0
    for n, url in enumerate(urls, 1):
        where = f"notifier {n} of {len(urls)} ({scheme(url)})"
        try:
            notifier = apprise.Apprise()
            if not notifier.add(url):
                log.warning("%s is not an Apprise URL; not notified", where)
            elif notifier.notify(body=msg.body, title=msg.title, notify_type=apprise.NotifyType(msg.kind),
                                 timeout=SEND_TIMEOUT_S):
                delivered += 1
            else:
                log.warning("%s did not take the message", where)
        except Exception as exc:  # noqa: BLE001 - a notifier must never fail the batch
            log.warning("%s failed: %s", where, type(exc).__name__)
    return delivered


def notify_batch(store: Store, batch: str, urls: list[str], event: str, reason: str | None = None,
                 scope: str = "") -> bool:
    """Tell ``urls`` that ``batch`` ended or paused (``reason``: provider unreachable, disk full,
    budget reached...). Idempotent per batch, event and last outcome, for each ``scope`` (the
    sender: run, scheduler); False when there was nothing to send or it was sent already."""
    if not urls:
        return False
    notice = f"{scope}:{event}:{store.outcome_cursor(batch)}"
    if not store.claim_notice(batch, notice):
        return False
    send(urls, message(store, batch, event, reason))
    return True


def run_outcome(store: Store, batch: str) -> tuple[str, str | None]:
    """How a finished `run` left the batch: ended, or paused with items waiting for the budget."""
    waiting = store.counts(batch)[S.PENDING]
    if waiting:
        return PAUSED, f"budget reached: {waiting} items wait; raise limits.max_cost_usd and run again"
    return ENDED, None


def notify_run(store: Store, batch: str, manifest_urls: Iterable[str], settings: Settings) -> bool:
    """After `reelbatch run` watched a batch to its end: tell the manifest's and the environment's
    URLs whether it ended or paused."""
    urls = urls_for(manifest_urls, settings)
    if not urls:
        return False
    event, reason = run_outcome(store, batch)
    return notify_batch(store, batch, urls, event, reason, scope="run")


class BatchWatcher:
    """The fleet scheduler's look at every batch: a batch it saw open that has settled (every
    item terminal, or only items waiting for the budget) is reported, once, to its own
    REELBATCH_NOTIFY. Batches that ended before it looked are not news."""

    def __init__(self, store: Store, urls: list[str], every_s: float = WATCH_EVERY_S):
        self.store, self.urls, self.every_s = store, urls, every_s
        self.open: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[tuple[str, str]]:
        """One look: (batch, event) of each notification sent."""
        sent = []
        for batch in self.store.batches():
            meta = self.store.batch(batch)
            if meta is not None and meta.paused:     # a provider away, a full disk
                if notify_batch(self.store, batch, self.urls, PAUSED, meta.paused, scope="scheduler"):
                    sent.append((batch, PAUSED))
                continue
            counts = self.store.counts(batch)
            if any(counts[s] for s in IN_FLIGHT) or not settled(self.store, batch):
                self.open.add(batch)
            elif batch in self.open:
                self.open.discard(batch)
                event, reason = run_outcome(self.store, batch)
                if notify_batch(self.store, batch, self.urls, event, reason, scope="scheduler"):
                    sent.append((batch, event))
        return sent

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except REDIS_DOWN as exc:
                log.warning("batch watcher: Redis unavailable (%s); trying again", type(exc).__name__)

    @classmethod
    def start(cls, store: Store, settings: Settings, every_s: float = WATCH_EVERY_S) -> BatchWatcher:
        """Start watching in a thread when REELBATCH_NOTIFY names someone to tell."""
        watcher = cls(store, urls_for([], settings), every_s)
        if watcher.urls:
            watcher.check()   # what is open now
            watcher._thread = threading.Thread(target=watcher._loop, name="batch-watcher", daemon=True)
            watcher._thread.start()
        return watcher

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

