"""The Faust stream processors: thin adapters from Kafka to the metering core."""
