"""`report --watch`: each turn reads again only the items that moved, and the page stops
reloading itself once nothing in the batch can move."""

from __future__ import annotations

from reelbatch.jobs.state import ItemState as S
from reelbatch.jobs.store import Store
from reelbatch.scheduler.views.follow import Follower, follow
from reelbatch.scheduler.views.report import write_report
from tests.batchfill import fail, make_item, new_batch, start, succeed

N = 8


def test_a_turn_reads_only_the_items_that_moved(redis_url, tmp_path):
    store, out = Store.from_url(redis_url), tmp_path / "out"
    new_batch(store, "night", out, [make_item(f"i{n}", f"shot {n}") for n in range(N)])
    follower = Follower(store, "night")
    assert follower.refresh() and follower.reread == 0
    start(store, "night", "i1")
    succeed(store, "night", "i2", out)
    fail(store, "night", "i3")
    records = {rec.item_id: rec.state for rec in follower.refresh()}
    assert follower.reread == 3
    assert (records["i1"], records["i2"], records["i3"], records["i0"]) == (
        S.RUNNING, S.SUCCEEDED, S.FAILED, S.PENDING)
    follower.refresh()
    assert follower.reread == 3                               # nothing moved: nothing read


def test_watch_rewrites_the_page_until_the_batch_ends(redis_url, tmp_path):
    store, out = Store.from_url(redis_url), tmp_path / "out"
    new_batch(store, "night", out, [make_item(f"i{n}", f"shot {n}") for n in range(N)])
    start(store, "night", "i0")
    pages = []

    def write(meta, records, refresh_s):
        page = write_report(meta, records, store.spend(meta.name), refresh_s=refresh_s)
        pages.append((page.read_text(), sum(r.state is S.SUCCEEDED for r in records)))
        return page

    def night_goes_on(_seconds):                             # the batch moves between two turns
        for rec in list(store.items("night"))[:4]:
            if rec.state is not S.SUCCEEDED:
                succeed(store, "night", rec.item_id, out)
        if len(pages) == 2:
            for rec in store.items("night", S.PENDING):
                fail(store, "night", rec.item_id)

    follow(store, "night", write, 5, sleep=night_goes_on)
    assert [done for _, done in pages] == [0, 4, 4]            # two turns while it ran, the last write
    assert all('http-equiv="refresh" content="5"' in text for text, _ in pages[:-1])
    assert 'http-equiv="refresh"' not in pages[-1][0]


def test_the_page_of_a_batch_over_several_providers_names_them_all(redis_url, tmp_path):
    store, out = Store.from_url(redis_url), tmp_path / "out"
    items = [make_item(f"i{n}", f"shot {n}") for n in range(3)]
    items[1:] = [i.model_copy(update={"provider": "aimlapi"}) for i in items[1:]]   # where they were bound
    new_batch(store, "fan", out, items)
    meta = store.batch("fan")
    page = write_report(meta, list(store.items("fan")), store.spend("fan")).read_text()
    assert '<div class="meta">aimlapi, simulator · ' in page
