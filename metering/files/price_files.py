"""Price files: YAML or CSV in, validated ``PriceEntry`` values out (``metering prices import``).

Every problem is reported as ``file:line: what is wrong and how to fix it``, all of them at
once where they are independent. The entries are then checked together as a ``PriceBook``
(overlaps, bands without a top, models without input or output prices). Loading is
deterministic, so importing the same file twice yields equal entries and, with
``plan_import``, nothing to change. The formats are described in ``docs/billing.md``.

YAML, one block per model and time span::

    currency: USD                      # default for the blocks below
    prices:
      - model: gpt-4.1
        effective_from: 2025-01-01     # a date is 00:00 UTC; or 2025-01-01T00:00:00Z
        effective_to: null             # optional, exclusive
        standard: {input: 2.00, cached_input: 0.50, output: 8.00}
        batch:
          input:                       # graduated bands over the period's volume
            - {up_to: 1_000_000_000, price: 1.00}
            - {price: 0.90}
          output: 4.00
        long_context:                  # optional: requests above 200,000 input tokens
          above: 200_000
          standard: {input: 4.00, output: 16.00}

CSV, one entry per row with a header; ``#`` lines are comments::

    model,token_class,service_tier,currency,price_per_million,effective_from,effective_to,tier_up_to,long_context_above
    gpt-4.1,input,standard,USD,2.00,2025-01-01,,,
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Final

from metering.billing.events import SERVICE_TIERS
from metering.billing.prices import PriceEntry
from metering.billing.tokens import TOKEN_CLASSES
from metering.config import RESOURCE_ROOT
from metering.files.price_fields import (
    EntryFields,
    PriceFileError,
    validated_entries,
)
from metering.files.price_yaml import (
    parse_price_yaml,
)

CSV_COLUMNS: Final = (
    "model",
    "token_class",
    "service_tier",
    "currency",
    "price_per_million",
    "effective_from",
    "effective_to",
    "tier_up_to",
    "long_context_above",
)
_CSV_REQUIRED: Final = CSV_COLUMNS[:6]


LIST_PRICES: Final = RESOURCE_ROOT / "prices" / "list-prices.yaml"
"""The platform's list prices, which price every model of the demo catalog."""


def load_price_file(path: str | Path) -> list[PriceEntry]:
    """Read, parse and validate a ``.yaml``/``.yml`` or ``.csv`` price file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        raise PriceFileError(
            [f"{path}: unsupported file type {suffix or '(none)'!r}: use .yaml, .yml or .csv"]
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError([f"{path}: cannot read the file: {exc}"]) from None
    if suffix == ".csv":
        return parse_price_csv(text, str(path))
    return parse_price_yaml(text, str(path))


def parse_price_csv(text: str, source: str) -> list[PriceEntry]:
    """Entries of a CSV price file's ``text``; ``source`` names it in messages."""
    problems: list[str] = []
    entries: list[PriceEntry] = []
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    for row in rows:
        line = rows.line_num
        if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if header is None:
            header = cells
            unknown = [c for c in header if c not in CSV_COLUMNS]
            missing = [c for c in _CSV_REQUIRED if c not in header]
            if unknown or missing or len(set(header)) != len(header):
                raise PriceFileError(
                    [
                        f"{source}:{line}: the header must name the columns"
                        f" {', '.join(CSV_COLUMNS)} (the last three optional), each once;"
                        + (f" unknown: {', '.join(unknown)};" if unknown else "")
                        + (f" missing: {', '.join(missing)};" if missing else "")
                        + " fix the header row"
                    ]
                )
            continue
        where = f"{source}:{line}"
        if len(cells) != len(header):
            problems.append(
                f"{where}: {len(cells)} cells but the header has {len(header)}; quote cells"
                " that contain commas"
            )
            continue
        values = dict(zip(header, cells, strict=True))
        fields = EntryFields(where, problems)
        entry = fields.entry(
            model=fields.text("model", values["model"]),
            token_class=fields.choice("token_class", values["token_class"], TOKEN_CLASSES),
            service_tier=fields.choice("service_tier", values["service_tier"], SERVICE_TIERS),
            currency=fields.currency(values["currency"]),
            price=fields.price("price_per_million", values["price_per_million"]),
            effective_from=fields.moment("effective_from", values["effective_from"]),
            effective_to=fields.moment("effective_to", values.get("effective_to", ""), True),
            tier_up_to=fields.count("tier_up_to", values.get("tier_up_to", ""), True),
            long_context_above=fields.count(
                "long_context_above", values.get("long_context_above", ""), True
            ),
        )
        if entry is not None:
            entries.append(entry)
    if header is None:
        raise PriceFileError([f"{source}:1: no header row: start with {','.join(CSV_COLUMNS)}"])
    return validated_entries(entries, problems)
