"""A load generator that speaks the NATS client protocol itself, so the client is not what a benchmark measures.

nats-py spends several microseconds of Python per message (a future per publish, a Msg object and a callback per
delivery, a socket write per ack) and saturates well before nats-server or streamd. This package keeps the
per-message work to a few byte operations: frames are built into one buffer and written once per loop turn,
everything a read returns is parsed in one pass, and each scenario can run in several worker processes.

Modules: `protocol` (connection, bulk parser, frame builders), `workers` (the scenarios, one function each, run in
child processes), `procstat` (CPU seconds of any process from /proc). The driver is scripts/bench_fast.py.
"""
