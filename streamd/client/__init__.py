"""The client library (nats-py only, never the server): durable job queues and event replay."""
