"""The quota messages as JSON: ``quota.state`` signals, ``quota.alerts`` and the stored state.

The contract for consumers is ``docs/quotas.md``; keep the two in step. Tokens are JSON
integers; money is a plain decimal string (never a float, no exponent); times are RFC 3339
with ``Z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from metering.billing.quotas.limits import (
    Amount,
    LimitKind,
    QuotaStatus,
    amount_json,
)
from metering.billing.quotas.state import (
    Alert,
    ModelUsage,
    QuotaSignal,
    TenantQuotaState,
    Window,
)
from metering.billing.utc import parse_rfc3339, rfc3339

STATE_JSON_VERSION: Final = 1


def signal_to_json(signal: QuotaSignal) -> bytes:
    """The value for topic ``quota.state`` (key: ``tenant_id``)."""
    return orjson.dumps(_signal_document(signal))


def signal_from_json(raw: bytes | str) -> QuotaSignal:
    return _signal_from_document(orjson.loads(raw))


def alert_to_json(alert: Alert) -> bytes:
    """The value for topic ``quota.alerts`` (key: ``tenant_id``)."""
    return orjson.dumps(
        {
            "alert_id": str(alert.alert_id),
            "tenant_id": alert.tenant_id,
            "limit_id": alert.limit_id,
            "kind": alert.kind.value,
            "model": alert.model,
            "hard": alert.hard,
            "threshold": alert.threshold,
            "limit": amount_json(alert.limit),
            "used": amount_json(alert.used),
            "period_start": rfc3339(alert.period_start),
            "period_end": rfc3339(alert.period_end),
            "event_id": None if alert.event_id is None else str(alert.event_id),
            "emitted_at": rfc3339(alert.emitted_at),
        }
    )


def state_to_json(state: TenantQuotaState) -> bytes:
    """Compact JSON of the state, for a changelog or a database row. Usage per model is
    ``[tokens, "spend"]``; alerted thresholds are ``[limit_id, threshold]``."""
    document = {
        "v": STATE_JSON_VERSION,
        "tenant_id": state.tenant_id,
        "revision": state.revision,
        "periods_from": _optional_time_json(state.periods_from),
        "minutes_from": _optional_time_json(state.minutes_from),
        "periods": _windows_document(state.periods),
        "minutes": _windows_document(state.minutes),
        "signal": None if state.signal is None else _signal_document(state.signal),
        "anchor_day": state.anchor_day,
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def state_from_json(raw: bytes | str) -> TenantQuotaState:
    document = orjson.loads(raw)
    if document.get("v") != STATE_JSON_VERSION:
        raise ValueError(f"unsupported quota state version {document.get('v')!r}")
    signal = document["signal"]
    return TenantQuotaState(
        tenant_id=document["tenant_id"],
        periods=_windows_from_document(document["periods"]),
        minutes=_windows_from_document(document["minutes"]),
        periods_from=_optional_time(document["periods_from"]),
        minutes_from=_optional_time(document["minutes_from"]),
        signal=None if signal is None else _signal_from_document(signal),
        revision=document["revision"],
        anchor_day=document.get("anchor_day", 1),  # states stored before it: calendar months
    )


def _amount_from_json(value: int | str) -> Amount:
    return Decimal(value) if isinstance(value, str) else value


def _optional_time_json(at: datetime | None) -> str | None:
    return None if at is None else rfc3339(at)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _signal_document(signal: QuotaSignal) -> dict[str, Any]:
    return {
        "tenant_id": signal.tenant_id,
        "state": signal.state.value,
        "limit_id": signal.limit_id,
        "kind": None if signal.kind is None else signal.kind.value,
        "model": signal.model,
        "limit": None if signal.limit is None else amount_json(signal.limit),
        "used": None if signal.used is None else amount_json(signal.used),
        "resets_at": _optional_time_json(signal.resets_at),
        "updated_at": rfc3339(signal.updated_at),
        "blocked_models": list(signal.blocked_models),
    }


def _signal_from_document(document: dict[str, Any]) -> QuotaSignal:
    kind = document["kind"]
    limit, used = document["limit"], document["used"]
    return QuotaSignal(
        tenant_id=document["tenant_id"],
        state=QuotaStatus(document["state"]),
        limit_id=document["limit_id"],
        kind=None if kind is None else LimitKind(kind),
        model=document["model"],
        limit=None if limit is None else _amount_from_json(limit),
        used=None if used is None else _amount_from_json(used),
        resets_at=_optional_time(document["resets_at"]),
        updated_at=parse_rfc3339(document["updated_at"]),
        blocked_models=tuple(document["blocked_models"]),
    )


def _windows_document(windows: Mapping[datetime, Window]) -> dict[str, Any]:
    documents = {}
    for start, window in windows.items():
        document: dict[str, Any] = {
            "usage": {
                model: [usage.tokens, amount_json(usage.spend)]
                for model, usage in window.usage.items()
            }
        }
        if window.alerted:
            document["alerted"] = sorted([limit_id, t] for limit_id, t in window.alerted)
        documents[rfc3339(start)] = document
    return documents


def _windows_from_document(documents: dict[str, Any]) -> dict[datetime, Window]:
    return {
        parse_rfc3339(start): Window(
            usage={
                model: ModelUsage(tokens, Decimal(spend))
                for model, (tokens, spend) in document["usage"].items()
            },
            alerted=frozenset((limit_id, t) for limit_id, t in document.get("alerted", ())),
        )
        for start, document in documents.items()
    }
