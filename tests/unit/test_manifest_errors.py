"""Every bad input is one ManifestError naming the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reelbatch.jobs.errors import ManifestError
from reelbatch.jobs.settings import Settings
from reelbatch.scheduler.plan import plan_batch
from tests.media import IEND

# a PNG signature and header chunk (640x480): the plan reads an image's dimensions
PNG_HEADER = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0\x08\x02\x00\x00\x00\xba\xb3K\xb3'
PNG = PNG_HEADER + IEND
HEAD = """\
version: 1
name: t
provider: oxen
model: kling-o1/image-to-video
"""
ONE_ITEM = HEAD + """\
items:
  - id: a
    prompt: "hello"
    start_image: https://example.org/a.png
"""


def ref_manifest(prompt: str, images: int, elements: int) -> str:
    lines = HEAD.replace("image-to-video", "reference-to-video") + "items:\n  - id: a\n"
    lines += f"    prompt: \"{prompt}\"\n    images:\n"
    lines += "".join(f"      - https://example.org/{n}.png\n" for n in range(images))
    lines += "    elements:\n" if elements else ""
    lines += "".join(f"      - frontal_image: https://example.org/e{n}.png\n" for n in range(elements))
    return lines


def edit_manifest(video: str, extra: str = "") -> str:
    return HEAD.replace("image-to-video", "video-edit") + textwrap.dedent(f"""\
        items:
          - id: a
            prompt: "edit it"
            video: {video}
        {extra}""")


# name, manifest text, extra files {name: bytes}, expected message part, line, field
CASES = [
    ("yaml-syntax", HEAD + "items: [a, b\n", {}, "invalid YAML", 6, "yaml"),
    ("not-a-mapping", "- version: 1\n", {}, "expected a mapping", 1, "manifest"),
    ("empty-file", "", {}, "the manifest is empty", 1, "manifest"),
    ("unknown-key-typo", ONE_ITEM.replace("items:", "itmes:"), {}, "did you mean items?", 5, "itmes"),
    ("unknown-nested-key", ONE_ITEM.replace("    prompt:", "    promt:"), {}, "did you mean prompt?",
     7, "items[0].promt"),
    ("wrong-version", ONE_ITEM.replace("version: 1", "version: 2"), {}, "expected 1", 1, "version"),
    ("unknown-provider", ONE_ITEM.replace("oxen", "runway"), {}, "unknown provider 'runway'", 3,
     "provider"),
    ("model-not-served", ONE_ITEM.replace("image-to-video", "video-reference"), {},
     "oxen does not serve 'kling-o1/video-reference'", 4, "model"),
    ("duration-7", ONE_ITEM + "    duration: 7\n", {}, "expected one of 5, 10", 9, "items[0].duration"),
    ("duration-not-int", ONE_ITEM + "    duration: ten\n", {}, "valid integer", 9,
     "items[0].duration"),
    ("aspect-4x3", ref_manifest("@Image1", 1, 0) + "defaults: {aspect_ratio: \"4:3\"}\n", {},
     "'4:3' is not allowed", 10, "defaults.aspect_ratio"),
    ("aspect-image-to-video", ONE_ITEM + "defaults: {aspect_ratio: \"16:9\"}\n", {},
     "does not take aspect_ratio (the video takes the start image's aspect ratio", 9, "defaults.aspect_ratio"),
    ("prompt-too-long", ONE_ITEM.replace("hello", "x" * 2501), {}, "2501 characters", 7,
     "items[0].prompt"),
    ("image3-of-two", ref_manifest("@Image3 walks", 2, 0), {}, "@Image3 refers to a missing input", 7,
     "items[0].prompt"),
    ("element2-of-one", ref_manifest("@Element2 flies", 1, 1), {}, "1 element given", 7,
     "items[0].prompt"),
    ("missing-start-image", HEAD + "items:\n  - id: a\n    prompt: hi\n", {}, "needs start_image", 6,
     "items[0].start_image"),
    ("too-many-images", ref_manifest("@Image1", 8, 0), {}, "takes at most 7", 8, "items[0].images"),
    ("too-many-elements", ref_manifest("@Image1", 1, 5), {}, "5 elements", 10, "items[0].elements"),
    ("images-and-elements", ref_manifest("@Image1", 4, 4), {}, "at most 7 together", 8,
     "items[0].images"),
    ("model-does-not-take", ONE_ITEM + "    images: [https://example.org/b.png]\n", {},
     "does not take images", 9, "items[0].images"),
    ("local-image-missing", ONE_ITEM.replace("https://example.org/a.png", "nope.png"), {},
     "file not found", 8, "items[0].start_image"),
    ("local-image-not-image", ONE_ITEM.replace("https://example.org/a.png", "a.png"),
     {"a.png": b"hello, not an image"}, "is not an image", 8, "items[0].start_image"),
    ("local-image-bmp", ONE_ITEM.replace("https://example.org/a.png", "a.png"),
     {"a.png": b"BM" + b"\0" * 30}, "expected jpeg, png, gif, webp", 8, "items[0].start_image"),
    ("url-image-format", ONE_ITEM.replace("a.png", "a.bmp"), {}, "is a bmp image", 8,
     "items[0].start_image"),
    ("matrix-unknown-param", ONE_ITEM + "matrix: {seed: [1, 2]}\n", {}, "unknown matrix parameter",
     9, "matrix.seed"),
    ("matrix-empty-list", ONE_ITEM + "matrix:\n  duration: []\n", {}, "empty list", 10,
     "matrix.duration"),
    ("matrix-bad-value", ONE_ITEM + "matrix:\n  duration: [5, 7]\n", {}, "7 is not allowed", 10,
     "matrix.duration[1]"),
    ("duplicate-ids", ONE_ITEM + "  - id: a\n    prompt: bye\n    start_image: https://e.org/b.png\n",
     {}, "duplicate item id 'a'", 9, "items[1]"),
    ("duplicate-ids-from-vars",
     ONE_ITEM.replace("\"hello\"", "\"{x}\"") + "    vars: {x: [\"a b\", \"a-b\"]}\n", {},
     "duplicate item id 'a.a-b'", 6, "items[0]"),
    ("id-escapes", ONE_ITEM.replace("id: a", "id: ../evil"), {}, "not a safe id", 6, "items[0].id"),
    ("name-escapes", ONE_ITEM.replace("name: t", "name: ../t"), {}, "not a safe id", 2, "name"),
    ("repeat-0", ONE_ITEM + "repeat: 0\n", {}, "greater than or equal to 1", 9, "repeat"),
    ("undefined-placeholder", ONE_ITEM.replace("hello", "hello {season}"), {},
     "undefined placeholder {season}", 7, "items[0].prompt"),
    ("items-from-missing", HEAD + "items_from: rows.csv\n", {}, "file not found", 5, "items_from"),
    ("items-from-extension", HEAD + "items_from: rows.txt\n", {"rows.txt": b"a"}, "expected a .csv",
     5, "items_from"),
    ("items-from-lacks-column",
     HEAD + "defaults: {prompt: \"a {animal}\", start_image: https://e.org/a.png}\nitems_from: r.csv\n",
     {"r.csv": b"id,colour\nx,red\n"}, "no column 'animal'", 2, "animal"),
    ("items-from-bad-cell", HEAD + "items_from: r.csv\n",
     {"r.csv": b"id,prompt,start_image,duration\nx,hi,https://e.org/a.png,5\ny,hi,https://e.org/a.png,long\n"},
     "valid integer", 3, "duration"),
    ("items-from-bad-json", HEAD + "items_from: r.jsonl\n",
     {"r.jsonl": b'{"id": "x", "prompt": "hi"}\n{"id": \n'}, "invalid JSON", 2, "row"),
    ("items-from-bad-id", HEAD + "defaults: {start_image: https://e.org/a.png}\nitems_from: r.csv\n",
     {"r.csv": b"id,prompt\n../x,hi\n"}, "not a safe id", 2, "id"),
    ("negative-concurrency", ONE_ITEM + "limits: {max_concurrency: -1}\n", {}, "greater than or equal",
     9, "limits.max_concurrency"),
    ("negative-budget", ONE_ITEM + "limits:\n  max_cost_usd: -5\n", {}, "greater than or equal", 10,
     "limits.max_cost_usd"),
    ("negative-queue-depth", ONE_ITEM + "limits: {queue_depth: -1}\n", {}, "greater than or equal",
     9, "limits.queue_depth"),
    ("negative-rpm", ONE_ITEM + "limits:\n  requests_per_minute: 0\n", {}, "greater than or equal",
     10, "limits.requests_per_minute"),
    ("polling-order", ONE_ITEM + "polling: {min_interval_s: 30, max_interval_s: 5}\n", {},
     "at least min_interval_s", 9, "polling"),
    ("retry-zero", ONE_ITEM + "retry: {max_attempts: 0}\n", {}, "greater than or equal", 9,
     "retry.max_attempts"),
    ("no-items", HEAD, {}, "no items", None, "items"),
    ("missing-video", HEAD.replace("image-to-video", "video-edit") + "items:\n  - id: a\n    prompt: x\n",
     {}, "needs video", 6, "items[0].video"),
    ("local-video-not-video", edit_manifest("clip.mp4"), {"clip.mp4": PNG}, "is not a video", 8,
     "items[0].video"),
    ("too-many-reference-images", ref_manifest("@Element1", 1, 0)
     + "    elements:\n      - frontal_image: https://e.org/f.png\n        reference_images: "
       "[a.png, b.png, c.png, d.png, e.png]\n", {f"{n}.png": PNG for n in "abcde"},
     "5 reference images", 10, "items[0].elements"),
    ("empty-vars-list", ONE_ITEM + "    vars: {x: []}\n", {}, "empty list", 9, "items[0].vars.x"),
    ("alias-bomb", HEAD + "a: &a [x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"l{n}: &l{n} [{', '.join(['*' + ('a' if n == 0 else f'l{n-1}')] * 9)}]\n"
               for n in range(4)), {}, "more than 20 YAML aliases", 8, "yaml"),
]


@pytest.mark.parametrize("name, text, files, message, line, field", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path: Path, name, text, files, message, line, field):
    for file_name, data in files.items():
        (tmp_path / file_name).write_bytes(data)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        plan_batch(path, Settings())
    exc = caught.value
    assert message in exc.message
    assert (exc.line, exc.field) == (line, field)
    assert exc.file.endswith(("m.yaml", *files))


def test_distinct_cases_are_many():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


def test_non_utf8(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_bytes(ONE_ITEM.encode() + b"# caf\xe9\n")
    with pytest.raises(ManifestError, match="not UTF-8") as caught:
        plan_batch(path, Settings())
    assert (caught.value.line, caught.value.field) == (9, "encoding")


def test_manifest_over_max_bytes(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(ONE_ITEM)
    with pytest.raises(ManifestError, match="more than max_manifest_bytes"):
        plan_batch(path, Settings(max_manifest_bytes=50))


def test_items_from_over_max_bytes(tmp_path: Path):
    (tmp_path / "r.csv").write_text("id,prompt\n" + "x,y\n" * 100)
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + "items_from: r.csv\n")
    with pytest.raises(ManifestError, match="more than max_items_from_bytes") as caught:
        plan_batch(path, Settings(max_items_from_bytes=100))
    assert caught.value.file.endswith("r.csv")


def test_expansion_past_cap_is_counted_first(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(ONE_ITEM + "repeat: 1000000000\n")
    with pytest.raises(ManifestError, match="expands to 1,000,000,000 items") as caught:
        plan_batch(path, Settings(max_items=100_000))
    assert (caught.value.line, caught.value.field) == (9, "repeat")


def test_missing_file(tmp_path: Path):
    with pytest.raises(ManifestError, match="cannot read"):
        plan_batch(tmp_path / "absent.yaml", Settings())


def test_error_line_format(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(ONE_ITEM + "    duration: 7\n")
    with pytest.raises(ManifestError) as caught:
        plan_batch(path, Settings())
    assert str(caught.value) == f"{path}:9: items[0].duration: 7 is not allowed; expected one of 5, 10"
