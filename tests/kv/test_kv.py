"""Key/value buckets through stock nats-py (`js.create_key_value()` / `key_value()` / `delete_key_value()`).

Every test that takes `js` runs against the real JetStream and against streamd (tests/kv/conftest.py): the
`jetstream` run proves the expectation, the `streamd` run checks that streamd matches it. The last two tests are
about streamd itself: a watcher that outlives a streamd restart, and concurrent optimistic updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from tests.conftest import StartService
from tests.helpers import wait_for
from tests.natsd import NatsServer

Summary = tuple[str, bytes, int | None, str | None]


def summary(entry: KeyValue.Entry) -> Summary:
    return (entry.key, entry.value or b"", entry.revision, entry.operation)


async def initial_values(watcher: KeyValue.KeyWatcher, timeout: float = 5.0) -> list[KeyValue.Entry]:
    """The entries a watcher delivers before its None "initial values done" marker."""
    entries = []
    while (entry := await watcher.updates(timeout=timeout)) is not None:
        entries.append(entry)
    return entries


async def not_found(kv: KeyValue, key: str, **kwargs: Any) -> bool:
    try:
        await kv.get(key, **kwargs)
    except KeyNotFoundError:
        return True
    return False


# --- put / get ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direct", [False, True], ids=["msg-get", "direct-get"])
async def test_put_and_get_latest_and_by_revision(js: JetStreamContext, direct: bool) -> None:
    kv = await js.create_key_value(bucket="cfg", history=5, direct=direct)
    assert await kv.put("a", b"one") == 1
    assert await kv.put("b", b"two") == 2
    assert await kv.put("a", b"three") == 3
    assert await kv.put("deep.path/x=1_y-z", b"four") == 4

    latest = await kv.get("a")
    assert (latest.bucket, latest.key, latest.value, latest.revision) == ("cfg", "a", b"three", 3)
    assert (await kv.get("b")).value == b"two"
    assert (await kv.get("deep.path/x=1_y-z")).value == b"four"

    first = await kv.get("a", revision=1)
    assert (first.key, first.value, first.revision) == ("a", b"one", 1)
    with pytest.raises(KeyNotFoundError):
        await kv.get("a", revision=2)  # revision 2 is key b
    with pytest.raises(KeyNotFoundError):
        await kv.get("a", revision=99)
    with pytest.raises(KeyNotFoundError):
        await kv.get("missing")

    assert await kv.put("a", b"") == 5  # an empty value is a value, not a delete
    empty = await kv.get("a")
    assert (empty.value, empty.revision) == (None, 5)  # nats-py gives None for an empty stored payload


async def test_history_limit_drops_the_oldest_revision(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="lim", history=2)
    for i in range(1, 5):
        assert await kv.put("k", b"v%d" % i) == i
    assert await not_found(kv, "k", revision=1)
    assert await not_found(kv, "k", revision=2)
    assert (await kv.get("k", revision=3)).value == b"v3"
    assert (await kv.status()).values == 2


# --- create / update ---------------------------------------------------------------------------------------------


async def test_create_fails_if_key_exists_and_succeeds_after_delete_or_purge(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="cr", history=10)
    assert await kv.create("k", b"first") == 1
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("k", b"again")
    assert (await kv.get("k")).value == b"first"

    await kv.delete("k")  # revision 2: a DEL marker
    assert await kv.create("k", b"recreated") == 3
    assert (await kv.get("k")).value == b"recreated"
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("k", b"again")

    await kv.purge("k")  # revision 4: a PURGE marker
    assert await kv.create("k", b"after purge") == 5
    got = await kv.get("k")
    assert (got.value, got.revision) == (b"after purge", 5)


async def test_update_with_expected_revision(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="up", history=5)
    r1 = await kv.put("k", b"v1")
    await kv.put("other", b"x")  # the expected revision is per key, not per bucket
    r2 = await kv.update("k", b"v2", last=r1)
    assert (r1, r2) == (1, 3)
    assert (await kv.get("k")).value == b"v2"

    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("k", b"stale", last=r1)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("k", b"future", last=99)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("missing", b"x", last=1)
    assert (await kv.get("k")).value == b"v2"

    assert await kv.update("k", b"v3", last=r2) == 4
    assert await kv.update("fresh", b"new", last=0) == 5  # last=0: the key must not exist yet
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("fresh", b"new", last=0)


# --- delete / purge ----------------------------------------------------------------------------------------------


async def test_delete_leaves_a_marker_and_keeps_older_revisions(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="del", history=5)
    await kv.put("k", b"v1")
    await kv.put("k", b"v2")
    await kv.put("keep", b"kept")
    assert await kv.delete("k") is True  # revision 4

    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    assert (await kv.get("k", revision=2)).value == b"v2"
    assert (await kv.get("keep")).value == b"kept"
    assert (await kv.status()).values == 4
    assert [summary(e) for e in await kv.history("k")] == [
        ("k", b"v1", 1, None),
        ("k", b"v2", 2, None),
        ("k", b"", 4, "DEL"),
    ]

    # delete with an expected revision: a stale one is refused by the server (nats-py does not map it to a KV error)
    await kv.put("k", b"v5")
    with pytest.raises(BadRequestError) as stale:
        await kv.delete("k", last=4)
    assert stale.value.err_code == 10071
    assert (await kv.get("k")).value == b"v5"
    assert await kv.delete("k", last=5) is True
    assert await not_found(kv, "k")


async def test_purge_removes_all_revisions_of_the_key(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="pu", history=10)
    for i in range(3):
        await kv.put("k", b"v%d" % i)
    await kv.put("other", b"o")
    assert await kv.purge("k") is True  # revision 5 rolls up k: only the marker is left

    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    for revision in (1, 2, 3):
        assert await not_found(kv, "k", revision=revision)
    assert (await kv.get("other")).value == b"o"
    assert (await kv.status()).values == 2
    assert [summary(e) for e in await kv.history("k")] == [("k", b"", 5, "PURGE")]


# --- keys / history ----------------------------------------------------------------------------------------------


async def test_keys(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="ks", history=3)
    with pytest.raises(NoKeysError):
        await kv.keys()

    for key in ("a", "b", "c.d", "c.e"):
        await kv.put(key, b"x")
    await kv.put("a", b"y")  # a second revision is still one key
    assert sorted(await kv.keys()) == ["a", "b", "c.d", "c.e"]

    await kv.delete("b")
    await kv.purge("c.e")
    assert sorted(await kv.keys()) == ["a", "c.d"]
    assert await kv.keys(filters=["c."]) == ["c.d"]

    await kv.delete("a")
    await kv.delete("c.d")
    with pytest.raises(NoKeysError):
        await kv.keys()


async def test_keys_and_watch_over_many_keys(js: JetStreamContext) -> None:
    """More keys than the watcher's queue (256) and than one flow-control window: all arrive, once, in order."""
    kv = await js.create_key_value(bucket="many", history=2)
    n = 2000
    for i in range(n):
        await js.publish_async(f"$KV.many.k{i:05d}", b"v%d" % i)
    await js.publish_async_completed()
    for i in range(0, n, 2):  # a second revision for half of them
        await js.publish_async(f"$KV.many.k{i:05d}", b"w%d" % i)
    await js.publish_async_completed()
    assert (await kv.status()).values == n + n // 2

    async def all_keys_listed() -> bool:
        with contextlib.suppress(NoKeysError):  # nats-py's keys() watcher can stop early (seen against nats-server)
            return sorted(await kv.keys()) == [f"k{i:05d}" for i in range(n)]
        return False

    await wait_for(all_keys_listed, timeout=20, interval=0.2)
    watcher = await kv.watchall()
    initial = await initial_values(watcher, timeout=10)
    assert len(initial) == n
    assert [e.revision for e in initial] == list(range(2, n + 1, 2)) + list(range(n + 1, n + n // 2 + 1))
    latest = {e.key: e.value for e in initial}
    assert latest == {f"k{i:05d}": (b"w%d" if i % 2 == 0 else b"v%d") % i for i in range(n)}
    assert [e.delta for e in initial][-3:] == [2, 1, 0]
    await kv.put("k00000", b"live")
    assert summary(await watcher.updates(timeout=5)) == ("k00000", b"live", n + n // 2 + 1, None)
    await watcher.stop()
    history = await kv.history("k00000")
    assert [e.value for e in history] == [b"w0", b"live"]


async def test_history(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="hi", history=3)
    with pytest.raises(NoKeysError):
        await kv.history("k")
    for i in range(1, 5):
        await kv.put("k", b"v%d" % i)
        await kv.put("noise", b"n%d" % i)
    entries = await kv.history("k")
    assert [summary(e) for e in entries] == [("k", b"v2", 3, None), ("k", b"v3", 5, None), ("k", b"v4", 7, None)]
    assert [e.delta for e in entries] == [2, 1, 0]
    assert {e.bucket for e in entries} == {"hi"}
    now = datetime.datetime.now(datetime.UTC)
    for e in entries:
        assert isinstance(e.created, datetime.datetime)
        assert abs((now - e.created).total_seconds()) < 60

    await kv.delete("k")
    assert [summary(e) for e in await kv.history("k")][-1] == ("k", b"", 9, "DEL")
    with pytest.raises(NoKeysError):
        await kv.history("missing")


# --- watch -------------------------------------------------------------------------------------------------------


async def test_watchall_initial_values_then_marker_then_live_updates(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="wa")
    await kv.put("a", b"1")
    await kv.put("b", b"2")
    await kv.put("a", b"3")  # history 1: revision 1 is gone, the watcher sees a at revision 3

    watcher = await kv.watchall()
    initial = await initial_values(watcher)
    assert [summary(e) for e in initial] == [("b", b"2", 2, None), ("a", b"3", 3, None)]
    assert [e.delta for e in initial] == [1, 0]

    await kv.put("c", b"4")
    assert summary(await watcher.updates(timeout=5)) == ("c", b"4", 4, None)
    await kv.delete("a")
    assert summary(await watcher.updates(timeout=5)) == ("a", b"", 5, "DEL")
    await kv.purge("b")
    assert summary(await watcher.updates(timeout=5)) == ("b", b"", 6, "PURGE")
    await kv.put("a", b"7")
    live = await watcher.updates(timeout=5)
    assert (summary(live), live.delta) == (("a", b"7", 7, None), 0)
    await watcher.stop()


async def test_watch_on_an_empty_bucket_gives_the_marker_first(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="we")
    watcher = await kv.watchall()
    assert await watcher.updates(timeout=5) is None
    await kv.put("k", b"v")
    assert summary(await watcher.updates(timeout=5)) == ("k", b"v", 1, None)
    await watcher.stop()


async def test_watch_one_key_and_a_wildcard(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="wk", history=5)
    await kv.put("a", b"a1")
    await kv.put("grp.1", b"g1")
    await kv.put("grp.2", b"g2")
    await kv.put("a", b"a2")
    await kv.put("grp.1", b"g1b")

    one = await kv.watch("a")
    group = await kv.watch("grp.*")
    assert [summary(e) for e in await initial_values(one)] == [("a", b"a2", 4, None)]
    assert [summary(e) for e in await initial_values(group)] == [("grp.2", b"g2", 3, None), ("grp.1", b"g1b", 5, None)]

    await kv.put("grp.3", b"g3")
    await kv.put("a", b"a3")
    await kv.delete("grp.2")
    assert summary(await one.updates(timeout=5)) == ("a", b"a3", 7, None)
    assert summary(await group.updates(timeout=5)) == ("grp.3", b"g3", 6, None)
    assert summary(await group.updates(timeout=5)) == ("grp.2", b"", 8, "DEL")
    await one.stop()
    await group.stop()


async def test_watch_with_history_and_ignore_deletes(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="wh", history=5)
    await kv.put("k", b"1")
    await kv.put("k", b"2")
    await kv.delete("k")
    await kv.put("j", b"j")

    full = await kv.watch("k", include_history=True)
    assert [summary(e) for e in await initial_values(full)] == [
        ("k", b"1", 1, None),
        ("k", b"2", 2, None),
        ("k", b"", 3, "DEL"),
    ]
    quiet = await kv.watchall(ignore_deletes=True)
    assert [summary(e) for e in await initial_values(quiet)] == [("j", b"j", 4, None)]
    await kv.put("k", b"5")
    await kv.delete("j")
    await kv.put("j", b"7")
    assert summary(await full.updates(timeout=5)) == ("k", b"5", 5, None)
    assert summary(await quiet.updates(timeout=5)) == ("k", b"5", 5, None)
    assert summary(await quiet.updates(timeout=5)) == ("j", b"7", 7, None)  # the DEL of j was skipped
    await full.stop()
    await quiet.stop()


# --- status / purge_deletes / ttl --------------------------------------------------------------------------------


async def test_status(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="st", history=4, ttl=60, description="settings")
    status = await kv.status()
    assert (status.bucket, status.values, status.history, status.ttl) == ("st", 0, 4, 60.0)
    config = status.stream_info.config
    assert config.name == "KV_st"
    assert config.subjects == ["$KV.st.>"]
    assert config.description == "settings"
    assert (config.max_msgs_per_subject, config.allow_rollup_hdrs, config.deny_delete) == (4, True, True)
    assert config.duplicate_window == 60.0  # min(2 min, ttl)

    for i in range(6):
        await kv.put("k", b"%d" % i)
    await kv.put("j", b"j")
    assert (await kv.status()).values == 5  # 4 revisions of k, 1 of j

    plain = await (await js.create_key_value(bucket="st2")).status()
    assert (plain.values, plain.history, plain.ttl) == (0, 1, 0.0)


async def test_purge_deletes(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="pd", history=5)
    await kv.put("a", b"a1")
    await kv.put("a", b"a2")
    await kv.delete("a")  # 3
    await kv.put("b", b"b1")
    await kv.purge("b")  # 5: rolls up b
    await kv.put("c", b"c1")  # 6
    assert (await kv.status()).values == 5

    # default olderthan (30 min): recent markers stay, the revisions before them go. nats-py finds the markers
    # with a watcher that can stop before the last one arrives (seen against nats-server too): ask again then.
    async def purged() -> bool:
        assert await kv.purge_deletes() is True
        return (await kv.status()).values == 3

    await wait_for(purged, timeout=10, interval=0.2)
    assert [summary(e) for e in await kv.history("a")] == [("a", b"", 3, "DEL")]
    assert [summary(e) for e in await kv.history("b")] == [("b", b"", 5, "PURGE")]

    # olderthan=0: the markers go too
    async def markers_purged() -> bool:
        assert await kv.purge_deletes(olderthan=0) is True
        return (await kv.status()).values == 1

    await wait_for(markers_purged, timeout=10, interval=0.2)
    with pytest.raises(NoKeysError):
        await kv.history("a")
    with pytest.raises(NoKeysError):
        await kv.history("b")

    async def only_c_left() -> bool:
        with contextlib.suppress(NoKeysError):  # the same early stop, seen as "no keys"
            return await kv.keys() == ["c"]
        return False

    await wait_for(only_c_left, timeout=10, interval=0.2)
    assert (await kv.get("c")).value == b"c1"


async def test_bucket_ttl_expires_entries(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="ttl", ttl=1)
    status = await kv.status()
    assert (status.ttl, status.stream_info.config.duplicate_window) == (1.0, 1.0)
    await kv.put("k", b"short-lived")
    await kv.put("j", b"short-lived too")
    assert (await kv.get("k")).value == b"short-lived"

    await wait_for(lambda: not_found(kv, "k"), timeout=10)
    await wait_for(lambda: not_found(kv, "j"), timeout=10)

    async def empty() -> bool:
        return (await kv.status()).values == 0

    await wait_for(empty, timeout=10)
    with pytest.raises(NoKeysError):
        await kv.keys()
    # the bucket still works after expiry; a new value gets the next revision
    assert await kv.put("k", b"again") == 3
    assert (await kv.get("k")).value == b"again"


async def test_per_key_ttl_on_create_and_purge(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="mttl", history=3)
    assert await kv.create("k", b"short", msg_ttl=1) == 1
    await kv.put("stay", b"forever")
    assert (await kv.get("k")).value == b"short"
    await wait_for(lambda: not_found(kv, "k"), timeout=10)
    assert (await kv.get("stay")).value == b"forever"
    assert await kv.create("k", b"back") == 3  # the key is free again

    await kv.purge("k", msg_ttl=1)  # 4: the marker itself expires
    try:  # on a loaded machine more than the marker's 1 s may pass before this look: then it is gone already
        assert [summary(e) for e in await kv.history("k")] == [("k", b"", 4, "PURGE")]
    except NoKeysError:
        assert (await js.stream_info("KV_mttl")).state.last_seq == 4  # the marker was stored, then expired

    async def marker_gone() -> bool:
        # A history() whose consumer counted the marker just before it expired waits for a message that is gone
        # (nats-py has no timeout there): such a look is abandoned and the next one asked.
        try:
            async with asyncio.timeout(3):
                await kv.history("k")
        except NoKeysError:
            return True
        except TimeoutError:
            pass
        return False

    await wait_for(marker_gone, timeout=20)
    assert await kv.keys() == ["stay"]


async def test_limit_marker_ttl_reports_expiry_to_watchers(js: JetStreamContext) -> None:
    """With limit_marker_ttl the server leaves a marker (Nats-Marker-Reason: MaxAge) when the bucket TTL removes a
    key's last value; nats-py turns it into a PURGE entry for watchers."""
    kv = await js.create_key_value(bucket="lm", ttl=1, limit_marker_ttl=1)
    config = (await kv.status()).stream_info.config
    assert (config.subject_delete_marker_ttl, config.allow_msg_ttl) == (1.0, True)
    watcher = await kv.watchall()
    assert await watcher.updates(timeout=5) is None
    await kv.put("k", b"v")
    assert summary(await watcher.updates(timeout=5)) == ("k", b"v", 1, None)
    expired = await watcher.updates(timeout=10)
    assert (expired.key, expired.revision, expired.operation) == ("k", 2, "PURGE")
    marker = await js.get_last_msg("KV_lm", "$KV.lm.k")
    assert marker.seq == 2 and marker.headers is not None
    assert (marker.headers.get("Nats-Marker-Reason"), marker.headers.get("Nats-TTL")) == ("MaxAge", "1s")
    assert not marker.data
    # nats-py's get() only looks at KV-Operation, so it returns the marker as an empty value (not KeyNotFoundError)

    async def marker_expired() -> bool:  # the marker lives limit_marker_ttl, then the bucket is empty
        return (await kv.status()).values == 0

    await wait_for(marker_expired, timeout=10)
    await watcher.stop()


async def test_max_value_size(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="mv", max_value_size=8)
    assert await kv.put("k", b"12345678") == 1
    with pytest.raises(BadRequestError) as too_big:
        await kv.put("k", b"123456789")
    assert too_big.value.err_code == 10054
    assert (await kv.get("k")).value == b"12345678"


@pytest.mark.parametrize("storage", [StorageType.FILE, StorageType.MEMORY])
async def test_create_key_value_is_idempotent_and_refuses_a_different_config(
    js: JetStreamContext, storage: StorageType
) -> None:
    kv = await js.create_key_value(bucket="same", history=3, storage=storage)
    await kv.put("k", b"v")
    again = await js.create_key_value(bucket="same", history=3, storage=storage)
    assert (await again.get("k")).value == b"v"
    assert (await again.status()).stream_info.config.storage == storage
    with pytest.raises(BadRequestError) as different:
        await js.create_key_value(bucket="same", history=4, storage=storage)
    assert different.value.err_code == 10058


# --- buckets -----------------------------------------------------------------------------------------------------


async def test_key_value_binds_to_an_existing_bucket(js: JetStreamContext) -> None:
    created = await js.create_key_value(bucket="bind", history=2)
    await created.put("k", b"v")
    bound = await js.key_value("bind")
    assert (await bound.get("k")).value == b"v"
    assert await bound.put("k", b"w") == 2
    assert (await created.get("k")).value == b"w"
    assert (await bound.status()).history == 2


async def test_key_value_on_a_missing_bucket(js: JetStreamContext) -> None:
    with pytest.raises(BucketNotFoundError):
        await js.key_value("nope")


async def test_delete_bucket(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="gone")
    await kv.put("k", b"v")
    assert await js.delete_key_value("gone") is True
    with pytest.raises(BucketNotFoundError):
        await js.key_value("gone")
    with pytest.raises(KeyNotFoundError):
        await kv.get("k")
    again = await js.create_key_value(bucket="gone")  # the name can be reused, empty
    with pytest.raises(KeyNotFoundError):
        await again.get("k")
    assert await again.put("k", b"new") == 1


# --- concurrency -------------------------------------------------------------------------------------------------


async def test_concurrent_updates_with_the_same_revision_exactly_one_wins(js: JetStreamContext) -> None:
    kv = await js.create_key_value(bucket="cc", history=10)
    base = await kv.put("k", b"base")
    results = await asyncio.gather(
        *(kv.update("k", b"writer-%d" % i, last=base) for i in range(10)), return_exceptions=True
    )
    winners = [(i, r) for i, r in enumerate(results) if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert len(losers) == 9 and all(isinstance(r, KeyWrongLastSequenceError) for r in losers), results
    [(index, revision)] = winners
    assert revision == base + 1
    latest = await kv.get("k")
    assert (latest.value, latest.revision) == (b"writer-%d" % index, revision)
    assert [e.value for e in await kv.history("k")] == [b"base", b"writer-%d" % index]

    created = await asyncio.gather(*(kv.create("new", b"c-%d" % i) for i in range(10)), return_exceptions=True)
    made = [r for r in created if isinstance(r, int)]
    assert made == [revision + 1], created
    assert all(isinstance(r, KeyWrongLastSequenceError) for r in created if not isinstance(r, int)), created


async def test_watcher_recreates_its_consumer_when_it_vanishes(js: JetStreamContext) -> None:
    """Deleting the ordered consumer behind a watcher stops its heartbeats; nats-py notices two missed heartbeats
    (5 s each, checked every 10 s), re-creates the consumer from the next stream sequence and the watcher goes on."""
    kv = await js.create_key_value(bucket="rc", history=3)
    await kv.put("a", b"1")
    watcher = await kv.watchall()
    assert [summary(e) for e in await initial_values(watcher)] == [("a", b"1", 1, None)]
    first = watcher._sub._consumer
    assert await js.delete_consumer("KV_rc", first) is True
    await kv.put("b", b"while gone")  # not delivered to anyone: the consumer is gone

    assert summary(await watcher.updates(timeout=45)) == ("b", b"while gone", 2, None)
    # nats-py records the new consumer's name when the create reply arrives, which may be after its first message
    await wait_for(lambda: watcher._sub._consumer != first)
    await kv.put("a", b"3")
    assert summary(await watcher.updates(timeout=5)) == ("a", b"3", 3, None)
    info = await js.consumer_info("KV_rc", watcher._sub._consumer)
    assert (info.config.deliver_policy, info.config.opt_start_seq) == (DeliverPolicy.BY_START_SEQUENCE, 2)
    await watcher.stop()


# --- streamd only ------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[tuple[Client, list[Exception]]]:
    """A connection and the errors nats-py reported through error_cb (e.g. failed consumer re-creations)."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(url, error_cb=on_error)
    try:
        yield nc, errors
    finally:
        await nc.close()


async def test_watcher_survives_a_streamd_restart(nats_server: NatsServer, start_service: StartService) -> None:
    """A watcher keeps working across a quick streamd restart on the same data directory. (streamd keeps the
    watcher's consumer, so the same consumer simply goes on; with JetStream nats-py would re-create it.)"""
    service = await start_service()
    async with client(nats_server.url) as (nc, _):
        js = nc.jetstream(timeout=5)
        kv = await js.create_key_value(bucket="rs", history=3)
        await kv.put("a", b"1")
        watcher = await kv.watchall()
        assert [summary(e) for e in await initial_values(watcher)] == [("a", b"1", 1, None)]
        await kv.put("a", b"2")
        assert summary(await watcher.updates(timeout=5)) == ("a", b"2", 2, None)

        await service.stop()
        await start_service()  # same data directory
        assert (await kv.get("a")).value == b"2"

        assert await kv.put("b", b"after restart") == 3
        # at worst two missed 5 s heartbeats (checked every 10 s) before nats-py re-creates the consumer
        assert summary(await watcher.updates(timeout=45)) == ("b", b"after restart", 3, None)
        await kv.delete("a")
        assert summary(await watcher.updates(timeout=10)) == ("a", b"", 4, "DEL")
        await watcher.stop()


async def test_watcher_survives_a_streamd_outage_longer_than_its_heartbeats(
    nats_server: NatsServer, start_service: StartService
) -> None:
    """streamd stays down until nats-py has noticed the missed heartbeats and failed to re-create the watcher's
    ordered consumer; after streamd is back, the next attempt succeeds and the same watcher sees new updates."""
    service = await start_service()
    async with client(nats_server.url) as (nc, errors):
        js = nc.jetstream(timeout=2)
        kv = await js.create_key_value(bucket="ro", history=3)
        await kv.put("a", b"1")
        watcher = await kv.watchall()
        assert [summary(e) for e in await initial_values(watcher)] == [("a", b"1", 1, None)]

        await service.stop()
        await wait_for(lambda: errors, timeout=45)  # a re-creation attempt failed while streamd was down
        await start_service()

        await kv.put("b", b"after outage")
        assert summary(await watcher.updates(timeout=45)) == ("b", b"after outage", 2, None)
        # Either nats-py's next attempt re-created the consumer, or the restarted streamd (which keeps ephemeral
        # consumers, as a file-backed JetStream does) resumed the old one before that attempt: both are right.
        await kv.put("a", b"3")
        assert summary(await watcher.updates(timeout=10)) == ("a", b"3", 3, None)
        await watcher.stop()
