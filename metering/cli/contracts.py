"""`metering tenants set|contract|override`: contract versions and price overrides."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from metering.billing.currencies import CURRENCY_MINOR_UNITS
from metering.billing.events import SERVICE_TIERS
from metering.billing.tokens import TOKEN_CLASSES
from metering.cli import arguments as cli_input
from metering.cli.output import Format, render
from metering.cli.support import FormatOption, database, fail


def tenants_set(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    currency: Annotated[
        str | None, typer.Option(help=f"Billing currency: {', '.join(CURRENCY_MINOR_UNITS)}.")
    ] = None,
    anchor_day: Annotated[
        int | None,
        typer.Option(help="Billing periods start on this day of the month (1-31; 1 = calendar)."),
    ] = None,
    discount_percent: Annotated[
        str | None, typer.Option(help="Percent taken off each period's usage, e.g. 10 or 7.5.")
    ] = None,
    minimum_commitment: Annotated[
        str | None,
        typer.Option(help="Least amount billed per period, after the discount; 'none' removes it."),
    ] = None,
    effective_from: Annotated[
        str | None,
        typer.Option(help="When these terms take effect (default now); they govern the period."),
    ] = None,
) -> None:
    """Set a tenant's contract terms from a moment on, as a new contract version.

    Options left out keep the previous version's value (defaults: USD, anchor day 1, no
    discount, no commitment). The contract that took effect last during a period governs
    that whole period. A change cannot take effect inside a period already invoiced.
    """
    from metering.cli.billing_common import effective_from_advice, now
    from metering.store import quota_limits
    from metering.store.billing.contracts import set_contract

    changes: dict[str, Any] = {}
    if currency is not None:
        changes["currency"] = currency.upper()
        if changes["currency"] not in CURRENCY_MINOR_UNITS:
            raise fail(
                f"--currency {currency!r} is not one we bill in: {', '.join(CURRENCY_MINOR_UNITS)}"
            )
    if anchor_day is not None:
        changes["anchor_day"] = anchor_day
    if discount_percent is not None:
        discount = cli_input.decimal(discount_percent, "--discount-percent")
        if not 0 <= discount <= 100:
            raise fail(f"--discount-percent {discount_percent} must be from 0 to 100")
        changes["discount_percent"] = discount
    if minimum_commitment is not None and minimum_commitment.lower() == "none":
        changes["minimum_commitment"] = None
    elif minimum_commitment is not None:
        minimum = cli_input.decimal(minimum_commitment, "--minimum-commitment")
        if minimum < 0:
            raise fail(f"--minimum-commitment {minimum_commitment} must not be negative")
        changes["minimum_commitment"] = minimum
    start = (
        cli_input.moment(effective_from, "--effective-from")
        if effective_from is not None
        else now().replace(microsecond=0)
    )
    with database(autocommit=True) as conn, conn.transaction():
        cli_input.known_tenant(conn, tenant_id)
        with effective_from_advice(), _override_currency_advice():
            contract, changed = set_contract(conn, tenant_id, start, **changes)
        # Quota periods are billing periods: a new anchor day moves them, in this transaction.
        if changed:
            quota_limits.follow_anchor_day(conn, tenant_id)
    commitment = contract.minimum_commitment
    typer.echo(
        f"{tenant_id}: {'contract from' if changed else 'unchanged, contract from'}"
        f" {contract.effective_from.isoformat()}: {contract.currency}, anchor day"
        f" {contract.anchor_day}, discount {contract.discount_percent}%, minimum commitment"
        f" {commitment if commitment is not None else 'none'}"
    )


def tenants_contract(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    fmt: FormatOption = Format.table,
) -> None:
    """Show a tenant's contract history and price overrides, oldest first.

    Before its first contract a tenant is billed on the default terms (USD, list prices,
    calendar months), shown as the first row.
    """
    from metering.billing.contracts import contract_history
    from metering.cli.billing_common import json_text
    from metering.store.billing.contracts import contracts_of
    from metering.store.billing.prices import overrides_of

    with database(autocommit=True) as conn:
        cli_input.known_tenant(conn, tenant_id)
        history = contract_history(tenant_id, contracts_of(conn, tenant_id))
        overrides = overrides_of(conn, tenant_id).get(tenant_id, [])
    contracts = [
        {
            "effective_from": c.effective_from,
            "effective_to": c.effective_to,
            "currency": c.currency,
            "anchor_day": c.anchor_day,
            "discount_percent": c.discount_percent,
            "minimum_commitment": c.minimum_commitment,
            "terms": "default" if index == 0 and c.effective_from.year == 1970 else "contract",
        }
        for index, c in enumerate(history)
    ]
    prices = [
        {
            "model": e.model,
            "token_class": e.token_class.value,
            "service_tier": e.service_tier,
            "long_context_above": e.long_context_above,
            "tier_up_to": e.tier_up_to,
            "price_per_million": e.price_per_million,
            "currency": e.currency,
            "effective_from": e.effective_from,
            "effective_to": e.effective_to,
        }
        for e in overrides
    ]
    if fmt is Format.json:
        typer.echo(json_text({"contracts": contracts, "overrides": prices}))
        return
    typer.echo(render(contracts, list(contracts[0]), fmt))
    if prices:
        typer.echo("")
        typer.echo(render(prices, list(prices[0]), fmt))


def tenants_override(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    model: Annotated[str, typer.Option(help="The model whose price to override.")],
    token_class: Annotated[str, typer.Option(help=f"Token class: {', '.join(TOKEN_CLASSES)}.")],
    tier: Annotated[str, typer.Option(help=f"Service tier: {', '.join(SERVICE_TIERS)}.")],
    price: Annotated[
        str,
        typer.Option(
            help="Per 1M tokens: 2.50; bands as UP_TO:PRICE,...,PRICE (1000000:2.00,1.50);"
            " 'list' ends the override (back to the list price)."
        ),
    ],
    effective_from: Annotated[
        str | None, typer.Option(help="When the price takes effect (default: now, on the hour).")
    ] = None,
    effective_to: Annotated[
        str | None, typer.Option(help="When it ends (exclusive); default: until replaced.")
    ] = None,
    long_context_above: Annotated[
        int | None,
        typer.Option(help="Override the long-context price of requests above this many tokens."),
    ] = None,
) -> None:
    """Give a tenant its own price for one model, token class and service tier.

    The override replaces the list price of that class (all its bands) while in effect, in
    the contract's currency; other classes stay at list price. A new override ends the one
    in effect at its start. Times must be on whole hours.
    """
    from metering.billing.tokens import TokenClass
    from metering.cli.billing_common import effective_from_advice, now
    from metering.store.billing.overrides import Bands, set_override

    if token_class not in TOKEN_CLASSES:
        raise fail(f"--token-class {token_class!r} is not one of {', '.join(TOKEN_CLASSES)}")
    if tier not in SERVICE_TIERS:
        raise fail(f"--tier {tier!r} is not one of {', '.join(SERVICE_TIERS)}")
    hour = now().replace(minute=0, second=0, microsecond=0)
    start, end = cli_input.time_window(
        effective_from, effective_to, "--effective-from", "--effective-to"
    )
    start = start or hour
    bands = None if price.strip().lower() == "list" else Bands.parse(price)
    with database(autocommit=True) as conn:
        cli_input.known(conn, tenant=tenant_id, model=model)
        with effective_from_advice():
            written = set_override(
                conn,
                tenant_id,
                model=model,
                token_class=TokenClass(token_class),
                service_tier=tier,
                price=bands,
                effective_from=start,
                effective_to=end,
                long_context_above=long_context_above,
            )
    if not written:
        typer.echo(f"{tenant_id}: {model} {token_class} {tier} at list price from {start}")
    for entry in written:
        typer.echo(
            f"{tenant_id}: {entry.describe()} at {entry.price_per_million} {entry.currency}"
            f" per 1M from {entry.effective_from}"
            + (f" until {entry.effective_to}" if entry.effective_to else "")
        )


@contextmanager
def _override_currency_advice() -> Iterator[None]:
    """A contract refused for an override in another currency: how to end the override."""
    from metering.cli.billing_common import advise
    from metering.store.billing.errors import OverrideCurrencyError

    try:
        yield
    except OverrideCurrencyError as exc:
        raise advise(exc, " (`metering tenants override ... --price list`)") from None


def register(tenants_app: typer.Typer) -> None:
    """Adds the contract commands to `tenants`."""
    tenants_app.command("set")(tenants_set)
    tenants_app.command("contract")(tenants_contract)
    tenants_app.command("override")(tenants_override)
