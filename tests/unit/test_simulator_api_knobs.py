"""The simulator serves several providers at once, each API with its own limit and timing
(``api_knobs``; issue 27)."""

from __future__ import annotations

import pytest

from reelbatch.simulator.clock import Clock
from reelbatch.simulator.knobs import Knobs, api_overrides

MODEL = "kling-video-o1-image-to-video"


def test_api_knobs_are_read_per_api():
    assert api_overrides("aiml:concurrency=2,gen_time_min=10; fal:concurrency=1") == {
        "aiml": {"concurrency": "2", "gen_time_min": "10"}, "fal": {"concurrency": "1"}}
    knobs = Knobs(concurrency=20, gen_time_min=300, api_knobs="aiml:concurrency=2,gen_time_min=10")
    assert (knobs.api_concurrency("aiml"), knobs.api_concurrency("oxen")) == (2, 20)
    assert (knobs.for_api("aiml").gen_time_min, knobs.for_api("oxen").gen_time_min) == (10.0, 300)
    with pytest.raises(ValueError):
        api_overrides("aiml concurrency=2")


def test_each_api_runs_at_its_own_limit_and_time():
    knobs = Knobs(time_scale=1.0, queue_delay=0.0, gen_time_min=100, gen_time_max=100, seed=1,
                  api_knobs="aiml:concurrency=1,gen_time_min=10,gen_time_max=10;oxen:concurrency=2")
    clock = Clock(knobs, lambda gen: None)
    clock.now = lambda: 0.0
    gens = [clock.enqueue(api, MODEL, {}, None) for api in ("aiml", "aiml", "oxen", "oxen", "oxen")]
    clock.advance(0.0)
    assert [g.status for g in gens] == ["processing", "queued", "processing", "processing", "queued"]
    clock.advance(10.0)     # the first AI/ML one took 10 s; the next starts; Oxen's take 100 s
    assert [g.status for g in gens] == ["succeeded", "processing", "processing", "processing", "queued"]
    clock.advance(100.0)
    assert [g.status for g in gens][2:] == ["succeeded", "succeeded", "processing"]
