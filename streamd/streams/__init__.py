"""The set of streams: create, update, delete, purge, info, and the stream configuration rules."""
