from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from streamd.consumers import acks
from streamd.consumers.acks import AckPolicy, AckSettings, ConsumerState, Delivery, SequencePair
from streamd.wire import ack_protocol
from streamd.wire.ack_protocol import Ack, AckInfo, AckKind

EXPLICIT = AckSettings(ack_policy=AckPolicy.EXPLICIT, ack_wait_ns=10)
ALL = AckSettings(ack_policy=AckPolicy.ALL, ack_wait_ns=10)
NONE = AckSettings(ack_policy=AckPolicy.NONE, ack_wait_ns=10)


def _deliver(state: ConsumerState, cfg: AckSettings, *seqs: int, now: int = 1) -> list[Delivery]:
    return [acks.on_deliver(state, cfg, seq, now) for seq in seqs]


# ---- acks and the ack floor -------------------------------------------------------------------------------------


def test_explicit_ack_moves_floor_over_contiguous_acks() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2, 3)
    assert acks.on_ack(state, EXPLICIT, 2) == [2]
    assert state.ack_floor == SequencePair(0, 0)  # 1 is still outstanding
    assert acks.on_ack(state, EXPLICIT, 1) == [1]
    assert state.ack_floor == SequencePair(2, 2)
    assert acks.num_ack_pending(state) == 1
    assert acks.on_ack(state, EXPLICIT, 3) == [3]
    assert state.ack_floor == state.delivered == SequencePair(3, 3)


def test_ack_all_matches_observed_server_example() -> None:
    # spec 8.3: 3 delivered, ack of the 2nd with AckAll → ack_floor (2,2), 1 pending.
    state = ConsumerState()
    _deliver(state, ALL, 1, 2, 3)
    assert acks.on_ack(state, ALL, 2) == [1, 2]
    assert state.ack_floor == SequencePair(2, 2)
    assert acks.num_ack_pending(state) == 1
    assert acks.on_ack(state, ALL, 1) == []  # at or below the floor
    assert acks.on_ack(state, ALL, 4) == []  # never handed out
    assert acks.on_ack(state, ALL, 3) == [3]
    assert state.ack_floor == SequencePair(3, 3)


def test_ack_all_is_by_stream_seq_like_nats_server() -> None:
    state = ConsumerState()
    _deliver(state, ALL, 1, 2, 3)
    acks.on_nak(state, ALL, 1, now_ns=2)
    assert acks.on_deliver(state, ALL, 1, 3) == Delivery(1, 4, 2)  # redelivered after 2 and 3
    assert acks.on_ack(state, ALL, 3) == [1, 2, 3]
    assert state.ack_floor == SequencePair(4, 3)


def test_unknown_and_repeated_acks_are_ignored() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2)
    assert acks.on_ack(state, EXPLICIT, 1) == [1]
    before = acks.encode_state(state)
    assert acks.on_ack(state, EXPLICIT, 1) == []
    assert acks.on_ack(state, EXPLICIT, 99) == []
    assert acks.on_ack(state, EXPLICIT, 0) == []
    assert not acks.on_nak(state, EXPLICIT, 99, now_ns=5)
    assert not acks.on_progress(state, EXPLICIT, 1, now_ns=5)
    assert not acks.on_term(state, 1)
    assert not acks.drop(state, 99)
    assert acks.encode_state(state) == before


def test_floor_is_lazy_for_filtered_consumers_like_nats_server() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 2, 4)  # 1 and 3 are not for this consumer
    assert state.ack_floor == SequencePair(0, 0)
    acks.on_ack(state, EXPLICIT, 4)
    assert state.ack_floor == SequencePair(0, 0)
    acks.on_ack(state, EXPLICIT, 2)
    assert state.ack_floor == SequencePair(2, 4)


def test_floor_with_redeliveries_never_claims_a_pending_delivery() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2, 3)
    acks.on_nak(state, EXPLICIT, 2, now_ns=2)
    acks.on_deliver(state, EXPLICIT, 2, 3)  # consumer seq 4
    acks.on_ack(state, EXPLICIT, 1)
    # nats-server would say (3, 1) although consumer seq 3 (stream seq 3) is unacked.
    assert state.ack_floor == SequencePair(2, 1)
    acks.on_ack(state, EXPLICIT, 3)
    assert state.ack_floor == SequencePair(3, 1)
    acks.on_ack(state, EXPLICIT, 2)
    assert state.ack_floor == SequencePair(4, 3)


