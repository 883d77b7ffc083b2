"""The one sanitiser: what may appear in an id part or a file name. Nothing built from user input
can leave its folder or differ only in characters a file system would fold together."""

from __future__ import annotations

import re

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")
_NOT_FILE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 200


def id_part(text: str) -> str:
    """``text`` reduced to letters, digits, '_' and '-' (a label inside an item id)."""
    return _NOT_ID.sub("-", text).strip("-")


def file_name(text: str) -> str:
    """``text`` as a plain file name that cannot leave its folder: [A-Za-z0-9._-] only, no leading
    or trailing dots or underscores, at most MAX_STEM characters; empty when nothing is left."""
    return _NOT_FILE.sub("_", text).strip("._")[:MAX_STEM]


def file_stem(item_id: str) -> str:
    """The file name stem of an item's video and sidecar."""
    return file_name(item_id) or "item"


def file_key(item_id: str) -> str:
    """What two ids must not share: their file name as a case-insensitive file system sees it."""
    return file_stem(item_id).casefold()
