"""PostgreSQL adapters: engine, schema access, migrations, the batch writer."""
