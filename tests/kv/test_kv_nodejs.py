"""Key/value buckets through the unmodified nats.js KV client (`@nats-io/kv`): tests/js/kv.mjs.

Like tests/consumers/test_nodejs.py (whose `node` fixture and `run_js` runner this module reuses), the scenario
prints one JSON object and the assertions run against both backends of tests/kv/conftest.py: the real JetStream
(nats-server -js, which proves the expectations) and streamd on a core nats-server.

The `node` fixture installs tests/js/node_modules only when its own packages are missing, so a tree installed before
`@nats-io/kv` was added to tests/js/package.json would lack it: `kv_node` runs `npm install` once more in that case.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from typing import Any

import pytest

from tests.consumers.test_nodejs import JS_DIR, NPM_INSTALL_TIMEOUT, run_js
from tests.consumers.test_nodejs import node as node  # the fixture, made visible to this module's `kv_node`

KV_PACKAGE = JS_DIR / "node_modules" / "@nats-io" / "kv" / "package.json"


@pytest.fixture(scope="session")
def kv_node(node: str) -> str:
    """Path of `node`, with `@nats-io/kv` installed in tests/js/node_modules as well."""
    if KV_PACKAGE.is_file():
        return node
    npm_bin = shutil.which("npm")
    assert npm_bin is not None, "the node fixture checked that npm is on PATH"
    with (JS_DIR / "package.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not KV_PACKAGE.is_file():
            try:
                proc = subprocess.run(
                    [npm_bin, "install", "--no-audit", "--no-fund"],
                    cwd=JS_DIR,
                    capture_output=True,
                    text=True,
                    timeout=NPM_INSTALL_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                output = [
                    x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in (exc.output, exc.stderr)
                ]
                pytest.fail(
                    f"npm install in {JS_DIR} timed out after {NPM_INSTALL_TIMEOUT}s:\n{output[0]}\n{output[1]}",
                    pytrace=False,
                )
            if proc.returncode != 0 or not KV_PACKAGE.is_file():
                pytest.fail(
                    f"npm install of @nats-io/kv in {JS_DIR} failed (exit {proc.returncode}):\n"
                    f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                    pytrace=False,
                )
    return node


def entry(key: str, value: str, revision: int, operation: str = "PUT", **extra: Any) -> dict[str, Any]:
    return {
        "bucket": "b",
        "key": key,
        "value": value,
        "revision": revision,
        "operation": operation,
        "length": len(value),
        **extra,
    }


def wrong_last_sequence(seq: int) -> dict[str, Any]:
    """The JetStreamApiError nats.js raises for a publish whose expected last subject sequence is not `seq`."""
    description = f"wrong last sequence: {seq}"
    return {
        "ok": False,
        "error": {
            "name": "JetStreamApiError",
            "message": description,
            "code": 10071,
            "api_error": {"code": 400, "err_code": 10071, "description": description},
        },
    }


async def test_nodejs_kv_bucket(kv_node: str, server_url: str) -> None:
    r = await run_js(kv_node, "kv.mjs", server_url)

    # put / get
    assert (r["putA"], r["putC"]) == (1, 2)
    assert r["getA"] == entry("a", "1", 1)

    # create() of a key that exists fails; of a new key it succeeds
    assert r["createExisting"] == wrong_last_sequence(1)
    assert r["createN"] == 3

    # update() with the current revision succeeds, with a stale one fails
    assert r["updateA"] == 4
    assert r["updateStale"] == wrong_last_sequence(4)
    assert r["getAUpdated"] == entry("a", "2", 4)
    assert r["getARev1"] == entry("a", "1", 1)

    # delete() writes a DEL marker, which get() returns; an absent key is null
    assert r["getDeleted"] == entry("n", "", 5, "DEL")
    assert r["getMissing"] is None

    # keys() skips deleted keys; create() over a delete marker succeeds
    assert r["keys"] == ["a", "c"]
    assert r["recreateN"] == 6
    assert r["keysAfter"] == ["a", "c", "n"]

    # history()
    assert r["historyA"] == [entry("a", "1", 1, isUpdate=False), entry("a", "2", 4, isUpdate=False)]
    assert r["historyAll"] == [
        entry("a", "1", 1, isUpdate=False),
        entry("c", "x", 2, isUpdate=False),
        entry("n", "new", 3, isUpdate=False),
        entry("a", "2", 4, isUpdate=False),
        entry("n", "", 5, "DEL", isUpdate=False),
        entry("n", "again", 6, isUpdate=False),
    ]

    # watch(): the last value of each key in revision order (nats.js flags the last of them as an update),
    # then the later put
    initial = [
        entry("c", "x", 2, isUpdate=False),
        entry("a", "2", 4, isUpdate=False),
        entry("n", "again", 6, isUpdate=True),
    ]
    assert r["watchInitial"] == initial
    assert r["putWatched"] == 7
    assert r["watchTimedOut"] is False, "the watcher did not see the put made after it started"
    assert r["watchAll"] == [*initial, entry("a", "watched", 7, isUpdate=True)]

    # status()
    status = r["status"]
    assert status.pop("size") > 0
    assert status == {
        "bucket": "b",
        "values": 7,
        "history": 5,
        "ttl": 0,
        "storage": "file",
        "replicas": 1,
        "max_bytes": -1,
        "maxValueSize": -1,
        "stream": "KV_b",
        "subjects": ["$KV.b.>"],
        "allow_direct": True,
        "allow_rollup_hdrs": True,
        "deny_delete": False,
        "discard": "new",
        "max_msgs_per_subject": 5,
        "messages": 7,
        "last_seq": 7,
    }
