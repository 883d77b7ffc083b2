"""The `reelbatch` command line: parse, call, print. No logic of its own.

Exit codes: 0 every item succeeded; 1 the batch finished with failed items; 2 bad input or usage
(nothing was submitted); 3 a broker or another service could not be reached, or the batch paused;
128 + the signal when stopped by one (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). For `plan`, 1 means
the plan is valid but limits.max_cost_usd does not cover it (`run` would stop early).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from reelbatch.jobs.errors import BadInput, ManifestErrors, ServiceUnavailable
from reelbatch.jobs.files import NotARegularFile
from reelbatch.jobs.settings import settings_error

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3

def examples(*lines: str) -> str:
    """A command's --help ends with these (``\\b`` keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


manifest_arg = click.argument("manifest", type=click.Path(path_type=Path))


def _fail(message: str, code: int) -> None:
    click.echo(f"reelbatch: {message}", err=True)
    sys.exit(code)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C (children stopped, state kept), exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)


class _Group(click.Group):
    """Turns the error tree into one stderr line and the documented exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ManifestErrors as exc:
            for line in exc.lines()[:-1]:
                click.echo(f"reelbatch: error: {line}", err=True)
            _fail(f"error: {exc.lines()[-1]}", EXIT_BAD_INPUT)
        except BadInput as exc:        # a manifest, a setting, an argument
            _fail(f"error: {exc}", EXIT_BAD_INPUT)
        except ValidationError as exc:    # a setting from the environment
            _fail(f"error: {settings_error(exc)}", EXIT_BAD_INPUT)
        except NotARegularFile as exc:
            _fail(f"error: {exc}", EXIT_BAD_INPUT)
        except ServiceUnavailable as exc:
            said = str(exc) if exc.kind != "service" else f"cannot reach a service: {exc}"   # paused, ...
            _fail(said, EXIT_SERVICE)
        except (OperationalError, RedisConnectionError) as exc:
            _fail(f"cannot reach the broker: {exc}", EXIT_SERVICE)
        except click.UsageError as exc:
            _fail(exc.format_message(), EXIT_BAD_INPUT)
        except KeyboardInterrupt as exc:
            sys.exit(128 + getattr(exc, "signum", signal.SIGINT))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelbatch")
def main() -> None:
    """Run large batches of hosted video generations and bring every result home."""
    stop_on_signals()


@main.command(epilog=examples("reelbatch plan night.yaml", "reelbatch plan night.yaml --json | head -3"))
@manifest_arg
@click.option("--json", "as_json", is_flag=True, help="Print the expanded items as JSON lines.")
def plan(manifest: Path, as_json: bool) -> None:
    """Validate and expand MANIFEST; print items, video seconds and estimated cost. Submits nothing."""
    from reelbatch.scheduler.plan import show_plan

    sys.exit(show_plan(manifest, as_json=as_json))


adopt_option = click.option("--adopt", is_flag=True, help="Take over a batch of the same name that "
                            "another manifest file started.")


@main.command(epilog=examples("reelbatch run night.yaml", "nohup reelbatch run night.yaml > night.log 2>&1 &"))
@manifest_arg
@adopt_option
@click.option("--verify", is_flag=True, help="Check every video already downloaded against its "
              "sha256 (not only its size) and download again what changed.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary and errors.")
@click.option("--verbose", "-v", is_flag=True, help="Also print one line per item outcome.")
@click.option("--reuse", multiple=True, metavar="BATCH", help="Take the videos of identical succeeded "
              "requests from BATCH instead of generating them (as `reuse:` in the manifest).")
def run(manifest: Path, adopt: bool, verify: bool, quiet: bool, verbose: bool, reuse: tuple[str, ...]) -> None:
    """Run MANIFEST on this machine: embedded Redis and a worker unless REELBATCH_BROKER_URL is set.
    Running it again resumes; finished items are never generated again."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.console import output_console
    from reelbatch.scheduler.run import run_batch

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose do not go together")
    sys.exit(run_batch(manifest, get_settings(), output_console(), adopt=adopt, verify=verify,
                       verbosity=-1 if quiet else int(verbose), reuse=reuse))


@main.command(epilog=examples("reelbatch submit night.yaml", "reelbatch submit night.yaml --at 23:30"))
@manifest_arg
@click.option("--at", "at", default=None, help="Start time: HH:MM (next occurrence) or ISO 8601.")
@adopt_option
def submit(manifest: Path, at: str | None, adopt: bool) -> None:
    """Enqueue MANIFEST onto the configured broker for a worker fleet and return at once."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.submit import submit_batch

    sys.exit(submit_batch(manifest, get_settings(), at, adopt))


@main.command(epilog=examples("reelbatch status night.yaml", "reelbatch status night --json"))
@click.argument("batch", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--watch", is_flag=True, help="Refresh live until the batch is done.")
def status(batch: str | None, as_json: bool, watch: bool) -> None:
    """Per-state counts, progress, cost and failures of BATCH (or one line per batch)."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.status import show_status

    sys.exit(show_status(get_settings(), batch, as_json, watch))