def test_ack_none_tracks_nothing() -> None:
    state = ConsumerState()
    deliveries = _deliver(state, NONE, 1, 2, 5)
    assert [d.num_delivered for d in deliveries] == [1, 1, 1]
    assert state.pending == {}
    assert state.ack_floor == state.delivered == SequencePair(3, 5)
    assert acks.on_ack(state, NONE, 5) == []
    assert acks.can_deliver_new(state, AckSettings(ack_policy=AckPolicy.NONE, max_ack_pending=1))
    assert acks.expire(state, NONE, 10**9) == []


def test_term_and_drop_count_as_done_for_the_floor() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2, 3)
    assert acks.on_term(state, 1)
    assert state.ack_floor == SequencePair(1, 1)
    assert acks.drop(state, 2)
    assert state.ack_floor == SequencePair(2, 2)
    assert acks.next_to_redeliver(state, EXPLICIT) is None
    with pytest.raises(ValueError):
        acks.on_deliver(state, EXPLICIT, 1, 5)  # termed messages are never delivered again


def test_skip_before_sets_start_and_purges() -> None:
    state = ConsumerState()
    assert acks.skip_before(state, 10) == []
    assert state.delivered == state.ack_floor == SequencePair(0, 9)
    _deliver(state, EXPLICIT, 10, 11, 14)
    assert acks.skip_before(state, 12) == [10, 11]
    assert state.ack_floor == SequencePair(2, 13)
    assert acks.skip_before(state, 20) == [14]
    assert state.delivered == state.ack_floor == SequencePair(3, 19)
    assert acks.on_deliver(state, EXPLICIT, 20, 1).consumer_seq == 4


# ---- redelivery ---------------------------------------------------------------------------------------------------


def test_nak_redelivers_first_with_new_consumer_seq_and_count() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2, 3)
    assert acks.on_nak(state, EXPLICIT, 2, now_ns=2)
    assert acks.on_nak(state, EXPLICIT, 2, now_ns=2)  # queued once
    assert state.redeliver_queue == [2]
    assert acks.next_to_redeliver(state, EXPLICIT) == 2
    assert acks.on_deliver(state, EXPLICIT, 2, 3) == Delivery(2, 4, 2)
    assert state.redeliver_queue == []
    assert state.delivered == SequencePair(4, 3)
    assert acks.num_redelivered(state) == 1
    assert acks.num_delivered(state, 2) == 2
    acks.on_ack(state, EXPLICIT, 2)
    assert acks.num_redelivered(state) == 0
    assert state.redelivered == {}


def test_nak_with_delay() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, now=100)
    assert acks.on_nak(state, EXPLICIT, 1, now_ns=102, delay_ns=50)
    assert state.redeliver_queue == []
    assert acks.next_deadline(state) == 152
    assert acks.expire(state, EXPLICIT, 151) == []
    assert acks.next_to_redeliver(state, EXPLICIT) is None
    assert acks.expire(state, EXPLICIT, 152) == []
    assert acks.next_to_redeliver(state, EXPLICIT) == 1
    assert acks.next_deadline(state) is None
    # A non-positive delay is a plain NAK.
    acks.on_deliver(state, EXPLICIT, 1, 160)
    acks.on_nak(state, EXPLICIT, 1, now_ns=161, delay_ns=0)
    assert state.redeliver_queue == [1]


def test_ack_wait_expiry_queues_in_stream_order() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 3, now=5)
    _deliver(state, EXPLICIT, 4, now=1)
    _deliver(state, EXPLICIT, 6, now=2)
    assert acks.next_deadline(state) == 11
    assert acks.expire(state, EXPLICIT, 14) == []
    assert state.redeliver_queue == [4, 6]
    assert acks.expire(state, EXPLICIT, 15) == []
    assert state.redeliver_queue == [4, 6, 3]


