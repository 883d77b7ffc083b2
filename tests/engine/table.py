"""Rule tables as pytest parameters: each row is ``(id, *values)``; ``xfail`` maps a row's id to
the reason it is known to fail (strict: it must fail until the engine is fixed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest


def rows(table: Sequence[tuple[Any, ...]], xfail: dict[str, str] | None = None) -> list[Any]:
    known = xfail or {}
    return [pytest.param(*row[1:], id=row[0],
                         marks=[pytest.mark.xfail(strict=True, reason=known[row[0]])] if row[0] in known else [])
            for row in table]
