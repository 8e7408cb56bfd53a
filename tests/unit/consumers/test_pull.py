"""Pull requests (pure parts): reading a request body, the consumer's limits, and when waiting requests need
attention."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.consumers import pull
from streamd.consumers.pull import PullWaiter
from streamd.wire.models import ConsumerConfig, PullRequest

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (b"", PullRequest(batch=1)),
        (b"  \r\n", PullRequest(batch=1)),
        (b"7", PullRequest(batch=7)),
        (b'{"batch": 3, "expires": 1000000000, "no_wait": true}', PullRequest(batch=3, expires=SECOND, no_wait=True)),
        (
            b'{"batch": 2, "max_bytes": 100, "idle_heartbeat": 500000000}',
            PullRequest(batch=2, max_bytes=100, idle_heartbeat=SECOND // 2),
        ),
    ],
)
def test_parse_reads_every_form(body: bytes, want: PullRequest) -> None:
    assert pull.parse(body) == want


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"1" * 19, "out of range"),
        (b'{"batch": -1}', "negative values are not allowed"),
        (b'{"expires": -5}', "negative values are not allowed"),
        (b"{not json", "."),
        (b'{"batch": "x"}', "."),
    ],
)
def test_parse_refuses_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        pull.parse(body)


@given(st.binary(max_size=64))
def test_parse_raises_only_value_error_on_foreign_input(body: bytes) -> None:
    try:
        req = pull.parse(body)
    except ValueError:
        return
    assert req.batch >= 0 and req.expires >= 0 and req.max_bytes >= 0


def test_refusal_names_the_limit_that_was_passed() -> None:
    cfg = ConsumerConfig(max_batch=10, max_expires=2 * SECOND, max_bytes=1000)
    assert pull.refusal(cfg, PullRequest(batch=10, expires=2 * SECOND, max_bytes=1000)) == ""
    assert pull.refusal(cfg, PullRequest(batch=11)) == "Exceeded MaxRequestBatch of 10"
    assert pull.refusal(cfg, PullRequest(batch=1, expires=3 * SECOND)) == "Exceeded MaxRequestExpires of 2s"
    assert pull.refusal(cfg, PullRequest(batch=1, max_bytes=1001)) == "Exceeded MaxRequestMaxBytes of 1000"
    assert pull.refusal(ConsumerConfig(), PullRequest(batch=10**9, expires=10**15, max_bytes=10**12)) == ""


def _waiter(**kw: int) -> PullWaiter:
    fields = {"batch": 5, "max_bytes": 0, "expires_ns": 0, "heartbeat_ns": 0, "last_sent_ns": 100} | kw
    return PullWaiter(reply="r", no_wait=False, **fields)


def test_pending_headers_report_what_is_left() -> None:
    w = _waiter(batch=5, max_bytes=1000, sent=2, bytes_sent=300)
    assert pull.pending_headers(w) == {"Nats-Pending-Messages": "3", "Nats-Pending-Bytes": "700"}
    assert pull.pending_headers(_waiter(batch=2, sent=1))["Nats-Pending-Bytes"] == "0"


def test_wakeups_are_expiries_and_next_heartbeats() -> None:
    waiting = deque([_waiter(), _waiter(expires_ns=5000), _waiter(heartbeat_ns=50, last_sent_ns=200)])
    assert sorted(pull.wakeups(waiting)) == [250, 5000]
