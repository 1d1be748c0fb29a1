"""The test suite: unit/ (pure), integration/ (real Kafka and PostgreSQL), support/."""
