"""Reconciling a lost submit on a busy account: the generation it created may be pages deep in
Oxen's history by the time the reconcile runs (the fault suite's provider storm found this)."""

from __future__ import annotations

import httpx

from reelbatch.jobs.item import ProviderRequest
from reelbatch.jobs.settings import Settings
from reelbatch.worker.providers.http import HttpSeam, build_client
from reelbatch.worker.providers.oxen import HISTORY_PAGE_SIZE, OxenProvider

REQUEST = ProviderRequest(model="kling-video-o1-image-to-video", body={"prompt": "lost one"})


def history_row(n: int, prompt: str = "busy", enqueued_at: float = 2000.0) -> dict:
    return {"generation_id": f"g{n}", "model_name": REQUEST.model, "prompt": prompt,
            "status": "succeeded", "result_url": f"https://v.test/{n}.mp4", "enqueued_at": enqueued_at - n}


def provider(rows: list[dict], pages: list[int]) -> OxenProvider:
    def handler(request):
        if request.url.path == "/api/ai/queue":
            return httpx.Response(200, json={"count": 0, "generations": []})
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        pages.append(page)
        chunk = rows[(page - 1) * size: page * size]
        return httpx.Response(200, json={"count": len(chunk), "generations": chunk})
    client = build_client(Settings(), "https://oxen.test", "k", httpx.MockTransport(handler))
    return OxenProvider(HttpSeam("oxen", client, ("k",)))


def test_a_lost_generation_two_pages_deep_is_found():
    rows = [history_row(n) for n in range(2 * HISTORY_PAGE_SIZE + 50)]
    rows[HISTORY_PAGE_SIZE + 30] = history_row(HISTORY_PAGE_SIZE + 30, prompt="lost one")
    pages: list[int] = []
    found = provider(rows, pages).find(REQUEST, since=1000)
    assert [g.generation_id for g in found] == [f"g{HISTORY_PAGE_SIZE + 30}"]
    assert pages == [1, 2, 3]


def test_paging_stops_at_rows_older_than_the_submit():
    rows = [history_row(n, enqueued_at=1000 + HISTORY_PAGE_SIZE // 2) for n in range(5 * HISTORY_PAGE_SIZE)]
    pages: list[int] = []
    assert provider(rows, pages).find(REQUEST, since=1000) == []
    assert pages == [1, 2]      # page 2 holds nothing enqueued since the submit: stop
