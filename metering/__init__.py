"""Usage metering and billing for a multi-model LLM hosting platform."""
