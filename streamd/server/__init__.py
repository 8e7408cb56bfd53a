"""The service: lifecycle and wiring (service), links (connect, health), intake (ingest, api_intake), settings,
signals, the API-prefix claim and the embedded nats-server."""
