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
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from metering.billing.events import SERVICE_TIERS
from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceBookError, PriceEntry
from metering.billing.tokens import TOKEN_CLASSES
from metering.config import RESOURCE_ROOT

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

_PRICE_SHAPE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_COUNT_SHAPE: Final = re.compile(r"[0-9](?:_?[0-9])*")
_DATE_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_SHAPE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
ISO_4217: Final = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG""".split()  # noqa: SIM905
)
"""The active ISO 4217 currency codes (not funds, metals or testing codes)."""
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_BLOCK_KEYS: Final = ("model", "currency", "effective_from", "effective_to", "long_context")
_TOP_KEYS: Final = ("currency", "prices")


class PriceFileError(ValueError):
    """A price file that cannot be imported. ``problems`` holds one ``file:line: ...`` line
    per problem; ``str()`` joins them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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


def parse_price_yaml(text: str, source: str) -> list[PriceEntry]:
    """Entries of a YAML price file's ``text``; ``source`` names it in messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PriceFileError(
            [
                f"{source}:{line}: not valid YAML: {exc.problem or exc}; check indentation and"
                " quoting"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise PriceFileError([f"{source}: not valid YAML: {exc}"]) from None
    reader = _YamlReader(source)
    entries = reader.read(root)
    return _validated(entries, reader.problems)


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
        fields = _Fields(where, problems)
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
    return _validated(entries, problems)


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a file would do to the stored entries. ``changed`` pairs a stored entry
    with an incoming one of the same ``key`` but another price or ``effective_to``; an
    importer should refuse those unless told to replace (they may alter closed periods)."""

    added: tuple[PriceEntry, ...]
    unchanged: tuple[PriceEntry, ...]
    changed: tuple[tuple[PriceEntry, PriceEntry], ...]

    @property
    def is_noop(self) -> bool:
        return not self.added and not self.changed


def plan_import(stored: Iterable[PriceEntry], incoming: Iterable[PriceEntry]) -> ImportPlan:
    """Compare a file's entries with the stored ones by ``PriceEntry.key``."""
    by_key = {entry.key: entry for entry in stored}
    added: list[PriceEntry] = []
    unchanged: list[PriceEntry] = []
    changed: list[tuple[PriceEntry, PriceEntry]] = []
    for entry in incoming:
        old = by_key.get(entry.key)
        if old is None:
            added.append(entry)
        elif old == entry:
            unchanged.append(entry)
        else:
            changed.append((old, entry))
    return ImportPlan(tuple(added), tuple(unchanged), tuple(changed))


@dataclass(frozen=True, slots=True)
class Repricing:
    """A span of time, ``[since, until)`` (``until`` ``None``: open-ended), in which an import
    changes the prices of a model and service tier that already had prices. Only such spans
    can change what a closed period billed. ``entry`` is the incoming entry responsible."""

    entry: PriceEntry
    since: datetime
    until: datetime | None

    def reaches_before(self, moment: datetime) -> bool:
        return self.since < moment


def repricings(stored: Iterable[PriceEntry], plan: ImportPlan) -> tuple[Repricing, ...]:
    """Where ``plan`` changes prices already in effect, in the order of its entries.

    An added entry for a model and tier already priced changes them over its own span; one
    for a model or tier without prices changes nothing billed (usage without a price cannot
    have been invoiced). A changed entry with another price changes them from its start to
    the later of its two ends; one with another end only, between the two ends."""
    priced = {(e.model, e.service_tier) for e in stored}
    spans = [
        Repricing(e, e.effective_from, e.effective_to)
        for e in plan.added
        if (e.model, e.service_tier) in priced
    ]
    for old, new in plan.changed:
        ends = (old.effective_to, new.effective_to)
        later = None if None in ends else max(e for e in ends if e is not None)
        if old.price_per_million != new.price_per_million:
            spans.append(Repricing(new, new.effective_from, later))
        else:
            spans.append(Repricing(new, min(e for e in ends if e is not None), later))
    return tuple(spans)


def _validated(entries: list[PriceEntry], problems: list[str]) -> list[PriceEntry]:
    if problems:
        raise PriceFileError(sorted(problems, key=_line_of))
    try:
        PriceBook(entries)
    except PriceBookError as exc:
        raise PriceFileError([str(exc)]) from None
    return entries


def _line_of(problem: str) -> int:
    """The line number in ``file:line: ...``, to report problems in file order."""
    match = re.match(r".*?:([0-9]+): ", problem)
    return int(match[1]) if match else 0


