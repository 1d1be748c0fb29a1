"""The `metering` command: its groups and commands, registered from one module each.

Start-up loads only typer and what the commands' options are made of. Settings (pydantic),
the services, the store (psycopg), Kafka and the domain's heavier modules are imported in
the command that needs them, so that `metering --help` and every mistake answer at once.
"""

from __future__ import annotations

from metering.cli import (
    bench,
    catalog,
    contracts,
    invoices,
    logins,
    prices,
    produce,
    quota,
    services,
    usage,
)
from metering.cli.support import GuardedGroup, command_group, quiet_libraries

app = command_group(
    "Usage metering and billing for LLM hosting: Kafka in, exact bills out.",
    cls=GuardedGroup,
    pretty_exceptions_enable=False,
)
app.callback()(quiet_libraries)
services.register(app)
tenants_app = catalog.register(app)
usage.register(app)
produce.register(app)
quota.register(app)
bench.register(app)
prices.register(app)
invoices.register(app)
contracts.register(tenants_app)
logins.register(tenants_app)
