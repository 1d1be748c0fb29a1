"""Event ids as the producer mints them: time-ordered UUIDs (version 7, RFC 9562).

Any UUID is a valid ``event_id`` and is deduplicated the same way. A time-ordered one is
cheaper to keep: ids minted later sort later, so the ledger's unique index grows at its
right edge, and after each checkpoint a drain re-images a few hot index pages instead of
one page per event spread over the whole index (docs/performance.md, the growth case).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
RANDOM_BITS: Final = 74
"""What a version 7 UUID leaves to chance: 12 bits after the version, 62 after the variant."""


def uuid7(at: datetime | None = None, random_bits: int | None = None) -> uuid.UUID:
    """A version 7 UUID: 48 bits of Unix milliseconds of ``at`` (default now), the version,
    12 random bits, the RFC variant, 62 random bits. ``random_bits`` (74 bits) makes it
    reproducible, for generated traffic; by default they come from ``secrets``."""
    ms = ((at or datetime.now(UTC)) - _EPOCH) // _MS
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"a version 7 UUID holds instants from 1970 to 10889, got {at!r}")
    rand = secrets.randbits(RANDOM_BITS) if random_bits is None else random_bits
    if not 0 <= rand < 1 << RANDOM_BITS:
        raise ValueError(f"random_bits must be a {RANDOM_BITS}-bit number, got {rand}")
    return uuid.UUID(
        int=ms << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    )
