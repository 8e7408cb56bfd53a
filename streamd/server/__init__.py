"""The service: lifecycle and wiring, settings, the API-prefix claim and the embedded nats-server."""