def test_progress_restarts_the_ack_timer() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, now=0)
    assert acks.on_progress(state, EXPLICIT, 1, now_ns=8)
    assert acks.on_progress(state, EXPLICIT, 1, now_ns=9)  # repeatable
    acks.expire(state, EXPLICIT, 18)
    assert acks.next_to_redeliver(state, EXPLICIT) is None
    acks.expire(state, EXPLICIT, 19)
    assert acks.next_to_redeliver(state, EXPLICIT) == 1
    assert acks.on_progress(state, EXPLICIT, 1, now_ns=20)  # still working on it: off the queue again
    assert acks.next_to_redeliver(state, EXPLICIT) is None
    assert state.pending[1].deadline_ns == 30
    assert state.pending[1].delivered_ns == 0


def test_backoff_schedule() -> None:
    cfg = AckSettings(ack_wait_ns=10, backoff_ns=[5, 20, 40])
    state = ConsumerState()
    now, waits = 0, []
    for _ in range(5):
        acks.on_deliver(state, cfg, 1, now)
        deadline = state.pending[1].deadline_ns
        waits.append(deadline - now)
        assert acks.expire(state, cfg, deadline) == []
        now = deadline
    assert waits == [5, 20, 40, 40, 40]
    assert [acks.ack_wait_for(cfg, n) for n in (1, 2, 3, 9)] == [5, 20, 40, 40]
    assert acks.ack_wait_for(EXPLICIT, 3) == 10


def test_no_ack_wait_means_no_timer() -> None:
    cfg = AckSettings(ack_wait_ns=0)
    state = ConsumerState()
    _deliver(state, cfg, 1)
    assert state.pending[1].deadline_ns == 0
    assert acks.next_deadline(state) is None
    assert acks.expire(state, cfg, 10**18) == []


def test_max_deliver_reports_once_and_stops_delivery() -> None:
    cfg = AckSettings(ack_wait_ns=10, max_deliver=2)
    state = ConsumerState()
    _deliver(state, cfg, 1, 2, now=0)
    acks.on_ack(state, cfg, 2)
    assert acks.expire(state, cfg, 10) == []
    assert acks.on_deliver(state, cfg, acks.next_to_redeliver(state, cfg) or 0, 10) == Delivery(1, 3, 2)
    events = acks.expire(state, cfg, 20)
    assert events == [acks.MaxDeliveriesEvent(stream_seq=1, consumer_seq=3, deliveries=2)]
    assert state.pending == {} and state.redelivered == {}
    assert state.ack_floor == SequencePair(3, 2)
    assert acks.expire(state, cfg, 10**6) == []
    assert acks.next_to_redeliver(state, cfg) is None
    with pytest.raises(ValueError):
        acks.on_deliver(state, cfg, 1, 30)


def test_nak_at_max_deliver_is_reported_by_expire() -> None:
    cfg = AckSettings(ack_wait_ns=10, max_deliver=1)
    state = ConsumerState()
    _deliver(state, cfg, 1, now=0)
    assert acks.on_nak(state, cfg, 1, now_ns=3)
    assert acks.next_to_redeliver(state, cfg) is None
    assert acks.next_deadline(state) == 3
    assert acks.expire(state, cfg, 3) == [acks.MaxDeliveriesEvent(1, 1, 1)]
    assert state.pending == {}


def test_lowered_max_deliver_drops_queued_messages() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2)
    acks.on_nak(state, EXPLICIT, 1, now_ns=2)
    acks.on_deliver(state, EXPLICIT, 1, 3)
    acks.on_nak(state, EXPLICIT, 1, now_ns=4)
    acks.on_nak(state, EXPLICIT, 2, now_ns=4)
    lowered = AckSettings(ack_wait_ns=10, max_deliver=2)
    assert acks.next_to_redeliver(state, lowered) == 2  # 1 is over the new limit
    assert acks.expire(state, lowered, 5) == [acks.MaxDeliveriesEvent(1, 3, 2)]
    assert state.redeliver_queue == [2]


