"""The Python API: what the command line does, as functions that return values.

    import reelbatch

    plan = reelbatch.plan("batch.yaml")            # or the manifest as a dict; nothing is submitted
    batch = reelbatch.run(plan)                     # blocks; embedded Redis and a worker when no broker
    batch.status(); batch.results(); batch.retry(); batch.to_dataset()

Errors are exceptions, as the command line's exit codes:

    ===========================================  =====================================  ==========
    what happened                                the API                                CLI exits
    ===========================================  =====================================  ==========
    every item succeeded                         returns a Batch                        0
    the batch finished with failed items         returns a Batch (status().failed)      1
    bad input or usage; nothing was submitted    raises BadInput (file, line, field)    2
    a broker or a service cannot be reached      raises ServiceUnavailable              3
    the batch paused (provider down, disk full)  returns a Batch (status().paused)      3
    Ctrl-C (KeyboardInterrupt)                   raises KeyboardInterrupt, state kept   130
    ===========================================  =====================================  ==========
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from reelbatch.jobs.errors import BadInput, ServiceUnavailable
from reelbatch.jobs.files import NotARegularFile
from reelbatch.jobs.manifest import MAPPING_SOURCE, manifest_from_mapping
from reelbatch.jobs.settings import Settings, settings_error
from reelbatch.jobs.store import BatchMeta
from reelbatch.scheduler import plan as planning
from reelbatch.scheduler.broker import check_broker
from reelbatch.scheduler.embedded import EmbeddedRedis
from reelbatch.scheduler.records import BatchStatus, CancelReport, Plan, PlannedItem, Result, RetryReport
from reelbatch.worker.app import use_broker
from reelbatch.worker.runtime import Runtime

__all__ = ["plan", "run", "submit", "batch", "batches", "Batch", "Manifest", "close"]

Manifest = str | os.PathLike[str] | Mapping[str, Any] | Plan
EXPORT_FORMATS = ("jsonl", "csv", "dataset")


@contextmanager
def translated() -> Iterator[None]:
    """Failures as the API's exceptions, the way the command line turns them into exit codes."""
    try:
        yield
    except ValidationError as exc:     # a setting from the environment
        raise BadInput(settings_error(exc), field="environment") from None
    except NotARegularFile as exc:
        raise BadInput(str(exc)) from None
    except click.UsageError as exc:
        raise BadInput(exc.format_message()) from None
    except (OperationalError, RedisConnectionError) as exc:
        raise ServiceUnavailable(f"cannot reach the broker: {exc}") from None


def _settings() -> Settings:
    """Read afresh on every call (the command line's ``get_settings`` is read once per process): a
    notebook that sets a key or REELBATCH_DATA_DIR after its first call is heard."""
    with translated():
        return Settings()


def _mapping_plan(data: Mapping[str, Any], base_dir: str | Path | None, settings: Settings) -> planning.Plan:
    folder = Path(base_dir or Path.cwd()).absolute()
    try:
        return planning.plan_manifest(manifest_from_mapping(data, folder), settings)
    except BadInput as exc:
        if exc.file == str(folder / MAPPING_SOURCE):
            raise type(exc)(exc.message, MAPPING_SOURCE, exc.line, exc.field) from None
        raise


def _internal_plan(manifest: Manifest, base_dir: str | Path | None, settings: Settings) -> planning.Plan:
    if isinstance(manifest, Plan):
        internal: planning.Plan = manifest.internal
        return internal
    with translated():
        if isinstance(manifest, Mapping):
            return _mapping_plan(manifest, base_dir, settings)
        path = Path(manifest)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        return planning.plan_batch(path, settings)


def plan(manifest: Manifest, base_dir: str | Path | None = None) -> Plan:
    """Validate and expand a manifest, like ``reelbatch plan``; submits nothing.

    ``manifest`` is a path to a YAML file or the manifest as a dict (its relative paths, such as
    ``output`` and local images, are taken from ``base_dir``, default the working folder). Returns
    a ``Plan``: ``items`` (id, params, estimated cost), ``video_seconds``, ``estimated_cost_usd``.
    Raises ``BadInput`` (with ``file``, ``line``, ``field``) when the manifest is wrong."""
    internal = _internal_plan(manifest, base_dir, _settings())
    m = internal.manifest
    return Plan(m.name, m.provider, m.model, m.output, [PlannedItem.of(i) for i in internal.items],
                internal.total_video_seconds, internal.estimated_cost_usd, m.limits.max_cost_usd, internal)


