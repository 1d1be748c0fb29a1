"""The `metering` command: one module per command group."""
