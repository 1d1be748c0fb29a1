"""Quotas in the worker: count usage with the ledger, publish alerts and the block signal,
re-evaluate when windows end or limits change, and answer the gateway over HTTP."""