def test_max_ack_pending_limits_new_messages_only() -> None:
    cfg = AckSettings(ack_wait_ns=10, max_ack_pending=2)
    state = ConsumerState()
    _deliver(state, cfg, 1, 2)
    assert not acks.can_deliver_new(state, cfg)
    with pytest.raises(ValueError):
        acks.on_deliver(state, cfg, 3, 1)
    acks.on_nak(state, cfg, 1, now_ns=2)
    assert acks.on_deliver(state, cfg, 1, 2).num_delivered == 2
    acks.on_ack(state, cfg, 2)
    assert acks.can_deliver_new(state, cfg)
    assert acks.can_deliver_new(state, AckSettings(max_ack_pending=0))


def test_on_deliver_rejects_bad_sequences() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 5)
    for seq in (0, -1, 4):
        with pytest.raises(ValueError):
            acks.on_deliver(state, EXPLICIT, seq, 1)


def test_state_round_trips_and_rejects_garbage() -> None:
    state = ConsumerState()
    _deliver(state, EXPLICIT, 1, 2, 3)
    acks.on_nak(state, EXPLICIT, 2, now_ns=2)
    acks.on_deliver(state, EXPLICIT, 2, 3)
    acks.on_nak(state, EXPLICIT, 3, now_ns=4)
    assert acks.decode_state(acks.encode_state(state)) == state
    assert acks.decode_state(acks.encode_state(ConsumerState())) == ConsumerState()
    with pytest.raises(msgspec.DecodeError):
        acks.decode_state(b"\xc1garbage")


# ---- ack payloads and subjects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", Ack(AckKind.ACK)),
        (b"+ACK", Ack(AckKind.ACK)),
        (b"+OK", Ack(AckKind.ACK)),
        (b"-NAK", Ack(AckKind.NAK)),
        (b'-NAK {"delay": 500000000}', Ack(AckKind.NAK, delay_ns=500_000_000)),
        (b'-NAK {"delay":2000000000,"x":1}', Ack(AckKind.NAK, delay_ns=2_000_000_000)),
        (b"-NAK {}", Ack(AckKind.NAK, delay_ns=0)),
        (b'-NAK {"delay": 1.5}', Ack(AckKind.NAK)),
        (b"-NAK {bad json", Ack(AckKind.NAK)),
        (b"-NAK 5s", Ack(AckKind.NAK, delay_ns=5_000_000_000)),
        (b"-NAK 500ms", Ack(AckKind.NAK, delay_ns=500_000_000)),
        (b"-NAK  1m30s ", Ack(AckKind.NAK, delay_ns=90_000_000_000)),
        (b"-NAK soon", Ack(AckKind.NAK)),
        (b"-NAK \xff\xfe", Ack(AckKind.NAK)),
        (b"+WPI", Ack(AckKind.PROGRESS)),
        (b"+WPI more", Ack(AckKind.UNKNOWN)),
        (b"+TERM", Ack(AckKind.TERM)),
        (b"+TERM  bad payload ", Ack(AckKind.TERM, reason="bad payload")),
        (b"+NXT", Ack(AckKind.NEXT)),
        (b'+NXT {"batch":1}', Ack(AckKind.NEXT, next_request=b'{"batch":1}')),
        (b"+NXT 5", Ack(AckKind.NEXT, next_request=b"5")),
        (b"+ACK ", Ack(AckKind.UNKNOWN)),
        (b"hello", Ack(AckKind.UNKNOWN)),
    ],
)
def test_parse_ack(payload: bytes, expected: Ack) -> None:
    assert ack_protocol.parse_ack(payload) == expected


@given(st.binary(max_size=40))
@settings(max_examples=200)
def test_parse_ack_never_raises(payload: bytes) -> None:
    assert isinstance(ack_protocol.parse_ack(payload).kind, AckKind)


