"""Object store through stock nats-py (`js.create_object_store()` / `object_store()` / `delete_object_store()`).

nats-py keeps a bucket in stream OBJ_<bucket> (subjects `$O.<bucket>.C.>` for chunks, `$O.<bucket>.M.>` for the
meta records, allow_direct, allow_rollup_hdrs, discard new): `put` publishes the chunks on `$O.<b>.C.<nuid>` and a
meta record with `Nats-Rollup: sub`; `get_info` is a last-by-subject get; `get` reads the chunks with an ordered push
consumer (found by subject through STREAM.NAMES) until the `pending` ack token is 0; `list`/`watch` are ordered
consumers on the meta subjects with last_per_subject; `delete` writes a deleted meta record and purges the chunks.

Every test runs against the real JetStream (proving the expectation) and against streamd (tests/kv/conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, ObjectMeta, ObjectMetaOptions, StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
)
from nats.js.object_store import ObjectStore


def digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


async def names(obs: ObjectStore, **kwargs: bool) -> list[str]:
    return sorted(str(info.name) for info in await obs.list(**kwargs))


async def test_create_object_store_and_status(js: JetStreamContext) -> None:
    obs = await js.create_object_store("files", description="some files", ttl=3600)
    status = await obs.status()
    assert status.bucket == "files"
    assert (status.description, status.ttl, status.storage_type, status.replicas, status.sealed) == (
        "some files",
        3600.0,
        StorageType.FILE,
        1,
        False,
    )
    assert status.size == 0
    config = status.stream_info.config
    assert config.name == "OBJ_files"
    assert config.subjects == ["$O.files.C.>", "$O.files.M.>"]
    assert (config.allow_direct, config.allow_rollup_hdrs, config.max_consumers) == (True, True, -1)
    bound = await js.object_store("files")
    assert (await bound.status()).bucket == "files"


async def test_put_get_small_object(js: JetStreamContext) -> None:
    obs = await js.create_object_store("small")
    info = await obs.put("hello.txt", b"hello world")
    assert (info.name, info.bucket, info.size, info.chunks, info.digest) == (
        "hello.txt",
        "small",
        11,
        1,
        digest(b"hello world"),
    )
    result = await obs.get("hello.txt")
    assert result.data == b"hello world"
    assert (result.info.name, result.info.size, result.info.chunks, result.info.nuid) == (
        "hello.txt",
        11,
        1,
        info.nuid,
    )
    stored = await obs.get_info("hello.txt")
    assert (stored.size, stored.digest, stored.deleted) == (11, digest(b"hello world"), False)
    assert (await obs.status()).size > 11

    text = await obs.put("greeting", "grüße")  # str is encoded as UTF-8
    assert text.size == len("grüße".encode())
    assert (await obs.get("greeting")).data == "grüße".encode()


async def test_put_get_multi_chunk_objects(js: JetStreamContext) -> None:
    obs = await js.create_object_store("big")
    data = os.urandom(300 * 1024 + 17)  # default 128 KiB chunks: 3
    info = await obs.put("blob.bin", data)
    assert (info.size, info.chunks, info.digest) == (len(data), 3, digest(data))
    assert (await obs.get("blob.bin")).data == data

    small_chunks = os.urandom(10_500)
    meta = ObjectMeta(name="chunky", options=ObjectMetaOptions(max_chunk_size=1000))
    info = await obs.put("chunky", small_chunks, meta=meta)
    assert (info.size, info.chunks) == (10_500, 11)
    assert (await obs.get("chunky")).data == small_chunks

    sink = io.BytesIO()
    await obs.get("chunky", writeinto=sink)
    assert sink.getvalue() == small_chunks

    from_reader = await obs.put("from-reader", io.BytesIO(data))
    assert from_reader.digest == digest(data)
    assert (await obs.get("from-reader")).data == data


async def test_empty_object(js: JetStreamContext) -> None:
    obs = await js.create_object_store("empty")
    info = await obs.put("nothing", b"")
    assert (info.size, info.chunks, info.digest) == (0, 0, digest(b""))
    result = await obs.get("nothing")
    assert (result.data, result.info.size) == (b"", 0)


async def test_overwrite_replaces_data_and_purges_old_chunks(js: JetStreamContext) -> None:
    obs = await js.create_object_store("over")
    first = await obs.put("doc", os.urandom(200_000))
    size_after_first = (await obs.status()).size
    second_data = b"short now"
    second = await obs.put("doc", second_data)
    assert second.nuid != first.nuid
    assert (await obs.get("doc")).data == second_data
    assert (await obs.get_info("doc")).nuid == second.nuid
    assert (await obs.status()).size < size_after_first  # the 200 kB of old chunks are gone
    state = (await obs.status()).stream_info.state
    assert state.messages == 2  # one chunk, one meta record (rolled up)


async def test_list_and_watch(js: JetStreamContext) -> None:
    obs = await js.create_object_store("lst")
    with pytest.raises(NotFoundError):
        await obs.list()
    watcher = await obs.watch()
    assert await watcher.updates(timeout=5) is None

    await obs.put("a", b"1")
    await obs.put("b", b"22")
    await obs.put("a", b"333")  # a meta record per put; list shows the latest per name
    assert await names(obs) == ["a", "b"]
    listed = {info.name: info.size for info in await obs.list()}
    assert listed == {"a": 3, "b": 2}

    seen = [await watcher.updates(timeout=5) for _ in range(3)]
    assert [(i.name, i.size) for i in seen] == [("a", 1), ("b", 2), ("a", 3)]
    await watcher.stop()

    later = await obs.watch()
    initial = []
    while (info := await later.updates(timeout=5)) is not None:
        initial.append((info.name, info.size))
    assert initial == [("b", 2), ("a", 3)]
    await obs.put("c", b"4444")
    update = await later.updates(timeout=5)
    assert (update.name, update.size) == ("c", 4)
    await later.stop()


async def test_delete_object(js: JetStreamContext) -> None:
    obs = await js.create_object_store("del")
    await obs.put("gone", os.urandom(150_000))
    await obs.put("kept", b"k")
    await obs.delete("gone")

    with pytest.raises(ObjectNotFoundError):
        await obs.get("gone")
    with pytest.raises(ObjectNotFoundError):
        await obs.get_info("gone")
    tomb = await obs.get_info("gone", show_deleted=True)
    assert (tomb.deleted, tomb.size, tomb.chunks) == (True, 0, 0)
    assert await names(obs) == ["gone", "kept"]
    assert await names(obs, ignore_deletes=True) == ["kept"]
    assert (await obs.get("kept")).data == b"k"
    state = (await obs.status()).stream_info.state
    assert state.messages == 3  # kept: chunk + meta; gone: meta (tombstone) only

    again = await obs.put("gone", b"back")  # a deleted name can be reused
    assert not again.deleted
    assert (await obs.get("gone")).data == b"back"


async def test_update_meta_description(js: JetStreamContext) -> None:
    obs = await js.create_object_store("meta")
    await obs.put("doc", b"content")
    await obs.update_meta("doc", ObjectMeta(name="doc", description="a document"))
    info = await obs.get_info("doc")
    assert (info.description, info.size) == ("a document", 7)
    assert (await obs.get("doc")).data == b"content"


async def test_seal(js: JetStreamContext) -> None:
    obs = await js.create_object_store("sealed", ttl=60)
    await obs.put("doc", b"content")
    await obs.seal()  # STREAM.UPDATE of the bucket's config with sealed: true (allow_rollup_hdrs still true)
    status = await obs.status()
    assert status.sealed is True
    config = status.stream_info.config
    # the server makes a sealed stream read-only in its config: no roll-ups, no purge/delete, no expiry
    assert (config.deny_delete, config.deny_purge, config.allow_rollup_hdrs, config.max_age, config.discard) == (
        True,
        True,
        False,
        0.0,
        DiscardPolicy.NEW,
    )
    assert (await obs.get("doc")).data == b"content"
    with pytest.raises(BadRequestError) as refused:
        await obs.put("other", b"x")
    assert refused.value.err_code == 10109


async def test_delete_object_store_and_missing_bucket(js: JetStreamContext) -> None:
    with pytest.raises(BucketNotFoundError):
        await js.object_store("missing")
    obs = await js.create_object_store("tmp")
    await obs.put("x", b"y")
    assert await js.delete_object_store("tmp") is True
    with pytest.raises(BucketNotFoundError):
        await js.object_store("tmp")
