"""How every CSV file we write spells a value: the same text as the JSON beside it."""

from __future__ import annotations

from datetime import date
from typing import Any


def csv_cell(value: Any) -> Any:
    """A CSV cell: dates as ISO text, booleans as ``true``/``false`` as the JSON has them
    (``csv`` writes ``None`` as an empty cell)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return value