def run(manifest: Manifest, progress: bool = True, *, adopt: bool = False, verify: bool = False,
        verbose: bool = False, base_dir: str | Path | None = None) -> Batch:
    """Run a batch on this machine and wait for it, like ``reelbatch run``; returns its ``Batch``.

    Without ``REELBATCH_BROKER_URL`` it starts the embedded Redis (shared with other commands on
    the same data folder) and a worker, and stops them when done. Running the same manifest again
    resumes: finished items are never generated again. ``progress``: a live bar in a notebook or
    terminal, the command line's plain lines in a log; ``False`` prints nothing. ``adopt`` takes
    over a batch of the same name started from another manifest; ``verify`` checks downloaded
    videos against their sha256. A paused batch returns (``status().paused`` says why); Ctrl-C
    stops the worker and raises ``KeyboardInterrupt`` with every submitted generation recorded."""
    from rich.console import Console

    from reelbatch.scheduler.progress import NORMAL, QUIET, VERBOSE
    from reelbatch.scheduler.run import BatchPaused, run_batch

    settings = _settings()
    internal = _internal_plan(manifest, base_dir, settings)
    verbosity = (VERBOSE if verbose else NORMAL) if progress else QUIET
    console = Console() if progress else Console(quiet=True)
    with translated():
        try:
            run_batch(internal, settings, console, adopt=adopt, verify=verify, verbosity=verbosity)
        except BatchPaused:
            pass    # not an error: status() says why, and running it again resumes
    return Batch(internal.manifest.name)


def submit(manifest: Manifest, at: str | None = None, *, adopt: bool = False,
           base_dir: str | Path | None = None) -> Batch:
    """Enqueue a batch for a worker fleet and return at once, like ``reelbatch submit``.

    ``at``: a start time, ``"HH:MM"`` (its next occurrence) or ISO 8601. ``Batch.wait()`` blocks
    until it is done. Needs workers on the same broker (``reelbatch worker``)."""
    from reelbatch.scheduler.submit import submit_plan

    settings = _settings()
    internal = _internal_plan(manifest, base_dir, settings)
    with translated():
        submit_plan(internal, settings, at, adopt)
    return Batch(internal.manifest.name)


_contexts: dict[tuple[str | None, str], Runtime] = {}
_joined: list[EmbeddedRedis] = []   # embedded servers this process joined for the API


def _context(settings: Settings | None = None) -> Runtime:
    """A connection to the configured broker, or to the embedded Redis (joined once per process
    through the data folder's lease, so a `run` ending elsewhere in the process leaves it up, and
    left by ``close()`` or when the process exits), kept for the process."""
    settings = settings or _settings()
    key = (settings.broker_url, str(settings.data_dir))
    if key not in _contexts:
        with translated():
            _contexts[key] = _connect(settings)
    return _contexts[key]


def _connect(settings: Settings) -> Runtime:
    url = settings.broker_url
    if url is None:
        if not _joined:
            atexit.register(close)
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()
        _joined.append(embedded)
    check_broker(url)
    use_broker(url)
    return Runtime(settings.model_copy(update={"broker_url": url}))


def close() -> None:
    """Leave the embedded Redis the API joined (the last user of a data folder stops it) and forget
    the connections; the next call connects again. Called when the process exits."""
    _contexts.clear()
    while _joined:
        _joined.pop().stop()


def batches() -> list[Batch]:
    """Every batch the state store knows, by name."""
    with translated():
        return [Batch(name) for name in _context().store.batches()]


def batch(name: str) -> Batch:
    """The batch called ``name``; ``BadInput`` when the store does not know it."""
    found = Batch(name)
    found._meta()
    return found


