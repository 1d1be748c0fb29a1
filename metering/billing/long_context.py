"""Whether a request is long-context: what ingest stores as a ledger row's ``long_context``.

Some providers price the tokens of a request whose input exceeds the model's threshold
(``models.long_context_above``, which price imports keep in step with the long-context
prices) at other rates. Hourly sums cannot tell such requests apart, so each request is
judged as it is ingested, and its usage is kept in aggregate rows of its own.
"""

from __future__ import annotations


def is_long_context(input_tokens: int, threshold: int | None) -> bool:
    """Strictly above the model's threshold; a model without one has no long-context requests.

    ``input_tokens`` counts all the request's input, cached and cache-write tokens included.
    """
    return threshold is not None and input_tokens > threshold
