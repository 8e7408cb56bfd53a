"""The pure part of mirrors and sources: inbound decisions, start points, the source header."""

from __future__ import annotations

from streamd.streams import copying
from streamd.streams.copying import Tracker, Verdict
from streamd.wire.models import ExternalStream, StreamSource


def _tracker(stream_seq: int = 0) -> Tracker:
    return Tracker(consumer="C", stream_seq=stream_seq)


def test_mirror_takes_the_next_message_and_keeps_a_gap_when_only_the_origin_jumped() -> None:
    t = _tracker(stream_seq=4)
    assert copying.on_message(t, True, "C", 1, 5, 1, 3) is Verdict.STORE
    assert (t.stream_seq, t.delivered, t.lag) == (5, 1, 2)
    # origin seqs 6..8 deleted there: the consumer sequence did not jump, so nothing was lost
    assert copying.on_message(t, True, "C", 1, 9, 2, 0) is Verdict.STORE
    assert (t.stream_seq, t.delivered, t.lag) == (9, 2, 0)


def test_a_jump_in_the_consumer_sequence_asks_for_a_new_consumer() -> None:
    t = _tracker()
    assert copying.on_message(t, True, "C", 1, 1, 1, 5) is Verdict.STORE
    assert copying.on_message(t, True, "C", 1, 3, 3, 5) is Verdict.RETRY


def test_old_redelivered_and_foreign_messages_are_ignored() -> None:
    t = _tracker(stream_seq=10)
    assert copying.on_message(t, False, "C", 1, 10, 1, 0) is Verdict.IGNORE  # already have it
    assert t.delivered == 1  # but it counts as delivered
    assert copying.on_message(t, False, "C", 2, 11, 2, 0) is Verdict.IGNORE  # a redelivery
    assert copying.on_message(t, False, "OLD", 1, 11, 2, 0) is Verdict.IGNORE  # a previous consumer's
    assert copying.on_message(t, False, "C", 1, 11, 2, 0) is Verdict.STORE


def test_a_heartbeat_naming_a_later_delivery_asks_for_a_new_consumer() -> None:
    t = _tracker()
    copying.on_message(t, False, "C", 1, 1, 1, 0)
    assert copying.on_heartbeat(t, 1) is Verdict.IGNORE
    assert copying.on_heartbeat(t, 0) is Verdict.IGNORE
    assert copying.on_heartbeat(t, 2) is Verdict.RETRY


def test_start_point_resumes_after_the_last_copied_else_takes_the_configured_start() -> None:
    src = StreamSource(name="O", opt_start_seq=7, opt_start_time="2024-01-01T00:00:00Z")
    assert copying.start_point(src, 41) == ("by_start_sequence", 42, "")
    assert copying.start_point(src, 0) == ("by_start_sequence", 7, "")
    assert copying.start_point(StreamSource(name="O", opt_start_time="2024-01-01T00:00:00Z"), 0) == (
        "by_start_time",
        0,
        "2024-01-01T00:00:00Z",
    )
    assert copying.start_point(StreamSource(name="O"), 0) == ("all", 0, "")


def test_source_header_round_trip_and_cleaning() -> None:
    src = StreamSource(name="O", filter_subject="o.1")
    iname = copying.index_name(src)
    assert iname == "O o.1 >"
    hdrs = b"NATS/1.0\r\nA: 1\r\nNats-Expected-Stream: X\r\nNats-Stream-Source: Z 3 > > z\r\n\r\n"
    out = copying.sourced_headers(hdrs, iname, 12, b"o.1", "id1")
    assert out == b"NATS/1.0\r\nA: 1\r\nNats-Stream-Source: O 12 o.1 > o.1 id1\r\n\r\n"
    external = StreamSource(name="O", external=ExternalStream(api="$JS.hub.API"))
    assert copying.index_name(external).startswith("O:") and copying.index_name(external).endswith(" > >")
    assert copying.deliver_subject(StreamSource(name="O", external=ExternalStream(deliver="d")), "M", "t") == "d.M.t"
    assert copying.deliver_subject(StreamSource(name="O"), "S", "t") == "$JS.S.t"


def test_retry_delay_backs_off_to_a_ceiling() -> None:
    assert [copying.retry_delay_ns(f) // 1_000_000_000 for f in (0, 1, 2, 14, 100)] == [2, 4, 6, 30, 30]
