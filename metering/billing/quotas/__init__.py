"""Quotas: limits per tenant (optionally per model), threshold alerts and the block signal."""
