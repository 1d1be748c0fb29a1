"""Moments in UTC: the one way we check, write and read them.

Every timestamp we write (events, quota messages, error messages, exports) is RFC 3339 in UTC
with a ``Z``, e.g. ``2026-11-25T10:00:00Z``; fractions of a second appear only when the
moment has them, unless ``to_seconds`` drops them for a message a person reads.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC; ``ValueError`` naming ``name`` when it has no time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def rfc3339(moment: datetime, *, to_seconds: bool = False) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z``: ``2025-05-01T12:00:00.250000Z``, or
    ``2025-05-01T12:00:00Z`` with ``to_seconds``."""
    text = moment.astimezone(UTC).isoformat(timespec="seconds" if to_seconds else "auto")
    return text.replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """What ``rfc3339`` wrote (or any ISO 8601 time with an offset), as a UTC ``datetime``."""
    return as_utc(datetime.fromisoformat(text), "time")
