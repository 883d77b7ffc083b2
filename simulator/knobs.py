"""Knobs: every timing, fault and quirk setting of the simulator, changeable at runtime.

Nominal seconds (generation time, queue delay, failure times) are multiplied by `time_scale`;
interval knobs for SSE, URL lifetime and Retry-After are real seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

RATE_KNOBS = (
    "fail_rate",            # the generation runs, then goes failed with a realistic message
    "rate_limit_rate",      # 429 with Retry-After
    "rate_limit_bare_rate", # 429 without Retry-After
    "server_error_rate",    # 500/502/503
    "drop_before_rate",     # close the socket before the request is processed
    "drop_after_rate",      # process the request (a submit creates generations), then close the socket
    "truncate_rate",        # downloads: Content-Length promises more than is sent
    "expire_rate",          # result URLs are issued already expired
    "media_404_rate",       # downloads: 404 NoSuchKey (a CDN that has not caught up yet)
    "media_html_rate",      # downloads: 200 with an HTML error page sent as video/mp4
    "media_empty_rate",     # downloads: 200 video/mp4 with an empty body
    "media_stall_rate",     # downloads: half the body, then silence for stall_s, then the socket closes
    "poll_401_rate",        # status requests (GET one generation): 401 as if the key were refused
    "drop_after_submit_rate",  # submits only: the generation is created, then the socket closes
    "stuck_rate",           # the generation never finishes: it stays processing for ever
)


@dataclass
class Knobs:
    """Simulator settings. Rates are probabilities drawn from a seeded RNG."""

    time_scale: float = 1.0
    gen_time_min: float = 300.0          # nominal seconds, uniform between min and max
    gen_time_max: float = 900.0
    queue_delay: float = 1.0             # nominal seconds from enqueue to eligible to run
    concurrency: int = 20                # generations running at once; the rest wait queued
    fail_rate: float = 0.0
    rate_limit_rate: float = 0.0
    rate_limit_bare_rate: float = 0.0
    server_error_rate: float = 0.0
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    truncate_rate: float = 0.0
    expire_rate: float = 0.0
    media_404_rate: float = 0.0
    media_html_rate: float = 0.0
    media_empty_rate: float = 0.0
    media_stall_rate: float = 0.0
    stall_s: float = 30.0                # real seconds a stalled download stays silent
    submit_delay_s: float = 0.0          # real seconds a submit POST takes to answer (a slow uplink)
    submit_create_late: bool = False     # with submit_delay_s: the generation is created at the end of
                                         # the delay (just before the answer), not at its start
    create_late_s: float = 0.0           # Oxen submits answer 504 at once; the generation is created (and
                                         # its row shows) this many real seconds later
    download_trickle_s: float = 0.0      # real seconds each result download's bytes trickle over
    poll_401_rate: float = 0.0
    drop_after_submit_rate: float = 0.0
    stuck_rate: float = 0.0
    revoke_key_after: int = 0            # the key is refused (401) after this many authorized API requests
                                         # (0: never); POST /_sim/key {"key": ...} sets a new good key
    credits_usd: float | None = None     # the account's balance (None: unlimited): each generation takes its
                                         # price; without enough, Oxen fails it "Insufficient credits" 3 s
                                         # after start, the AI/ML API answers 403; POST /_sim/top-up {"usd": x}
    vanished_models: str = ""            # comma-separated Oxen model ids that answer 404 "Model not found"
    history_404: bool = False            # GET /api/ai/generations[/{id}] answer 404 (history unavailable)
    retry_after: int = 1                 # seconds in the Retry-After header
    url_ttl: float = 3600.0              # real seconds a result URL stays valid
    keepalive_interval: float = 15.0     # real seconds of SSE idleness before `: keep-alive`
    other_event_interval: float = 20.0   # real seconds between unrelated `deployment_status` events
    sse_disconnect_every: float = 0.0    # close each /api/events stream after this many seconds (0: never)
    legacy_enqueue_processing: bool = False  # enqueue answers "processing" (older docs)
    legacy_404_terminal: bool = False    # GET /api/ai/queue/{id} of a terminal row answers 404
    oxen_list_lag_s: float = 0.0         # real seconds before a new Oxen generation shows in the queue and
                                         # history lists (Oxen does not say when); GET by id sees it at once
    aiml_logs_lag: float = 0.0           # real seconds before a create shows in the AI/ML GET /v2/logs
    aiml_error_shape: str = "random"     # "name" ({name,message}), "detail" ({detail:[...]}) or "random"
    media_pad_bytes: int = 0             # extra bytes in each MP4's `free` box
    cost_per_second: float = 0.112       # USD per output second: model pricing, history cost, AI/ML usage
    empty_failure_messages: bool = False  # failed generations carry an empty error_message (and SSE
                                         # `error`), which Oxen does not rule out
    cancel_billed: bool = False          # a generation cancelled while processing is billed in full
                                         # (its history row's cost); Oxen does not say it is not
    fal_result_ttl: float = 3600.0       # nominal seconds fal keeps a result after completion (scaled)
    result_url_needs_key: bool = False   # REST rows' result_url is a hub-style /api/repos/... path that
                                         # needs the Bearer key (Oxen: undocumented); events stay presigned
    seed: int | None = None
    cache_dir: str | None = None         # where generated base MP4s are kept between runs
    api_knobs: str = ""                  # per API (oxen, aiml, fal) its own knobs, as if each were another
                                         # provider account: "aiml:concurrency=4,gen_time_min=100;fal:..."
                                         # (concurrency, timing and rate knobs; the rest stay shared)

    def update(self, **values) -> None:
        """Set knobs by name, coercing to each field's type; unknown names raise KeyError."""
        types: dict[str, Any] = {f.name: f.type for f in fields(self)}   # names: annotations are strings
        for name, value in values.items():
            if name not in types:
                raise KeyError(name)
            setattr(self, name, _coerce(types[name], value))

    def scaled(self, nominal: float) -> float:
        return nominal * self.time_scale

    def api_concurrency(self, api: str) -> int:
        return int(api_overrides(self.api_knobs).get(api, {}).get("concurrency", self.concurrency))

    def for_api(self, api: str) -> Knobs:
        """The knobs one API's generations run by: these, with its ``api_knobs`` overrides."""
        overrides = api_overrides(self.api_knobs).get(api)
        if not overrides:
            return self
        mine = replace(self, api_knobs="")
        mine.update(**overrides)
        return mine


@lru_cache(maxsize=16)
def api_overrides(text: str) -> dict[str, dict[str, str]]:
    """``"aiml:concurrency=4,gen_time_min=100;fal:concurrency=2"`` by API; a malformed part raises
    ValueError, an unknown knob KeyError (on use)."""
    found: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        api, _, values = part.partition(":")
        pairs = [v.split("=", 1) for v in values.split(",") if v.strip()]
        if not api.strip() or not pairs or any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"api_knobs: expected api:knob=value,...; got {part!r}")
        found[api.strip()] = {k.strip(): v.strip() for k, v in pairs}
    return found


def _coerce(type_name: str, value):
    if value is None:
        return None
    kind = type_name.split(" |")[0]
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    return {"float": float, "int": int, "str": str}[kind](value)


def knob_names() -> list[str]:
    return [f.name for f in fields(Knobs)]
