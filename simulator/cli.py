"""`reelbatch simulator`: serve the provider simulator. The server is imported only when it runs."""

from __future__ import annotations

import signal

import click

from reelbatch.simulator.knobs import RATE_KNOBS

RATE_HELP = {"stuck_rate": "Probability that a generation never finishes (stays processing for ever)."}


def _rate_options(command):
    for knob in reversed(RATE_KNOBS):
        flag = "--" + knob.replace("_", "-")
        command = click.option(flag, knob, type=click.FloatRange(0, 1), default=0.0, show_default=True,
                               help=RATE_HELP.get(knob, f"Probability of the `{knob.removesuffix('_rate')}` "
                                                        "fault."))(command)
    return command


@click.command("simulator", epilog="\b\nExamples:\n  reelbatch simulator --port 8765\n"
               "  reelbatch simulator --time-scale 0.01 --seed 7")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True, help="0 picks a free port.")
@click.option("--api-key", envvar="REELBATCH_SIMULATOR_KEY", default="sim-key", show_default=True,
              help="The bearer key clients must send (env REELBATCH_SIMULATOR_KEY).")
@click.option("--time-scale", type=float, default=1.0, show_default=True,
              help="Multiplies every nominal duration (1/300 turns 10 minutes into 2 s).")
@click.option("--gen-time-min", type=float, default=300.0, show_default=True, help="Nominal seconds.")
@click.option("--gen-time-max", type=float, default=900.0, show_default=True, help="Nominal seconds.")
@click.option("--queue-delay", type=float, default=1.0, show_default=True,
              help="Nominal seconds from enqueue until a generation may start.")
@click.option("--concurrency", type=int, default=20, show_default=True,
              help="Generations running at once; the rest wait queued.")
@_rate_options
@click.option("--revoke-key-after", type=int, default=0, show_default=True,
              help="Refuse the key (401) after this many authorized API requests (0: never); "
                   "POST /_sim/key {\"key\": ...} sets a new good key.")
@click.option("--credits-usd", type=float, default=None,
              help="The account's credit balance in USD (default: unlimited). Without enough, Oxen "
                   "fails a generation \"Insufficient credits\" 3 s after start and the AI/ML API "
                   "answers 403; POST /_sim/top-up {\"usd\": x} adds credit.")
@click.option("--vanished-models", default="", help="Comma-separated Oxen model ids that answer "
              "404 \"Model not found\" (a model folded away).")
@click.option("--submit-delay-s", type=float, default=0.0, show_default=True,
              help="Real seconds a submit POST takes to answer (0: at once).")
@click.option("--submit-create-late", is_flag=True,
              help="With --submit-delay-s: create the generation at the end of the delay, not at its start.")
@click.option("--create-late-s", type=float, default=0.0, show_default=True,
              help="Oxen submits answer 504 at once and the generation appears this many real seconds "
                   "later (0: off).")
@click.option("--download-trickle-s", type=float, default=0.0, show_default=True,
              help="Real seconds each result download's bytes trickle over (0: at once).")
@click.option("--retry-after", type=int, default=1, show_default=True, help="Retry-After seconds on 429.")
@click.option("--url-ttl", type=float, default=3600.0, show_default=True, help="Result URL lifetime (s).")
@click.option("--keepalive-interval", type=float, default=15.0, show_default=True)
@click.option("--other-event-interval", type=float, default=20.0, show_default=True,
              help="Seconds between unrelated deployment_status SSE events.")
@click.option("--sse-disconnect-every", type=float, default=0.0, show_default=True,
              help="Close each /api/events stream after this many seconds (0: never).")
@click.option("--legacy-enqueue-processing", is_flag=True, help="Enqueue answers status \"processing\".")
@click.option("--legacy-404-terminal", is_flag=True, help="GET of a terminal queue row answers 404.")
@click.option("--empty-failure-messages", is_flag=True,
              help="Failed generations carry an empty error_message (and SSE error).")
@click.option("--cancel-billed", is_flag=True,
              help="A generation cancelled while processing is billed in full (history cost).")
@click.option("--oxen-list-lag-s", type=float, default=0.0, show_default=True,
              help="Seconds before a new Oxen generation shows in the queue and history lists.")
@click.option("--aiml-logs-lag", type=float, default=0.0, show_default=True,
              help="Seconds before an AI/ML create shows in GET /v2/logs (its request log).")
@click.option("--aiml-error-shape", type=click.Choice(["random", "name", "detail"]), default="random",
              show_default=True)
@click.option("--media-pad-bytes", type=int, default=0, show_default=True,
              help="Pad each result MP4 by this many bytes.")
@click.option("--api-knobs", default="", envvar="REELBATCH_SIMULATOR_API_KNOBS",
              help="Each API (oxen, aiml, fal) as its own provider account: its own knobs, e.g. "
                   "\"oxen:concurrency=10;aiml:concurrency=6,gen_time_min=100,gen_time_max=200;"
                   "fal:concurrency=4,fail_rate=0.1\" (concurrency, timing and rate knobs).")
@click.option("--cache-dir", default=None, help="Where base MP4s are cached.")
@click.option("--seed", type=int, default=None, help="Seed for every random draw (reproducible runs).")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Load generations and counters from this JSON file if it exists; save them there "
                   "on SIGTERM/SIGINT, so ids keep working across restarts.")
def simulator_command(host: str, port: int, api_key: str, state_file: str | None, **knobs) -> None:
    """Serve a local stand-in for Oxen.ai, the AI/ML API and fal, with fault and timing knobs
    (per API with --api-knobs: several providers at once, each with its own limit and timing).

    SIGTERM and SIGINT stop it cleanly (saving the state file) with exit status 0.
    """
    from reelbatch.simulator.server import Knobs, Simulator

    sim = Simulator(knobs=Knobs(**knobs), api_key=api_key, host=host, port=port, state_file=state_file)
    handlers = {signal.SIGINT: signal.getsignal(signal.SIGINT),
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    try:
        sim.start()
        click.echo(f"reelbatch simulator listening on {sim.base_url}", err=False)
        sim.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for signum in handlers:     # a second signal (Ctrl-C reaches the group) must not cut the save short
            signal.signal(signum, signal.SIG_IGN)
        sim.stop()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
