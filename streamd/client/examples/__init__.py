"""Runnable examples: `python -m streamd.client.examples.jobs`, `python -m streamd.client.examples.projection`."""
