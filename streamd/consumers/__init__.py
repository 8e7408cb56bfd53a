"""Consumers: the pure ack state machine, a consumer's runtime, the manager of all consumers, their config rules."""
