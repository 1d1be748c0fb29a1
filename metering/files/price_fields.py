"""What the YAML and CSV price files share: the error that lists a file's problems, the
checks of one entry's field values, and the validation of the entries together."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

from metering.billing.price_book import PriceBook
from metering.billing.prices import PriceBookError, PriceEntry

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


class PriceFileError(ValueError):
    """A price file that cannot be imported. ``problems`` holds one ``file:line: ...`` line
    per problem; ``str()`` joins them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def validated_entries(entries: list[PriceEntry], problems: list[str]) -> list[PriceEntry]:
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


class EntryFields:
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
