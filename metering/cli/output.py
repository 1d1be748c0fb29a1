"""Rendering result rows as a table, JSON or CSV for the command line; progress bars."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Protocol

import orjson

from metering.billing.utc import rfc3339
from metering.files.csv_cells import csv_cell


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


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
    return _table(rows, columns)


_GAP: Final = "   "
"""Between two columns: a space of padding either side of a blank rule."""
_BOLD, _PLAIN = "\x1b[1m", "\x1b[0m"


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows laid out in columns: numbers right-aligned, nothing wrapped or cut, so a line per
    row whatever the terminal's width; a rule under the headers (bold on a terminal).

    The layout is rich's (``Table`` with ``box.SIMPLE_HEAD``, no edge), measured with its
    cell widths, but written directly: rich took a second for a thousand rows, the table
    `metering invoices close` prints for a thousand tenants. Cells that are not plain
    printable text (line breaks, tabs, control characters) are left to rich, which knows how
    to lay them out; tests/unit/test_output.py holds the two to the same output."""
    from rich.cells import cell_len

    cells = [[_cell(row[c]) for c in columns] for row in rows]
    if not all(text.isprintable() for line in [columns, *cells] for text in line):
        return _rich_table(rows, columns)
    widths = [max(map(cell_len, texts)) for texts in zip(columns, *cells, strict=True)]
    right = [_numeric(rows, column) for column in columns]

    def line(texts: Sequence[str]) -> str:
        padded = []
        for text, width, flush_right in zip(texts, widths, right, strict=True):
            if flush_right:  # as rich does, what trails a right-aligned text goes
                text = text.rstrip()
            space = " " * (width - cell_len(text))
            padded.append(space + text if flush_right else text + space)
        return _GAP.join(padded).rstrip()

    header = line(columns)
    if sys.stdout.isatty():
        header = _BOLD + header + _PLAIN
    rule = "─" * (sum(widths) + len(_GAP) * (len(widths) - 1))
    return "\n".join([header, rule, *map(line, cells)])


def _numeric(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    return bool(rows) and all(
        (isinstance(row[column], int | Decimal) and not isinstance(row[column], bool))
        or row[column] is None
        for row in rows
    )


def _rich_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``_table``'s layout, by rich itself."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(
            column, justify="right" if _numeric(rows, column) else "left", no_wrap=True
        )
    for row in rows:
        table.add_row(*(Text(_cell(row[c])) for c in columns))
    out = io.StringIO()
    console = Console(file=out, width=100_000, force_terminal=sys.stdout.isatty(), highlight=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """A progress bar on stderr while the block runs, when stderr is a terminal; otherwise
    nothing, so that logs and pipes get no carriage-return lines."""
    if not sys.stderr.isatty():
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total, detail="")

        def advance(done: int, total: int | None = None, detail: str = "") -> None:
            bar.update(task, completed=done, total=total, detail=detail)

        yield advance


class Advance(Protocol):
    """Reports progress: ``done`` of ``total`` (if known by now), and a short detail."""

    def __call__(self, done: int, total: int | None = None, detail: str = "") -> None: ...


def _ignore(done: int, total: int | None = None, detail: str = "") -> None:
    """Progress that nobody watches."""
