"""Every example manifest in jobs/examples/ plans cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch

EXAMPLES = sorted((Path(__file__).parents[2] / "jobs" / "examples").glob("*.yaml"))
EXPECTED = {"image-to-video": ("oxen", 8), "reference-to-video": ("aimlapi", 2),
            "video-edit": ("oxen", 3), "video-reference": ("aimlapi", 2),
            "dataset-variants": ("oxen", 18), "demo": ("simulator", 6),
            "fal-image-to-video": ("fal", 4), "fal-reference-to-video": ("fal", 1),
            "fal-video-edit": ("fal", 2), "fal-video-reference": ("fal", 1), "fanout": ("simulator", 12)}


def test_there_is_one_example_per_kind():
    assert {p.stem for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_plans(path: Path):
    plan = plan_batch(path, Settings())
    provider, count = EXPECTED[path.stem]
    assert (plan.manifest.provider, len(plan.items)) == (provider, count)
    assert plan.estimated_cost_usd > 0
    assert len({i.item_id for i in plan.items}) == count