@main.command(
    epilog=examples("reelbatch export night --format csv --out night.csv",
                    "reelbatch export night --layout dataset --out night-dataset"))
@click.argument("batch")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True, help="JSON lines, or CSV (params as one JSON column).")
@click.option("--layout", type=click.Choice(["index", "dataset"]), default="index", show_default=True,
              help="index: one row per item; dataset: a folder of the succeeded videos with "
              "metadata.<format> and a dataset card, for datasets.load_dataset(DIR).")
@click.option("--out", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="index: the file to write, - for standard output (default: results.<format> in the "
              "output folder); dataset: the folder (default: <output>-dataset).")
def export(batch: str, fmt: str, layout: str, out: Path | None) -> None:
    """Write the results index of BATCH from the state store."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.export import export_batch

    sys.exit(export_batch(get_settings(), batch, fmt, layout, out))


@main.command(epilog=examples("reelbatch report night", "reelbatch report night --out /tmp/night.html"))
@click.argument("batch")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the page (default: report.html in the output folder).")
@click.option("--watch", is_flag=True, help="Rewrite the page while the batch runs (an open tab "
              "reloads itself) until nothing in it can move.")
@click.option("--every", "every_s", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds between rewrites with --watch.")
def report(batch: str, out: Path | None, watch: bool, every_s: float) -> None:
    """Write a static HTML page of BATCH: the batch at a glance (spend, pace, generation times,
    failures), then poster frames, videos, prompts, parameters, status."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.report import report_batch

    sys.exit(report_batch(get_settings(), batch, out, every_s if watch else None))


@main.command(
    epilog=examples("reelbatch retry night && reelbatch run night.yaml", "reelbatch retry night --kind download"))
@click.argument("batch")
@click.option("--kind", default=None, help="Only items failed for this kind of reason (e.g. "
              "generation_failed, download, submit_unknown, missing, stuck); `cancelled` brings back "
              "cancelled items.")
@click.option("--include-permanent", is_flag=True, help="Also items that failed for a reason "
              "retrying cannot fix (content_policy, invalid_input, permanent, ...): each is submitted "
              "again, a new paid generation where the provider ran (and billed) the last one.")
def retry(batch: str, kind: str | None, include_permanent: bool) -> None:
    """Send the failed items of BATCH back to work, each from where it can go on: a generation that
    exists is polled or downloaded again, never paid for twice. Succeeded items are untouched."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.operations import describe_retry

    try:
        done = api.batch(batch).retry(kind, include_permanent)
    except BadInput as exc:
        raise BadInput(exc.message, exc.file, exc.line, "--kind" if exc.field == "kind" else exc.field) from None
    click.echo(describe_retry(batch, done))


@main.command(epilog=examples("reelbatch cancel night", "reelbatch cancel night --abandon"))
@click.argument("batch")
@click.option("--abandon", is_flag=True, help="At providers that cannot cancel, stop waiting "
              "for generations already paid for instead of downloading them.")
def cancel(batch: str, abandon: bool) -> None:
    """Stop BATCH: nothing new is submitted; remote generations are cancelled where possible."""
    from reelbatch.scheduler import api
    from reelbatch.scheduler.operations import describe_cancel

    click.echo(describe_cancel(batch, api.batch(batch).cancel(abandon)))


@main.command(context_settings={"ignore_unknown_options": True},
    epilog=examples("REELBATCH_BROKER_URL=redis://:pw@redis:6379/0 reelbatch worker -c 16"))
@click.option("--concurrency", "-c", type=int, default=None, help="Threads in this worker.")
@click.option("--providers", default=None, envvar="REELBATCH_WORKER_PROVIDERS",
              help="Serve only these providers (comma separated); each needs its key. "
                   "Default: every provider this worker has a key for, and the simulator.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, providers: str | None, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker against REELBATCH_BROKER_URL (extra arguments go to Celery). It takes
    the items of the providers it has a key for; the others wait for a worker with their key."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.workers import run_worker

    sys.exit(run_worker(get_settings(), concurrency, list(celery_args), providers))


@main.command(epilog=examples("REELBATCH_BROKER_URL=redis://:pw@redis:6379/0 reelbatch scheduler"))
def scheduler() -> None:
    """Run the fleet's scheduler: the periodic sweeper (Celery beat) and the Oxen event listener."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.service import run_scheduler

    sys.exit(run_scheduler(get_settings()))


@main.command(epilog=examples("FLOWER_BASIC_AUTH=me:secret reelbatch flower --port 5555"))
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--no-auth", is_flag=True, help="Allow starting without FLOWER_BASIC_AUTH "
              "(user:password); then Flower listens on 127.0.0.1 only.")
def flower(address: str, port: int, no_auth: bool) -> None:
    """Start Flower on the configured broker, behind basic auth from FLOWER_BASIC_AUTH."""
    from reelbatch.jobs.settings import get_settings
    from reelbatch.scheduler.flower import run_flower

    sys.exit(run_flower(get_settings(), address, port, no_auth))


def _register_simulator() -> None:
    from reelbatch.simulator.cli import simulator_command

    main.add_command(simulator_command, name="simulator")


_register_simulator()


if __name__ == "__main__":
    main()