def test_parse_ack_subject_forms() -> None:
    observed = "$JS.ACK.P.dur1.1.1.1.1795850919168804187.5"
    assert ack_protocol.parse_ack_subject(observed) == AckInfo("P", "dur1", 1, 1, 1, 1795850919168804187, 5)
    v2 = "$JS.ACK._.ABCHASH.P.dur1.2.2.7.1795850919168804187.0.r4nd0m"
    assert ack_protocol.parse_ack_subject(v2) == AckInfo(
        "P", "dur1", 2, 2, 7, 1795850919168804187, 0, account_hash="ABCHASH"
    )
    v2_domain = "$JS.ACK.hub.H.P.dur1.2.2.7.9.0"
    info = ack_protocol.parse_ack_subject(v2_domain)
    assert info is not None and info.domain == "hub" and info.stream == "P" and info.consumer_seq == 7


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "$JS.ACK",
        "$JS.API.P.dur1.1.1.1.1.5",
        "$js.ack.P.dur1.1.1.1.1.5",
        "$JS.ACK.P.dur1.1.1.1.1",
        "$JS.ACK.P.dur1.1.1.1.1.5.6",
        "$JS.ACK..dur1.1.1.1.1.5",
        "$JS.ACK.P.dur1.1.+1.1.1.5",
        "$JS.ACK.P.dur1.1.1_0.1.1.5",
        "$JS.ACK.P.dur1.1. 1.1.1.5",
        "$JS.ACK.P.dur1.1.١.1.1.5",
        "$JS.ACK.P.dur1.1.1.1.18446744073709551616.5",
        "$JS.ACK.P.dur1.1.1.1.1.5@orders.new",
        "$JS.ACK._..P.dur1.1.1.1.1.5",
    ],
)
def test_parse_ack_subject_rejects_foreign_input(subject: str) -> None:
    assert ack_protocol.parse_ack_subject(subject) is None


NAMES = st.text(st.characters(exclude_characters=". *>\r\n\t", exclude_categories=["Cs"]), min_size=1, max_size=8)
UINT64 = st.integers(0, 2**64 - 1)


@given(NAMES, NAMES, UINT64, UINT64, UINT64, UINT64, UINT64)
@settings(max_examples=200)
def test_ack_subject_round_trips(stream: str, consumer: str, dc: int, sseq: int, cseq: int, ts: int, np: int) -> None:
    subject = ack_protocol.ack_subject(stream, consumer, dc, sseq, cseq, ts, np)
    assert len(subject.split(".")) == 9
    assert ack_protocol.parse_ack_subject(subject) == AckInfo(stream, consumer, dc, sseq, cseq, ts, np)


@given(
    st.text(max_size=60) | st.lists(st.sampled_from(["$JS", "ACK", "_", "P", "1", "x", ""]), max_size=13).map(".".join)
)
@settings(max_examples=200)
def test_parse_ack_subject_never_raises(subject: str) -> None:
    ack_protocol.parse_ack_subject(subject)


# ---- the state machine under random operation sequences ----------------------------------------------------------


