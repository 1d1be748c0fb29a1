"""Kafka: topic administration and the formats of the messages we exchange."""
