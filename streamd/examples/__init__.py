"""Runnable examples: `python -m streamd.examples.jobs`, `python -m streamd.examples.projection`."""
