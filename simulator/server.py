"""The simulator app (both APIs, media, /_sim control) and `Simulator`, which serves it in a thread.

    with Simulator(knobs=Knobs(time_scale=1/300, seed=1), api_key="sim-key") as sim:
        httpx.post(f"{sim.base_url}/api/ai/queue", ...)
        sim.set_knobs(fail_rate=0.1); sim.stats()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reelbatch.simulator import aimlapi, aimllog, fal, oxen, state
from reelbatch.simulator.core import Core
from reelbatch.simulator.download import serve_result
from reelbatch.simulator.faults import FaultMiddleware
from reelbatch.simulator.knobs import Knobs

__all__ = ["Simulator", "Knobs", "build_app"]



async def media(request: Request) -> Response:
    """GET /media/{key}.mp4?expires=&sig=: the presigned result download."""
    core = request.app.state.core
    key = request.path_params["name"].removesuffix(".mp4")
    gen = core.clock.gens.get(key)
    if gen is None or gen.status != "succeeded":
        return PlainTextResponse("NoSuchKey", status_code=404)
    refused = core.media.check(key, request.query_params.get("expires", ""), request.query_params.get("sig", ""))
    if refused:
        return PlainTextResponse(f"AccessDenied: Request has {refused}" if refused == "expired"
                                 else "AccessDenied: signature does not match", status_code=403)
    return await serve_result(core, key)


async def sim_stats(request: Request) -> Response:
    """GET /_sim/stats; `?detail=0` leaves out the per-generation entries (big runs)."""
    detail = request.query_params.get("detail", "1").lower() not in ("0", "false", "no", "off")
    return JSONResponse(request.app.state.core.snapshot(detail))


async def sim_reset(request: Request) -> Response:
    request.app.state.core.reset()
    return JSONResponse({"status": "reset"})


async def sim_knobs(request: Request) -> Response:
    core = request.app.state.core
    values = await request.json() if request.method == "POST" else {}
    try:
        return JSONResponse(core.set_knobs(**values))
    except (KeyError, TypeError, ValueError) as exc:
        return JSONResponse({"error": f"bad knob: {exc}"}, status_code=400)


async def sim_key(request: Request) -> Response:
    """POST /_sim/key {"key": ...}: rotate the account's key (the old one is refused from now on)."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not body["key"]:
        return JSONResponse({"error": "expected {\"key\": \"...\"}"}, status_code=400)
    request.app.state.core.rotate_key(body["key"])
    return JSONResponse({"status": "rotated"})


async def sim_top_up(request: Request) -> Response:
    """POST /_sim/top-up {"usd": x}: add to the credit balance; answers the new balance."""
    body = await request.json()
    usd = body.get("usd") if isinstance(body, dict) else None
    if not isinstance(usd, int | float) or usd <= 0:
        return JSONResponse({"error": "expected {\"usd\": a positive number}"}, status_code=400)
    return JSONResponse({"credits_usd": request.app.state.core.top_up(float(usd))})


def build_app(core: Core) -> FaultMiddleware:
    """The ASGI app: routes, the timer loop as lifespan, and faults as the outermost layer."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        core.loop = asyncio.get_running_loop()
        ticker = asyncio.create_task(core.tick())
        yield
        core.closing.set()
        core.wake.set()
        await ticker

    routes = oxen.ROUTES + aimlapi.ROUTES + aimllog.ROUTES + fal.ROUTES + [
        Route("/media/{name}", media, methods=["GET"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/reset", sim_reset, methods=["POST"]),
        Route("/_sim/knobs", sim_knobs, methods=["GET", "POST"]),
        Route("/_sim/key", sim_key, methods=["POST"]),
        Route("/_sim/top-up", sim_top_up, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.core = core
    return FaultMiddleware(app, core.knobs, core.stats, core.fault_rng)


class Simulator:
    """Serves the simulator on a background thread with its own event loop.

    With `state_file`, the generations and counters saved by an earlier `stop()` are loaded here,
    and `stop()` saves them again, so ids handed out before a restart keep working.
    """

    def __init__(self, knobs: Knobs | None = None, api_key: str = "sim-key",
                 host: str = "127.0.0.1", port: int = 0, state_file: str | os.PathLike | None = None):
        self.knobs = knobs or Knobs()
        self.core = Core(self.knobs, api_key)
        self.state_file = state_file
        if state_file:
            state.load(self.core, state_file)
        self.host, self.port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> Simulator:
        """Serve in a thread; return once the socket accepts connections."""
        config = uvicorn.Config(build_app(self.core), host=self.host, port=self.port, log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                                backlog=4096, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="reelbatch-simulator", daemon=True)
        self._thread.start()
        self._wait_started(timeout)
        return self

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self._server is not None and self._thread is not None   # start made them
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError("the simulator did not start (is the port free?)")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        assert self._thread is not None   # started with the server
        if self._thread.is_alive():
            self._call(self._closing)
        self._thread.join(10)
        self._server = None
        if self.state_file:
            state.save(self.core, self.state_file)      # the server has stopped: nothing changes now

    def _closing(self) -> None:
        self.core.closing.set()
        self.core.wake.set()

    def wait(self) -> None:
        """Block until the server stops (the CLI)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def _call(self, fn, *args, **kwargs):
        """Run `fn` on the server's loop (the state is not thread-safe) and return its result."""
        async def run():
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(run(), self.core.loop).result(10)

    def stats(self, detail: bool = True) -> dict:
        return self._call(self.core.snapshot, detail)

    def set_knobs(self, **values) -> dict:
        return self._call(self.core.set_knobs, **values)

    def reset(self) -> None:
        self._call(self.core.reset)

    def rotate_key(self, key: str) -> None:
        self._call(self.core.rotate_key, key)

    def top_up(self, usd: float) -> float:
        return self._call(self.core.top_up, usd)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
