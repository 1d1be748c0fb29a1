"""Rendering result rows as a table, JSON or CSV for the command line."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def csv_cell(value: Any) -> Any:
    """A CSV cell: dates as ISO text, booleans as ``true``/``false`` as the JSON has them
    (``csv`` writes ``None`` as an empty cell)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact; never a float
    raise TypeError(f"not serialisable: {type(value).__name__}")


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: Format) -> str:
    if fmt is Format.json:
        data = [{c: row[c] for c in columns} for row in rows]
        return orjson.dumps(data, default=_json_default, option=orjson.OPT_INDENT_2).decode()
    if fmt is Format.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(row[c]) for c in columns])
        return out.getvalue().rstrip("\n")
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row[c], int | Decimal) or row[c] is None for row in rows) and bool(rows)
        for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])