class ConsumerMachine(RuleBasedStateMachine):
    """Drives one consumer through random deliveries, acks, naks, progress, terms, drops, purges and time."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = AckSettings()
        self.state = ConsumerState()
        self.now = 1
        self.handed_out: set[int] = set()
        self.finished: set[int] = set()  # acked, termed, dropped or given up after max_deliver
        self.deliveries: Counter[int] = Counter()
        self.reported: set[int] = set()
        self.floor = SequencePair()
        self.last_consumer_seq = 0

    @initialize(
        policy=st.sampled_from(AckPolicy),
        ack_wait=st.integers(0, 30),
        backoff=st.lists(st.integers(1, 30), max_size=3),
        max_deliver=st.sampled_from([-1, 1, 2, 3]),
        max_ack_pending=st.sampled_from([-1, 1, 2, 5]),
    )
    def configure(
        self, policy: AckPolicy, ack_wait: int, backoff: list[int], max_deliver: int, max_ack_pending: int
    ) -> None:
        self.cfg = AckSettings(
            ack_policy=policy,
            ack_wait_ns=ack_wait,
            backoff_ns=backoff,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
        )

    def _pick(self, data: st.DataObject) -> int:
        candidates = sorted(self.handed_out | {0, self.state.delivered.stream_seq + 1})
        return data.draw(st.sampled_from(candidates))

    def _record(self, delivery: Delivery, seq: int) -> None:
        assert delivery.stream_seq == seq
        assert delivery.consumer_seq == self.last_consumer_seq + 1
        self.last_consumer_seq = delivery.consumer_seq
        self.deliveries[seq] += 1
        assert delivery.num_delivered == self.deliveries[seq]
        self.handed_out.add(seq)

    @rule(gap=st.integers(1, 3))
    def deliver_new(self, gap: int) -> None:
        seq = self.state.delivered.stream_seq + gap
        if acks.can_deliver_new(self.state, self.cfg):
            self._record(acks.on_deliver(self.state, self.cfg, seq, self.now), seq)
        else:
            with pytest.raises(ValueError):
                acks.on_deliver(self.state, self.cfg, seq, self.now)

    @rule()
    def redeliver(self) -> None:
        seq = acks.next_to_redeliver(self.state, self.cfg)
        if seq is not None:
            self._record(acks.on_deliver(self.state, self.cfg, seq, self.now), seq)

    @rule(dt=st.integers(0, 40))
    def tick(self, dt: int) -> None:
        self.now += dt
        for event in acks.expire(self.state, self.cfg, self.now):
            assert event.stream_seq not in self.reported
            assert event.deliveries == self.deliveries[event.stream_seq] == self.cfg.max_deliver
            self.reported.add(event.stream_seq)
            self.finished.add(event.stream_seq)
        deadline = acks.next_deadline(self.state)
        assert deadline is None or deadline > self.now

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        seq = self._pick(data)
        state = self.state
        pending = set(state.pending)
        in_range = state.ack_floor.stream_seq < seq <= state.delivered.stream_seq
        acked = acks.on_ack(state, self.cfg, seq)
        if self.cfg.ack_policy is AckPolicy.EXPLICIT:
            assert acked == ([seq] if seq in pending else [])
        elif self.cfg.ack_policy is AckPolicy.ALL:
            assert acked == (sorted(s for s in pending if s <= seq) if in_range else [])
        else:
            assert acked == []
        self.finished.update(acked)

    @rule(data=st.data())
    def ack_batch(self, data: st.DataObject) -> None:
        """A batch of acks (one socket read) ends in the state one ack after the other would leave."""
        seqs = [self._pick(data) for _ in range(data.draw(st.integers(0, 6)))]
        one_by_one = acks.decode_state(acks.encode_state(self.state))
        expected = [done for seq in seqs for done in acks.on_ack(one_by_one, self.cfg, seq)]
        acked = acks.on_acks(self.state, self.cfg, seqs)
        assert acked == expected
        assert self.state == one_by_one
        self.finished.update(acked)

    @rule(data=st.data(), delay=st.none() | st.integers(-5, 40))
    def nak(self, data: st.DataObject, delay: int | None) -> None:
        seq = self._pick(data)
        was_pending = seq in self.state.pending
        assert acks.on_nak(self.state, self.cfg, seq, self.now, delay) == was_pending

    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        seq = self._pick(data)
        was_pending = seq in self.state.pending
        assert acks.on_progress(self.state, self.cfg, seq, self.now) == was_pending

    @rule(data=st.data(), term=st.booleans())
    def term_or_drop(self, data: st.DataObject, term: bool) -> None:
        seq = self._pick(data)
        was_pending = seq in self.state.pending
        assert (acks.on_term if term else acks.drop)(self.state, seq) == was_pending
        if was_pending:
            self.finished.add(seq)

    @rule(step=st.integers(0, 4))
    def purge(self, step: int) -> None:
        first_seq = self.state.ack_floor.stream_seq + step
        expected = sorted(s for s in self.state.pending if s < first_seq)
        assert acks.skip_before(self.state, first_seq) == expected
        self.finished.update(expected)

    @invariant()
    def ack_floor_rules(self) -> None:
        state, floor = self.state, self.state.ack_floor
        assert floor.stream_seq >= self.floor.stream_seq and floor.consumer_seq >= self.floor.consumer_seq
        self.floor = floor
        assert floor.stream_seq <= state.delivered.stream_seq and floor.consumer_seq <= state.delivered.consumer_seq
        for seq, pending in state.pending.items():
            assert floor.stream_seq < seq <= state.delivered.stream_seq
            assert floor.consumer_seq < pending.consumer_seq <= state.delivered.consumer_seq
        assert len({p.consumer_seq for p in state.pending.values()}) == len(state.pending)
        assert state.delivered.consumer_seq == self.last_consumer_seq

    @invariant()
    def every_delivery_is_accounted_for(self) -> None:
        state = self.state
        if self.cfg.ack_policy is AckPolicy.NONE:
            assert not state.pending and state.ack_floor == state.delivered
            return
        assert set(state.pending).isdisjoint(self.finished)
        assert self.handed_out == set(state.pending) | self.finished
        for seq in state.pending:
            assert acks.num_delivered(state, seq) == self.deliveries[seq]
        assert acks.num_redelivered(state) == sum(1 for seq in state.pending if self.deliveries[seq] > 1)
        if self.cfg.max_ack_pending > 0:
            assert acks.num_ack_pending(state) <= self.cfg.max_ack_pending

    @invariant()
    def bookkeeping_is_consistent(self) -> None:
        state = self.state
        if self.cfg.max_deliver > 0:
            assert max(self.deliveries.values(), default=0) <= self.cfg.max_deliver
        assert len(set(state.redeliver_queue)) == len(state.redeliver_queue)
        assert all(seq in state.pending and state.pending[seq].deadline_ns == 0 for seq in state.redeliver_queue)
        assert all(seq in state.pending and count >= 2 for seq, count in state.redelivered.items())
        assert acks.decode_state(acks.encode_state(state)) == state
        # _remove relies on pending being keyed in stream order (its first key is the lowest)
        assert list(state.pending) == sorted(state.pending)
        assert list(acks.decode_state(acks.encode_state(state)).pending) == list(state.pending)


ConsumerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestConsumerMachine = ConsumerMachine.TestCase


# ---- the redeliver queue without scans ----------------------------------------------------------------------------


@given(
    n=st.integers(1, 30),
    ops=st.lists(st.tuples(st.sampled_from(["redeliver", "ack", "nak", "progress", "term"]), st.integers(0, 29))),
)
def test_redeliver_queue_follows_a_list_model(n: int, ops: list[tuple[str, int]]) -> None:
    """The queue fast paths (head removal, no search for messages with a deadline) keep exactly the order a plain
    list with remove/append would: redeliveries in queue order, naks at the end, acks/terms/progress removing."""
    cfg = AckSettings(ack_policy=AckPolicy.EXPLICIT, ack_wait_ns=10)
    state = ConsumerState()
    _deliver(state, cfg, *range(1, n + 1), now=1)
    acks.expire(state, cfg, 100)
    model = list(range(1, n + 1))
    now = 100
    for op, pick in ops:
        seq = pick % n + 1
        if op == "redeliver":
            head = acks.next_to_redeliver(state, cfg)
            assert head == (model[0] if model else None)
            if head is not None:
                acks.on_deliver(state, cfg, head, now)
                model.remove(head)
        elif op == "ack":
            acks.on_ack(state, cfg, seq)
            if seq in model:
                model.remove(seq)
        elif op == "term":
            acks.on_term(state, seq)
            if seq in model:
                model.remove(seq)
        elif op == "progress":
            if acks.on_progress(state, cfg, seq, now) and seq in model:
                model.remove(seq)
        elif acks.on_nak(state, cfg, seq, now) and seq not in model:
            model.append(seq)
        assert state.redeliver_queue == model


def test_acking_a_message_with_a_deadline_never_searches_the_queue() -> None:
    cfg = AckSettings(ack_policy=AckPolicy.EXPLICIT, ack_wait_ns=10)
    state = ConsumerState()
    _deliver(state, cfg, 1, 2, 3, now=1)
    acks.expire(state, cfg, 100)  # 1, 2, 3 queued
    acks.on_deliver(state, cfg, 1, 100)  # the head goes out again: it has a deadline, not queued
    assert state.redeliver_queue == [2, 3]
    state.redeliver_queue.append(1)  # a queue entry a scan would find; the deadline says it is not queued
    acks.on_ack(state, cfg, 1)
    assert state.redeliver_queue == [2, 3, 1]  # untouched: no search was made
