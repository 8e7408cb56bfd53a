"""Consumer config rules (pure): the defaults the server applies, every refusal with its wire error code, what an
update may not change, and the filters normalisation computes once."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET

from streamd.consumers import acks, rules
from streamd.wire import errors
from streamd.wire.errors import ApiError, ErrorKind
from streamd.wire.models import AckPolicyWire, ConsumerConfig, ConsumerLimits, DeliverPolicy, Retention, StreamConfig

SECOND = 1_000_000_000
STREAM = StreamConfig(name="S", subjects=["s.>"])
WORKQUEUE = StreamConfig(name="W", subjects=["w.>"], retention=Retention.WORKQUEUE)


def _normalize(stream: StreamConfig = STREAM, name: str = "c", **kw: Any) -> rules.Normalized:
    return rules.normalize(ConsumerConfig(**kw), stream, name)


def test_pull_defaults() -> None:
    cfg, filters = _normalize(durable_name="c", ack_policy=AckPolicyWire.EXPLICIT)
    assert cfg.ack_wait == rules.DEFAULT_ACK_WAIT
    assert cfg.max_ack_pending == rules.DEFAULT_MAX_ACK_PENDING
    assert cfg.max_waiting == rules.DEFAULT_MAX_WAITING
    assert cfg.max_deliver == -1
    assert cfg.inactive_threshold is UNSET  # durable: kept until deleted
    assert cfg.deliver_subject is UNSET and cfg.idle_heartbeat is UNSET
    assert filters == []


def test_ephemeral_gets_an_inactive_threshold_from_the_stream_or_the_default() -> None:
    assert _normalize().config.inactive_threshold == rules.DEFAULT_EPHEMERAL_INACTIVE
    limited = StreamConfig(name="L", subjects=["l"], consumer_limits=ConsumerLimits(inactive_threshold=7 * SECOND))
    assert _normalize(limited).config.inactive_threshold == 7 * SECOND


def test_ack_none_omits_ack_wait_and_max_ack_pending() -> None:
    cfg = _normalize(ack_policy=AckPolicyWire.NONE).config
    assert cfg.ack_wait is UNSET and cfg.max_ack_pending is UNSET


def test_backoff_sets_the_ack_wait() -> None:
    cfg = _normalize(ack_policy=AckPolicyWire.EXPLICIT, backoff=[2 * SECOND, 5 * SECOND]).config
    assert cfg.ack_wait == 2 * SECOND


def test_push_defaults_drop_pull_only_fields() -> None:
    cfg = _normalize(deliver_subject="out", deliver_group="", rate_limit_bps=0, flow_control=False).config
    assert cfg.max_waiting is UNSET and cfg.deliver_group is UNSET and cfg.rate_limit_bps is UNSET
    assert cfg.flow_control is UNSET


def test_normalize_leaves_the_request_alone() -> None:
    requested = ConsumerConfig(durable_name="", filter_subject="", ack_policy=AckPolicyWire.EXPLICIT)
    before = msgspec.structs.asdict(requested)
    rules.normalize(requested, STREAM, "c")
    assert msgspec.structs.asdict(requested) == before


@pytest.mark.parametrize(
    ("kw", "stream", "kind"),
    [
        ({"deliver_policy": DeliverPolicy.BY_START_SEQUENCE}, STREAM, errors.CONSUMER_INVALID_POLICY),
        ({"opt_start_seq": 3}, STREAM, errors.CONSUMER_INVALID_POLICY),
        ({"deliver_policy": DeliverPolicy.BY_START_TIME}, STREAM, errors.CONSUMER_INVALID_POLICY),
        (
            {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": "yesterday"},
            STREAM,
            errors.CONSUMER_INVALID_POLICY,
        ),
        ({"opt_start_time": "2024-01-01T00:00:00Z"}, STREAM, errors.CONSUMER_INVALID_POLICY),
        ({"deliver_policy": DeliverPolicy.LAST_PER_SUBJECT}, STREAM, errors.CONSUMER_INVALID_POLICY),
        ({"ack_policy": AckPolicyWire.EXPLICIT, "ack_wait": -1}, STREAM, errors.ACK_WAIT_NEGATIVE),
        ({"ack_policy": AckPolicyWire.EXPLICIT, "backoff": [0]}, STREAM, errors.BACKOFF_NEGATIVE),
        (
            {"ack_policy": AckPolicyWire.EXPLICIT, "backoff": [SECOND, SECOND], "max_deliver": 1},
            STREAM,
            errors.MAX_DELIVER_BACKOFF,
        ),
        ({"deliver_subject": "out", "max_ack_pending": 5}, STREAM, errors.MAX_PENDING_NEEDS_ACK),
        ({"deliver_subject": "bad subject"}, STREAM, errors.INVALID_DELIVER_SUBJECT),
        ({"deliver_subject": "o" * (rules.MAX_DELIVER_SUBJECT + 1)}, STREAM, errors.INVALID_DELIVER_SUBJECT),
        ({"deliver_subject": "out", "deliver_group": "a b"}, STREAM, errors.CONSUMER_CREATE),
        ({"deliver_subject": "out.*"}, STREAM, errors.DELIVER_WILDCARDS),
        ({"deliver_subject": "s.x"}, STREAM, errors.DELIVER_CYCLE),
        ({"deliver_subject": "out", "max_waiting": 4}, STREAM, errors.PUSH_MAX_WAITING),
        ({"deliver_subject": "out", "idle_heartbeat": 1000}, STREAM, errors.SMALL_HEARTBEAT),
        ({"deliver_subject": "out", "flow_control": True}, STREAM, errors.FC_NEEDS_HEARTBEATS),
        ({"deliver_subject": "out", "max_batch": 5}, STREAM, errors.CONSUMER_CREATE),
        ({"idle_heartbeat": SECOND}, STREAM, errors.HB_REQUIRES_PUSH),
        ({"flow_control": True}, STREAM, errors.FC_REQUIRES_PUSH),
        ({"rate_limit_bps": 100}, STREAM, errors.PULL_WITH_RATE_LIMIT),
        ({"max_waiting": -1}, STREAM, errors.MAX_WAITING_NEGATIVE),
        ({"max_batch": -1}, STREAM, errors.MAX_BATCH_NEGATIVE),
        ({"max_expires": 10}, STREAM, errors.MAX_EXPIRES_TOO_SMALL),
        ({"filter_subject": "s.a", "filter_subjects": ["s.b"]}, STREAM, errors.DUPLICATE_FILTERS),
        ({"filter_subjects": ["s.a", ""]}, STREAM, errors.EMPTY_FILTER),
        ({"filter_subjects": ["s.a", "s.*"]}, STREAM, errors.OVERLAPPING_FILTERS),
        ({"filter_subjects": ["s..a"]}, STREAM, errors.STREAM_INVALID_CONFIG),
        ({"filter_subject": "s.>.a"}, STREAM, errors.STREAM_INVALID_CONFIG),
        ({"ack_policy": AckPolicyWire.EXPLICIT, "num_replicas": 3}, STREAM, errors.REPLICAS_EXCEED_STREAM),
        ({"inactive_threshold": -1}, STREAM, errors.CONSUMER_CREATE),
        ({"pause_until": "soon"}, STREAM, errors.CONSUMER_CREATE),
        ({"description": "d" * (rules.MAX_DESCRIPTION + 1)}, STREAM, errors.CONSUMER_DESCRIPTION_TOO_LONG),
        ({"metadata": {"k": "v" * rules.MAX_METADATA}}, STREAM, errors.CONSUMER_CREATE),
        ({"priority_groups": ["g"]}, STREAM, errors.PRIORITY_GROUP_WITH_POLICY_NONE),
        ({"priority_policy": "overflow"}, STREAM, errors.PRIORITY_POLICY_WITHOUT_GROUP),
        ({"priority_policy": "pinned_client", "priority_groups": [""]}, STREAM, errors.EMPTY_GROUP_NAME),
        ({"priority_policy": "prioritized", "priority_groups": ["a.b"]}, STREAM, errors.INVALID_GROUP_NAME),
        (
            {"priority_policy": "overflow", "priority_groups": ["g"], "deliver_subject": "d"},
            STREAM,
            errors.PUSH_WITH_PRIORITY_GROUP,
        ),
        ({"priority_timeout": 5}, STREAM, errors.PINNED_TTL_WITHOUT_POLICY),
        ({"priority_policy": 3, "priority_groups": ["g"]}, STREAM, errors.INVALID_JSON),
        ({"sourcing": {"x": 1}}, STREAM, errors.CONSUMER_CREATE),
        ({"direct": True}, STREAM, errors.DIRECT_REQUIRES_PUSH),
        ({"direct": True, "deliver_subject": "d", "durable_name": "D"}, STREAM, errors.DIRECT_REQUIRES_EPHEMERAL),
        (
            {"ack_policy": AckPolicyWire.EXPLICIT, "deliver_policy": DeliverPolicy.NEW},
            WORKQUEUE,
            errors.WQ_NOT_DELIVER_ALL,
        ),
        ({"ack_policy": AckPolicyWire.NONE}, WORKQUEUE, errors.PULL_REQUIRES_ACK),
        ({"ack_policy": AckPolicyWire.ALL}, WORKQUEUE, errors.WQ_REQUIRES_EXPLICIT_ACK),
    ],
)
def test_each_refusal_has_its_error_code(kw: dict[str, Any], stream: StreamConfig, kind: ErrorKind) -> None:
    with pytest.raises(ApiError) as refused:
        rules.normalize(ConsumerConfig(**kw), stream, "c")
    assert (refused.value.code, refused.value.err_code) == (kind.code, kind.err_code)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a/b", errors.CONSUMER_NAME_PATH_SEPARATORS), ("x" * 300, errors.CONSUMER_NAME_TOO_LONG)],
)
def test_bad_names_are_refused(name: str, kind: ErrorKind) -> None:
    with pytest.raises(ApiError) as refused:
        rules.normalize(ConsumerConfig(), STREAM, name)
    assert refused.value.err_code == kind.err_code


def test_a_name_with_a_dot_is_refused() -> None:
    with pytest.raises(ApiError) as refused:
        rules.check_name("a.b")
    assert refused.value.err_code == errors.STREAM_INVALID_CONFIG.err_code


@pytest.mark.parametrize(
    ("old", "new", "text"),
    [
        ({}, {"deliver_subject": "out"}, "can not update pull consumer to push based"),
        ({"deliver_subject": "out"}, {}, "can not update push consumer to pull based"),
        ({}, {"deliver_policy": DeliverPolicy.NEW}, "deliver policy can not be updated"),
        ({}, {"ack_policy": AckPolicyWire.EXPLICIT}, "ack policy can not be updated"),
        ({}, {"max_waiting": 3}, "max waiting can not be updated"),
    ],
)
def test_what_an_update_may_not_change(old: dict[str, Any], new: dict[str, Any], text: str) -> None:
    with pytest.raises(ApiError) as refused:
        rules.check_update(ConsumerConfig(**old), ConsumerConfig(**new))
    assert refused.value.err_code == errors.CONSUMER_CREATE.err_code
    assert refused.value.description == text


def test_an_update_may_change_the_rest() -> None:
    rules.check_update(ConsumerConfig(), ConsumerConfig(description="new", max_deliver=5, filter_subject="s.a"))


def test_stored_problem_rechecks_what_reaches_the_wire() -> None:
    assert rules.stored_problem(ConsumerConfig(filter_subject="s.a")) == ""
    assert rules.stored_problem(ConsumerConfig(filter_subject="s a")).startswith("invalid filter subject")
    assert rules.stored_problem(ConsumerConfig(deliver_subject="out.*")) == "invalid deliver subject"
    assert rules.stored_problem(ConsumerConfig(deliver_subject="o" * 2000)) == "deliver subject too long"
    assert rules.stored_problem(ConsumerConfig(deliver_subject="out", deliver_group="a b")) == "invalid deliver group"


def test_ack_settings_follow_the_config() -> None:
    cfg = _normalize(ack_policy=AckPolicyWire.EXPLICIT, backoff=[SECOND, 2 * SECOND], max_deliver=4).config
    s = rules.ack_settings(cfg)
    assert s.ack_policy is acks.AckPolicy.EXPLICIT
    assert (s.ack_wait_ns, s.backoff_ns, s.max_deliver, s.max_ack_pending) == (SECOND, [SECOND, 2 * SECOND], 4, 1000)
    none = rules.ack_settings(_normalize().config)
    assert (none.ack_wait_ns, none.max_ack_pending) == (acks.DEFAULT_ACK_WAIT_NS, -1)


_tokens = st.sampled_from(["a", "b", "c", "*"])
_filters = st.lists(st.lists(_tokens, min_size=1, max_size=3).map(lambda t: "s." + ".".join(t)), max_size=5)


@given(_filters, st.booleans())
def test_filters_are_computed_once_and_normalising_again_changes_nothing(filters: list[str], single: bool) -> None:
    kw: dict[str, Any] = {"ack_policy": AckPolicyWire.EXPLICIT, "durable_name": "c"}
    if single and filters:
        kw["filter_subject"] = filters[0]
    else:
        kw["filter_subjects"] = filters
    try:
        cfg, mine = rules.normalize(ConsumerConfig(**kw), STREAM, "c")
    except ApiError as refused:
        assert refused.err_code == errors.OVERLAPPING_FILTERS.err_code  # the only refusal these can earn
        return
    assert mine == rules.filters(cfg)
    again = rules.normalize(cfg, STREAM, "c")
    assert msgspec.structs.asdict(again.config) == msgspec.structs.asdict(cfg)
    assert again.filters == mine
