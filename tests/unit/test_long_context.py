"""A request is long-context when its input exceeds its model's threshold, and only then."""

from __future__ import annotations

from metering.billing.long_context import is_long_context


def test_a_request_is_long_context_only_strictly_above_its_models_threshold() -> None:
    assert not is_long_context(200_000, 200_000)
    assert is_long_context(200_001, 200_000)


def test_a_model_without_a_threshold_has_no_long_context_requests() -> None:
    assert not is_long_context(10**9, None)


def test_a_threshold_of_zero_makes_every_request_with_input_long_context() -> None:
    assert is_long_context(1, 0)
    assert not is_long_context(0, 0)