class Batch:
    """A batch in the state store, by name: look at it and act on it, like the commands that take
    BATCH. Every call reads the store afresh."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Batch({self.name!r})"

    def _ctx(self) -> Runtime:
        return _context()

    def _meta(self) -> BatchMeta:
        with translated():
            meta = self._ctx().store.batch(self.name)
        if meta is None:
            known = ", ".join(self._ctx().store.batches()) or "none"
            raise BadInput(f"no batch named {self.name!r}; known: {known}", field="BATCH")
        return meta

    def status(self) -> BatchStatus:
        """Counts per state, money charged/estimated/projected, paused and why, created/started/
        finished times (``reelbatch status``)."""
        from reelbatch.scheduler.status import summary

        meta = self._meta()
        with translated():
            store = self._ctx().store
            return BatchStatus.of(summary(store, self.name), meta, store.pace(self.name))

    def results(self) -> list[Result]:
        """One typed record per item, sorted by id: state, file, url, generation id, cost and its
        source, error kind and text, params."""
        meta = self._meta()
        with translated():
            records = self._ctx().store.items(self.name)
            return sorted((Result.of(meta, rec) for rec in records), key=lambda r: r.id)

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> BatchStatus:
        """Block until nothing in the batch can move (every item terminal, or only items waiting
        for the budget) or it pauses; its status. ``TimeoutError`` after ``timeout`` seconds."""
        from reelbatch.scheduler.progress import settled

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            with translated():
                if status.paused or settled(self._ctx().store, self.name):
                    return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: {status.done}/{status.total} done after {timeout} s")
            time.sleep(poll_s)

    def retry(self, kind: str | None = None, include_permanent: bool = False) -> RetryReport:
        """Send failed items back to work, each from where it can go on (a generation that exists
        is polled or downloaded again, never paid for twice), like ``reelbatch retry``. ``kind``
        only items failed for that reason (``cancelled`` brings back cancelled ones);
        ``include_permanent`` also content_policy, no_credits, invalid_input (paid for again)."""
        from reelbatch.worker.control import failure_kinds, retry_batch

        self._meta()
        ctx = self._ctx()
        with translated():
            kinds = failure_kinds(ctx.store, self.name)
            if kind and kind not in kinds:
                raise BadInput(f"no items of kind {kind!r}; kinds: {', '.join(kinds) or 'none'}", field="kind")
            return RetryReport.of(retry_batch(ctx, self.name, kind, include_permanent))

    def cancel(self, abandon: bool = False) -> CancelReport:
        """Stop the batch: nothing new is submitted; remote generations are cancelled where the
        provider allows it. ``abandon``: stop waiting for ones it cannot cancel. A ``run``
        waiting on the batch returns. ``retry(kind="cancelled")`` brings the items back."""
        from reelbatch.worker.control import cancel_batch

        meta = self._meta()
        with translated():
            return CancelReport.of(cancel_batch(self._ctx(), self.name, abandon), meta.provider)

    def export(self, path: str | Path | None = None, format: str = "jsonl") -> Path:
        """Write the results: ``jsonl`` or ``csv`` (one row per item; default ``results.<format>``
        in the output folder), or ``dataset``: a folder of the succeeded videos with
        ``metadata.jsonl`` and a card, for ``datasets.load_dataset(path)`` (default
        ``<output>-dataset``). Returns what was written."""
        from reelbatch.scheduler.export import destination, export_dataset, export_index, load_batch

        if format not in EXPORT_FORMATS:
            raise BadInput(f"{format!r}; expected one of {', '.join(EXPORT_FORMATS)}", field="format")
        self._meta()
        with translated():
            meta, records = load_batch(self._ctx().store, self.name)
            if format != "dataset":
                return Path(export_index(meta, records, format, path))
            folder = Path(path) if path is not None else Path(f"{Path(meta.output).absolute()}-dataset")
            with destination(folder, explicit=path is not None):
                return export_dataset(meta, records, folder).folder

    def to_dataset(self) -> Any:
        """The results as a Hugging Face ``datasets.Dataset``: one row per item with ``id``,
        ``state``, ``file`` (the video's path), ``prompt``, each scalar parameter, ``params`` as
        JSON, cost, error. Needs the ``datasets`` extra: ``pip install 'reelbatch[datasets]'``."""
        try:
            import datasets
        except ImportError:
            raise ImportError("Batch.to_dataset() needs the `datasets` package: "
                              "pip install 'reelbatch[datasets]'") from None
        from reelbatch.scheduler.records import param_columns

        results = self.results()
        columns = param_columns(results)
        return datasets.Dataset.from_list([r.row(columns) for r in results])
