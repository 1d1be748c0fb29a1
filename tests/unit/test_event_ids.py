import uuid
from datetime import UTC, datetime, timedelta

import pytest

from metering.produce.event_ids import RANDOM_BITS, uuid7
from metering.produce.producer import usage_event

NOON = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def test_a_minted_event_id_is_a_version_7_uuid_of_the_rfc_variant():
    event_id = uuid7()
    assert (event_id.version, event_id.variant) == (7, uuid.RFC_4122)


def test_its_first_48_bits_are_the_unix_milliseconds_of_the_instant():
    assert uuid7(NOON).int >> 80 == int(NOON.timestamp()) * 1000
    assert uuid7(NOON + timedelta(microseconds=2_999)).int >> 80 == int(NOON.timestamp()) * 1000 + 2


def test_ids_minted_later_sort_later_whatever_their_random_bits():
    earlier = uuid7(NOON, (1 << RANDOM_BITS) - 1)
    later = uuid7(NOON + timedelta(milliseconds=1), 0)
    assert str(earlier) < str(later)
    assert earlier.bytes < later.bytes


def test_the_same_instant_and_random_bits_give_the_same_id_and_every_random_bit_counts():
    assert uuid7(NOON, 12345) == uuid7(NOON, 12345)
    ids = {uuid7(NOON, 1 << bit) for bit in range(RANDOM_BITS)}
    assert len(ids) == RANDOM_BITS
    assert all((i.version, i.variant) == (7, uuid.RFC_4122) for i in ids)


@pytest.mark.parametrize(
    ("at", "random_bits"),
    [(datetime(1969, 12, 31, tzinfo=UTC), 0), (NOON, -1), (NOON, 1 << RANDOM_BITS)],
)
def test_what_a_version_7_uuid_cannot_hold_is_refused(at, random_bits):
    with pytest.raises(ValueError):
        uuid7(at, random_bits)


def test_the_producer_mints_a_time_ordered_id_when_the_caller_gives_none():
    event = usage_event(tenant_id="acme", model="m1", usage={"input_tokens": 1, "output_tokens": 1})
    assert event.event_id.version == 7
    assert abs((event.event_id.int >> 80) - datetime.now(UTC).timestamp() * 1000) < 60_000
