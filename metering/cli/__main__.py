"""`python -m metering.cli`: the `metering` command."""

from metering.cli.app import app

app()