class _Fields:
    """Converts the text of one entry's fields, collecting problems instead of raising."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        self.ok = True

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(f"{self.where}: {message}")

    def text(self, name: str, value: str) -> str:
        if not value:
            self.fail(f"{name} is missing")
        return value

    def choice(self, name: str, value: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if value not in allowed:
            self.fail(f"{name} {value!r} is not one of {', '.join(allowed)}")
        return value

    def currency(self, value: str) -> str:
        if value not in ISO_4217:
            self.fail(f"currency {value!r} must be an ISO 4217 code such as USD")
        return value

    def price(self, name: str, value: str) -> Decimal:
        if value.startswith("-") and _PRICE_SHAPE.fullmatch(value[1:]):
            self.fail(f"{name} {value} must not be negative: write 0 or more, such as 2.50")
            return Decimal(0)
        if not _PRICE_SHAPE.fullmatch(value):
            self.fail(
                f"{name} {value!r} is not a price: write a plain decimal amount per 1M tokens"
                " such as 2.50 (no currency sign, exponent or thousands separator)"
            )
            return Decimal(0)
        return Decimal(value)

    def count(self, name: str, value: str, optional: bool = False) -> int | None:
        if not value and optional:
            return None
        if not _COUNT_SHAPE.fullmatch(value) or int(value.replace("_", "")) <= 0:
            self.fail(
                f"{name} {value!r} is not a number of tokens: write a whole number above 0"
                " such as 200000 or 200_000"
            )
            return None
        return int(value.replace("_", ""))

    def moment(self, name: str, value: str, optional: bool = False) -> datetime | None:
        if not value and optional:
            return None
        try:
            if _DATE_SHAPE.fullmatch(value):
                return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            if _DATETIME_SHAPE.fullmatch(value):
                return datetime.fromisoformat(value.upper().replace(" ", "T"))
        except ValueError as exc:
            self.fail(f"{name} {value!r} is not a real date: {exc}")
            return None
        self.fail(
            f"{name} {value!r} must be a date (2026-11-01, meaning 00:00 UTC) or a time with"
            " an offset (2026-11-01T00:00:00Z)"
        )
        return None

    def entry(
        self,
        *,
        model: str,
        token_class: str,
        service_tier: str,
        currency: str,
        price: Decimal,
        effective_from: datetime | None,
        effective_to: datetime | None,
        tier_up_to: int | None,
        long_context_above: int | None,
    ) -> PriceEntry | None:
        if not self.ok or effective_from is None:
            return None
        try:
            return PriceEntry(
                model=model,
                token_class=token_class,  # type: ignore[arg-type]  # PriceEntry converts it
                service_tier=service_tier,
                currency=currency,
                price_per_million=price,
                effective_from=effective_from,
                effective_to=effective_to,
                tier_up_to=tier_up_to,
                long_context_above=long_context_above,
                source=self.where,
            )
        except PriceBookError as exc:
            self.ok = False
            self.problems.append(str(exc))  # already starts with the entry's file:line
            return None


class _YamlReader:
    """Walks the composed YAML node tree, so that every value keeps its line number and no
    number is ever read as a float."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def at(self, node: Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def fail(self, node: Node, message: str) -> None:
        self.problems.append(f"{self.at(node)}: {message}")

    def read(self, root: Node | None) -> list[PriceEntry]:
        if root is None:
            self.problems.append(f"{self.source}:1: the file is empty: see docs/billing.md")
            return []
        top = self.mapping(root, "the file", _TOP_KEYS)
        if top is None:
            return []
        currency = None
        if "currency" in top:
            currency = self.scalar(top["currency"][1])
            if currency is None or not self.currency_ok(top["currency"][1], currency):
                return []
        if "prices" not in top:
            self.fail(root, "no 'prices:' list: add one with a block per model")
            return []
        prices = top["prices"][1]
        if not isinstance(prices, SequenceNode):
            self.fail(prices, "'prices' must be a list of model blocks, each starting '- model:'")
            return []
        entries: list[PriceEntry] = []
        for block in prices.value:
            entries.extend(self.block(block, currency))
        return entries

    def block(self, node: Node, default_currency: str | None) -> Iterator[PriceEntry]:
        keys = self.mapping(node, "a model block", (*_BLOCK_KEYS, *SERVICE_TIERS))
        if keys is None:
            return
        model_node = keys.get("model", (None, None))[1]
        if model_node is None:
            self.fail(node, "the block has no 'model:'; name the model it prices")
            return
        model = self.scalar(model_node) or ""
        if not model:
            self.fail(model_node, "the model name is empty")
            return
        currency_node = keys["currency"][1] if "currency" in keys else None
        currency = self.scalar(currency_node) if currency_node is not None else default_currency
        if currency is None:
            self.fail(node, f"no currency for {model}: add 'currency: USD' to the block or file")
            return
        if currency_node is not None and not self.currency_ok(currency_node, currency):
            return
        if "effective_from" not in keys:
            self.fail(node, f"{model} has no effective_from: add e.g. 'effective_from: 2026-01-01'")
            return
        start = self.moment(keys["effective_from"][1], "effective_from")
        end = None
        if "effective_to" in keys and not self.is_null(keys["effective_to"][1]):
            end = self.moment(keys["effective_to"][1], "effective_to")
            if end is None:
                return
        if start is None:
            return
        span = (model, currency, start, end)
        if not any(tier in keys for tier in SERVICE_TIERS):
            self.fail(node, f"{model} prices no service tier: add {', '.join(SERVICE_TIERS)}")
        for tier in SERVICE_TIERS:
            if tier in keys:
                yield from self.tier(keys[tier][1], span, tier, None)
        if "long_context" in keys:
            yield from self.long_context(keys["long_context"][1], span)

    def long_context(
        self, node: Node, span: tuple[str, str, datetime, datetime | None]
    ) -> Iterator[PriceEntry]:
        keys = self.mapping(node, "'long_context'", ("above", *SERVICE_TIERS))
        if keys is None:
            return
        if "above" not in keys:
            self.fail(node, "long_context needs 'above: N', the input tokens a request exceeds")
            return
        above_node = keys["above"][1]
        above = _Fields(self.at(above_node), self.problems).count(
            "long_context.above", self.scalar(above_node) or ""
        )
        if above is None:
            return
        for tier in SERVICE_TIERS:
            if tier in keys:
                yield from self.tier(keys[tier][1], span, tier, above)

    def tier(
        self,
        node: Node,
        span: tuple[str, str, datetime, datetime | None],
        service_tier: str,
        long_context_above: int | None,
    ) -> Iterator[PriceEntry]:
        keys = self.mapping(node, f"'{service_tier}'", TOKEN_CLASSES)
        if keys is None:
            return
        for token_class, (_, value) in keys.items():
            if isinstance(value, SequenceNode):
                if long_context_above is not None:
                    self.fail(value, "long-context prices cannot have bands: give one price")
                    continue
                for band in value.value:
                    band_keys = self.mapping(band, "a band", ("up_to", "price"))
                    if band_keys is None:
                        continue
                    if "price" not in band_keys:
                        self.fail(band, "the band has no 'price:'")
                        continue
                    up_to = None
                    if "up_to" in band_keys:
                        up_node = band_keys["up_to"][1]
                        up_to = _Fields(self.at(up_node), self.problems).count(
                            "up_to", self.scalar(up_node) or ""
                        )
                        if up_to is None:
                            continue
                    entry = self.entry(
                        band_keys["price"][1], span, token_class, service_tier, up_to, None
                    )
                    if entry is not None:
                        yield entry
            else:
                entry = self.entry(value, span, token_class, service_tier, None, long_context_above)
                if entry is not None:
                    yield entry

    def entry(
        self,
        node: Node,
        span: tuple[str, str, datetime, datetime | None],
        token_class: str,
        service_tier: str,
        tier_up_to: int | None,
        long_context_above: int | None,
    ) -> PriceEntry | None:
        model, currency, start, end = span
        fields = _Fields(self.at(node), self.problems)
        text = self.scalar(node)
        if text is None:
            return None
        return fields.entry(
            model=model,
            token_class=token_class,
            service_tier=service_tier,
            currency=currency,
            price=fields.price(f"the {token_class} price of {model} {service_tier}", text),
            effective_from=start,
            effective_to=end,
            tier_up_to=tier_up_to,
            long_context_above=long_context_above,
        )

    def mapping(
        self, node: Node, what: str, allowed: Iterable[str]
    ) -> dict[str, tuple[Node, Node]] | None:
        """``{key: (key node, value node)}``; unknown and repeated keys are problems."""
        allowed = tuple(allowed)
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping of {', '.join(allowed)}")
            return None
        result: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if key is None:
                continue
            if key in result:
                first = result[key][0].start_mark.line + 1
                self.fail(key_node, f"{key!r} appears twice in {what} (first on line {first})")
            elif key not in allowed:
                self.fail(key_node, f"unknown key {key!r} in {what}: expected {', '.join(allowed)}")
            else:
                result[key] = (key_node, value_node)
        return result

    def currency_ok(self, node: Node, currency: str) -> bool:
        if currency in ISO_4217:
            return True
        self.fail(node, f"currency {currency!r} must be an ISO 4217 code such as USD")
        return False

    def moment(self, node: Node, name: str) -> datetime | None:
        return _Fields(self.at(node), self.problems).moment(name, self.scalar(node) or "")

    def scalar(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            self.fail(node, "expected a single value here, not a list or mapping")
            return None
        return "" if node.tag == _NULL_TAG else str(node.value).strip()

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _NULL_TAG
