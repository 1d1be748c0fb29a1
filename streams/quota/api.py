"""``GET /v1/quota/{tenant_id}``: the gateway asks before a request; answered from memory."""

from __future__ import annotations

import hmac

import faust
from faust.web import Request, Response, View

from metering.config import Settings
from streams.quota.tables import QuotaService


def _bearer_matches(header: str | None, token: str) -> bool:
    """Compared in constant time, so that how long a refusal takes does not tell a caller
    how much of a guessed token was right. Bytes, since ``compare_digest`` refuses
    non-ASCII text and a header may carry any."""
    given = (header or "").encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogatepass"))


def register_quota_api(app: faust.App, settings: Settings, quotas: QuotaService) -> None:
    """``GET /v1/quota/{tenant_id}[?model=M]`` for a gateway that asks before a request."""
    token = settings.quota_api_token

    @app.page("/v1/quota/{tenant_id}")
    class QuotaAnswer(View):  # type: ignore[misc]
        async def get(self, request: Request, tenant_id: str) -> Response:
            if token and not _bearer_matches(request.headers.get("Authorization"), token):
                return self.json(
                    {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"},
                    status=401,
                )
            answer = quotas.answer(tenant_id, request.query.get("model"))
            if answer is None:
                return self.json(
                    {"error": "unknown_tenant", "detail": f"no tenant {tenant_id!r}"}, status=404
                )
            return self.json(answer)
