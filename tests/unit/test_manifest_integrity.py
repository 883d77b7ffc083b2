"""Issue 11, points 6-8 and 13-14, and issue 17 point 5: manifests that would silently pay twice,
overwrite a video, send something else than the index says, or lose an item; and literal braces."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from reelbatch.jobs.catalog import provider_request
from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch

HEAD = """\
version: 1
name: t
provider: oxen
model: kling-o1/image-to-video
defaults: {start_image: https://example.org/a.png}
"""
ONE = HEAD + """\
items:
  - id: a
    prompt: "hello"
"""


def item(id_: str, prompt: str = "p") -> str:
    return f"  - id: {id_}\n    prompt: \"{prompt}\"\n"


# name, manifest text, extra files, expected message part, line, field
CASES = [
    ("duplicate-key-in-item", ONE + "    duration: 5\n    duration: 10\n", {},
     "duplicate key 'duration'; line 9 sets it too", 10, "items[0].duration"),
    ("second-items-block", ONE + "items:\n" + item("b"), {}, "duplicate key 'items'; line 6", 9, "items"),
    ("duplicate-top-key", ONE + "name: other\n", {}, "duplicate key 'name'; line 2", 9, "name"),
    ("unused-var", ONE + "    vars: {season: [spring, summer]}\n", {},
     "no placeholder uses {season}", 9, "items[0].vars.season"),
    ("ids-x-and-_x", HEAD + "items:\n" + item("x", "one") + item("_x", "two"), {},
     "item ids 'x' and '_x' would share the file x.mp4", 9, "items[1]"),
    ("ids-x.-and-x", HEAD + "items:\n" + item("x.", "one") + item("x", "two"), {},
     "would share the file x.mp4", 9, "items[1]"),
    ("ids-differ-in-case", HEAD + "items:\n" + item("Ox", "one") + item("ox", "two"), {},
     "item ids 'Ox' and 'ox' would share the file Ox.mp4", 9, "items[1]"),
    ("raw-duration", ONE + "    duration: 5\n    raw: {duration: 10}\n", {},
     "raw.duration is the oxen field of the neutral parameter 'duration'", 10, "items[0].raw"),
    ("raw-input-image", ONE + "    raw: {input_image: https://e.org/b.png}\n", {},
     "neutral parameter 'start_image' or 'images'", 9, "items[0].raw"),
    ("csv-unclosed-quote", HEAD + "items_from: r.csv\n",
     {"r.csv": b'id,prompt\nx,"never closed\ny,fine\n'}, "unclosed quote", 2, "row"),
    ("csv-semicolons", HEAD + "items_from: r.csv\n", {"r.csv": b"id;prompt\nx;hi\n"},
     "one column 'id;prompt' found: the file looks separated by ';'", 1, "header"),
    ("csv-short-row", HEAD + "items_from: r.csv\n", {"r.csv": b"id,prompt,duration\nx,hi\n"},
     "2 values; the header has 3 columns", 2, "row"),
    ("csv-empty", HEAD + "items_from: r.csv\n", {"r.csv": b""}, "the file is empty", 1, "header"),
    ("csv-header-only", HEAD + "items_from: r.csv\n", {"r.csv": b"id,prompt\n"}, "no rows", None,
     "items_from"),
    ("jsonl-empty", HEAD + "items_from: r.jsonl\n", {"r.jsonl": b"\n"}, "no rows", None, "items_from"),
    ("ftp-url", ONE + "    start_image: ftp://e.org/a.png\n", {}, "only http(s) URLs, data: URIs", 9,
     "items[0].start_image"),
    ("url-without-host", ONE + "    start_image: https:///a.png\n", {}, "has no host", 9,
     "items[0].start_image"),
    ("malformed-data-uri", ONE + "    start_image: 'data:image/png,abc'\n", {}, "is not a data URI", 9,
     "items[0].start_image"),
    ("whitespace-prompt", ONE.replace('"hello"', '"   "'), {}, "a prompt is required", 8, "items[0].prompt"),
    ("huge-rate", ONE + "limits: {requests_per_minute: 100000000000000000000}\n", {}, "less than or equal to 60000", 9,
     "limits.requests_per_minute"),
    ("unknown-placeholder-hint", ONE.replace('"hello"', "'say {\"k\": {v}}'"), {},
     "undefined placeholder {v}; expected a var named v (write {{ and }} for literal braces)", 8,
     "items[0].prompt"),
]


def plan(tmp_path: Path, text: str, files: dict[str, bytes] | None = None):
    for name, data in (files or {}).items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return plan_batch(path, Settings())


@pytest.mark.parametrize("name, text, files, message, line, field", CASES, ids=[c[0] for c in CASES])
def test_refused(tmp_path, name, text, files, message, line, field):
    with pytest.raises(ManifestError) as caught:
        plan(tmp_path, text, files)
    assert message in caught.value.message
    assert (caught.value.line, caught.value.field) == (line, field)


def test_identical_content_under_two_ids_is_two_items(tmp_path):
    items = plan(tmp_path, HEAD + "items:\n" + item("a", "same") + item("b", "same")).items
    assert [i.item_id for i in items] == ["a", "b"]   # the store keeps each under its own id


def test_a_bom_is_not_part_of_the_first_column(tmp_path):
    items = plan(tmp_path, HEAD + "items_from: r.csv\n",
                 {"r.csv": "\ufeffid,prompt\nx,hi\ny,there\n".encode()}).items
    assert [i.item_id for i in items] == ["x", "y"]


def test_doubled_braces_are_literal_braces(tmp_path):
    text = ONE.replace('"hello"', '"json {{\\"animal\\": \\"{animal}\\"}} and {{x}}"')
    text += "    vars: {animal: [ox]}\n"
    items = plan(tmp_path, text).items
    assert items[0].params.prompt == 'json {"animal": "ox"} and {x}'
    assert provider_request(items[0]).body["prompt"] == 'json {"animal": "ox"} and {x}'


def test_spaces_in_a_url_are_percent_encoded(tmp_path):
    text = ONE + "    start_image: https://example.org/my ox.png?size=big one\n"
    items = plan(tmp_path, text).items
    assert provider_request(items[0]).body["input_image"] == "https://example.org/my%20ox.png?size=big%20one"


def test_at_errors_echo_the_value_and_a_past_time_starts_now():
    from datetime import datetime

    from reelbatch.scheduler.submit import parse_at

    with pytest.raises(ManifestError, match="'25:99': expected HH:MM"):
        parse_at("25:99")
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_at("2026-11-24T11:00:00+00:00", now) < now.timestamp()       # past: the caller starts now
    assert parse_at("11:00", now) > now.timestamp()                           # HH:MM: the next one
