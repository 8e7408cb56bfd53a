"""Stream config rules: the server's defaults, its refusals (with their error codes), the update rules."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET

from streamd.streams import rules
from streamd.wire import errors
from streamd.wire.models import (
    Discard,
    RePublish,
    Retention,
    Storage,
    StreamConfig,
    StreamSource,
    SubjectTransformConfig,
)

SECOND = 1_000_000_000


def _cfg(**kw: Any) -> StreamConfig:
    kw.setdefault("name", "S")
    return StreamConfig(**kw)


def _refusal(kind: errors.ErrorKind, text: str = "", **kw: Any) -> None:
    with pytest.raises(errors.ApiError) as info:
        rules.normalize(_cfg(**kw))
    assert (info.value.code, info.value.err_code) == (kind.code, kind.err_code)
    assert text in info.value.description


def test_defaults() -> None:
    c = rules.normalize(_cfg())
    assert c.subjects == ["S"]
    assert (c.num_replicas, c.duplicate_window) == (1, rules.DEFAULT_DUPLICATE_WINDOW)
    assert (c.max_msgs, c.max_bytes, c.max_msgs_per_subject, c.max_msg_size, c.max_consumers) == (-1,) * 5
    assert c.description is UNSET and c.first_seq is UNSET and c.no_ack is UNSET


def test_zero_and_below_minus_one_limits_mean_unlimited() -> None:
    c = rules.normalize(_cfg(max_msgs=0, max_bytes=-7, max_msg_size=0, max_msgs_per_subject=5))
    assert (c.max_msgs, c.max_bytes, c.max_msg_size, c.max_msgs_per_subject) == (-1, -1, -1, 5)


def test_duplicate_window_follows_a_short_max_age() -> None:
    assert rules.normalize(_cfg(max_age=30 * SECOND)).duplicate_window == 30 * SECOND
    assert rules.normalize(_cfg(max_age=600 * SECOND)).duplicate_window == rules.DEFAULT_DUPLICATE_WINDOW


def test_empty_values_are_dropped_as_the_server_omits_them() -> None:
    c = rules.normalize(_cfg(description="", placement=None, no_ack=False, first_seq=0, discard_new_per_subject=False))
    assert (c.description, c.placement, c.no_ack, c.first_seq, c.discard_new_per_subject) == (UNSET,) * 5
    assert rules.normalize(_cfg(subject_delete_marker_ttl=0)).subject_delete_marker_ttl is UNSET


def test_sealed_implies_the_read_only_flags() -> None:
    c = rules.normalize(_cfg(sealed=True, max_age=60 * SECOND, allow_rollup_hdrs=True))
    assert (c.deny_delete, c.deny_purge, c.allow_rollup_hdrs, c.discard, c.max_age) == (True, True, False, "new", 0)


def test_subject_delete_markers_turn_on_ttl_and_rollup() -> None:
    c = rules.normalize(_cfg(subject_delete_marker_ttl=5 * SECOND))
    assert c.allow_msg_ttl is True and c.allow_rollup_hdrs is True


@pytest.mark.parametrize(
    ("kind", "text", "kw"),
    [
        (errors.STREAM_NAME_PATH_SEPARATORS, "", {"name": "a/b"}),
        (errors.STREAM_INVALID_CONFIG, "stream name is required", {"name": ""}),
        (errors.STREAM_INVALID_CONFIG, "stream name is required", {"name": "a.b"}),
        (errors.STREAM_INVALID_CONFIG, "too long", {"name": "n" * 256}),
        (
            errors.STREAM_TRANSFORM_INVALID_DESTINATION,
            "unknown function",
            {"subject_transform": SubjectTransformConfig(src="a.*", dest="{{x(1)}}")},
        ),
        (errors.STREAM_INVALID_CONFIG, "forms a cycle", {"republish": RePublish(dest="a.b"), "subjects": ["a.*"]}),
        (errors.MIRROR_WITH_SUBJECTS, "", {"mirror": StreamSource(name="O"), "subjects": ["x"]}),
        (
            errors.SOURCE_OVERLAPPING_SUBJECT_FILTERS,
            "",
            {
                "sources": [
                    StreamSource(
                        name="O",
                        subject_transforms=[
                            SubjectTransformConfig(src="a.>", dest=""),
                            SubjectTransformConfig(src="a.b", dest="x"),
                        ],
                    )
                ]
            },
        ),
        (errors.STREAM_INVALID_CONFIG, "description is too long", {"description": "d" * 4097}),
        (errors.REPLICAS_NEGATIVE, "", {"num_replicas": -1}),
        (errors.REPLICAS_NOT_SUPPORTED, "", {"num_replicas": 3}),
        (errors.STREAM_INVALID_CONFIG, "max age can not be negative", {"max_age": -1}),
        (errors.STREAM_INVALID_CONFIG, "max age needs to be >= 100ms", {"max_age": 99_000_000}),
        (errors.STREAM_INVALID_CONFIG, "can not be negative", {"duplicate_window": -1}),
        (errors.STREAM_INVALID_CONFIG, "needs to be >= 100ms", {"duplicate_window": 1}),
        (errors.STREAM_INVALID_CONFIG, "larger then max age", {"duplicate_window": 5 * SECOND, "max_age": SECOND}),
        (errors.STREAM_INVALID_CONFIG, "invalid subject", {"subjects": ["a..b"]}),
        (errors.STREAM_INVALID_CONFIG, "cannot store it", {"subjects": ["a." + "x" * 480]}),
        (errors.STREAM_INVALID_CONFIG, 'subject "a.*" overlaps with "a.b"', {"subjects": ["a.*", "a.b"]}),
        (errors.STREAM_INVALID_CONFIG, "requires no-ack", {"subjects": [">"]}),
        (errors.STREAM_INVALID_CONFIG, "jetstream api", {"subjects": ["$JS.API.>"]}),
        (errors.STREAM_INVALID_CONFIG, "system api", {"subjects": ["$SYS.x"]}),
        (errors.STREAM_INVALID_CONFIG, "purge permission", {"deny_purge": True, "allow_rollup_hdrs": True}),
        (errors.STREAM_INVALID_CONFIG, "discard new policy", {"discard_new_per_subject": True}),
        (
            errors.STREAM_INVALID_CONFIG,
            "max msgs per subject > 0",
            {"discard_new_per_subject": True, "discard": Discard.NEW},
        ),
        (errors.STREAM_INVALID_CONFIG, "at least 1 second", {"subject_delete_marker_ttl": SECOND - 1}),
        (errors.STREAM_INVALID_CONFIG, "128 KiB", {"metadata": {"k": "v" * (128 * 1024)}}),
    ],
)
def test_refusals(kind: errors.ErrorKind, text: str, kw: dict[str, Any]) -> None:
    _refusal(kind, text, **kw)


def test_capturing_everything_is_allowed_without_acks() -> None:
    assert rules.normalize(_cfg(subjects=[">"], no_ack=True)).subjects == [">"]
    assert rules.normalize(_cfg(subjects=["$JS.EVENT.>"])).subjects == ["$JS.EVENT.>"]


@pytest.mark.parametrize(
    ("old", "new", "text"),
    [
        ({}, {"storage": Storage.MEMORY}, "storage type"),
        ({}, {"retention": Retention.WORKQUEUE}, "retention policy"),
        ({"retention": Retention.WORKQUEUE}, {}, "retention policy"),
        ({"sealed": True}, {}, "unseal"),
        ({"deny_delete": True}, {}, "deny message deletes"),
        ({"deny_purge": True}, {}, "deny purge"),
        ({"allow_msg_ttl": True}, {}, "disable message TTL"),
    ],
)
def test_update_refusals(old: dict[str, Any], new: dict[str, Any], text: str) -> None:
    with pytest.raises(errors.ApiError) as info:
        rules.check_update(rules.normalize(_cfg(**old)), rules.normalize(_cfg(**new)))
    assert info.value.err_code == errors.STREAM_INVALID_CONFIG.err_code and text in info.value.description


def test_allowed_updates() -> None:
    rules.check_update(rules.normalize(_cfg()), rules.normalize(_cfg(retention=Retention.INTEREST, max_msgs=5)))
    rules.check_update(rules.normalize(_cfg()), rules.normalize(_cfg(sealed=True, deny_delete=True)))


_configs = st.builds(
    _cfg,
    subjects=st.lists(st.sampled_from(["a", "a.b", "b.*", "c.>", "d.e.f"]), max_size=3, unique=True),
    max_msgs=st.integers(-3, 5),
    max_bytes=st.integers(-3, 5),
    max_msgs_per_subject=st.integers(-3, 5),
    max_age=st.sampled_from([0, SECOND, 3600 * SECOND]),
    duplicate_window=st.sampled_from([0, SECOND]),
    discard=st.sampled_from(list(Discard)),
    retention=st.sampled_from(list(Retention)),
    sealed=st.booleans(),
    deny_purge=st.booleans(),
    allow_rollup_hdrs=st.booleans(),
    subject_delete_marker_ttl=st.sampled_from([UNSET, 0, 2 * SECOND]),
    first_seq=st.sampled_from([UNSET, 0, 7]),
    num_replicas=st.sampled_from([0, 1]),
)


@given(_configs)
def test_normalize_is_idempotent_and_never_mutates_its_input(cfg: StreamConfig) -> None:
    before = msgspec.json.encode(cfg)
    try:
        once = rules.normalize(cfg)
    except errors.ApiError as exc:  # a refusal is always a table entry
        assert exc.err_code in {k.err_code for k in errors.ALL_KINDS.values()}
        return
    finally:
        assert msgspec.json.encode(cfg) == before
    assert rules.normalize(once) == once
    rules.check_update(once, once)  # a config may always be updated to itself


def test_subject_delete_markers_turn_deny_purge_off_as_nats_server_does() -> None:
    """Markers purge subjects, so nats-server turns on rollups and TTLs and turns deny_purge off; the result must
    pass normalize again (a restart re-checks the stored config, an update echoes it)."""
    cfg = StreamConfig(name="S", subjects=["s"], deny_purge=True, subject_delete_marker_ttl=2 * SECOND)
    once = rules.normalize(cfg)
    assert (once.deny_purge, once.allow_rollup_hdrs, once.allow_msg_ttl) == (False, True, True)
    assert rules.normalize(once) == once
