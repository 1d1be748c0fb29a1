"""`metering tenants add/list`, `metering models add/list` and `metering seed-demo`: the
catalogs that ingest checks events against."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer

from metering.billing.events import TENANT_ID_SHAPE
from metering.cli.output import Format, render
from metering.cli.support import (
    FormatOption,
    command_group,
    database,
    fail,
)
from metering.tools.traffic import DEMO_MODELS

tenants_app = command_group("The tenant catalog: events for unknown tenants are rejected.")
models_app = command_group("The model catalog: events for unknown models are rejected.")


@tenants_app.command("add")
def tenants_add(
    tenant_id: Annotated[str, typer.Argument(help="1-64 chars of A-Za-z0-9._-")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
) -> None:
    """Add a tenant (no-op if it exists)."""
    from metering.store import catalog

    if not TENANT_ID_SHAPE.fullmatch(tenant_id):
        raise fail(f"tenant id {tenant_id!r} must be 1-64 characters of A-Za-z0-9._-")
    with database() as conn:
        added = catalog.add_tenants(conn, [catalog.TenantRow(tenant_id, name or tenant_id)])
    typer.echo(f"tenant {tenant_id} {'added' if added else 'already exists'}")


@tenants_app.command("list")
def tenants_list(fmt: FormatOption = Format.table) -> None:
    """List tenants."""
    from metering.store import catalog

    with database() as conn:
        rows = [asdict(t) for t in catalog.list_tenants(conn)]
    typer.echo(render(rows, ["tenant_id", "display_name"], fmt))


@models_app.command("add")
def models_add(
    model_id: Annotated[str, typer.Argument(help="Model id as events name it, e.g. grok-3.")],
    provider: Annotated[str, typer.Option(help="Who serves it: xai, openai, meta, ...")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    long_context_above: Annotated[
        int | None,
        typer.Option(help="Requests with more input tokens than this are long-context."),
    ] = None,
) -> None:
    """Add a model (no-op if it exists). Events rejected as unknown_model can then be replayed."""
    from metering.store import catalog
    from metering.store.billing.prices import has_price

    row = catalog.ModelRow(model_id, provider, name or model_id, long_context_above)
    with database() as conn:
        added = catalog.add_models(conn, [row])
        priced = has_price(conn, model_id, datetime.now(UTC))
    typer.echo(f"model {model_id} {'added' if added else 'already exists'}")
    if not priced:
        typer.secho(
            f"warning: model {model_id} has no price in effect now: its events are"
            " dead-lettered as unpriced until one covers them; import one with `metering"
            " prices import FILE`",
            fg=typer.colors.YELLOW,
            err=True,
        )


@models_app.command("list")
def models_list(fmt: FormatOption = Format.table) -> None:
    """List models."""
    from metering.store import catalog

    with database() as conn:
        rows = [asdict(m) for m in catalog.list_models(conn)]
    typer.echo(render(rows, ["model_id", "provider", "display_name", "long_context_above"], fmt))


def seed_demo(
    tenants: Annotated[int, typer.Option(help="How many demo tenants.")] = 50,
) -> None:
    """Seed the catalogs with the demo tenants and models `metering produce` uses."""
    from metering.store import catalog
    from metering.tools.traffic import demo_tenants

    with database() as conn:
        new_models = catalog.add_models(
            conn, [catalog.ModelRow(m.model_id, m.provider, m.display_name) for m in DEMO_MODELS]
        )
        new_tenants = catalog.add_tenants(
            conn, [catalog.TenantRow(t, t) for t in demo_tenants(tenants)]
        )
    typer.echo(f"seeded {new_tenants} new tenants and {new_models} new models")


def register(app: typer.Typer) -> typer.Typer:
    """Adds the catalog commands; returns the `tenants` group, which others extend."""
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(models_app, name="models")
    app.command("seed-demo")(seed_demo)
    return tenants_app
