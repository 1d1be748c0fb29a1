"""The billing domain: pure rules and values, no Kafka, no SQL."""
