"""streamd's two connections to NATS: the client connection's raw path and the leafnode connection."""
