"""PostgreSQL adapters: the ledger, catalogs, quotas, billing reads and writes."""
