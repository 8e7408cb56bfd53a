"""The JavaScript client, unmodified: nats.js (`@nats-io/transport-node` + `@nats-io/jetstream`) drives streamd.

Each scenario is a node script in tests/js/ run as `node SCRIPT URL`; it prints one JSON object on stdout (its
results, or `{error, step, partial}` naming the nats.js call that failed or hung) and the test asserts on it.
Every scenario runs against a real `nats-server -js` too, which proves the expectations are JetStream's.

The npm packages are installed once per session into tests/js/node_modules (`npm install`, from the committed
package-lock.json) when missing. The module is skipped only when `node` or `npm` is not on PATH; a failing
install fails the tests with npm's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.differential import backend, js, nc, server_url  # noqa: F401
from tests.helpers import wait_for

JS_DIR = Path(__file__).resolve().parent.parent / "js"
REQUIRED_PACKAGES = ("@nats-io/transport-node", "@nats-io/jetstream")
NPM_INSTALL_TIMEOUT = 300.0
SCRIPT_TIMEOUT = 40.0  # the scripts' own watchdog fires at 25 s and reports the step that hung


def _installed() -> bool:
    return all((JS_DIR / "node_modules" / pkg / "package.json").is_file() for pkg in REQUIRED_PACKAGES)


@pytest.fixture(scope="session")
def node() -> str:
    """Path of `node`, with the nats.js packages installed in tests/js/node_modules (once per session)."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        missing = " and ".join(name for name, path in (("node", node_bin), ("npm", npm_bin)) if path is None)
        pytest.skip(f"nats.js tests need Node.js: {missing} not found on PATH")
    # an exclusive lock on package.json serialises concurrent pytest processes installing into the same tree
    with (JS_DIR / "package.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
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
                pytest.fail(
                    f"npm install in {JS_DIR} timed out after {NPM_INSTALL_TIMEOUT}s:\n{exc.output}\n{exc.stderr}",
                    pytrace=False,
                )
            if proc.returncode != 0 or not _installed():
                pytest.fail(
                    f"npm install in {JS_DIR} failed (exit {proc.returncode}):\n"
                    f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                    pytrace=False,
                )
    return node_bin


async def run_js(node: str, script: str, url: str) -> dict[str, Any]:
    """Run tests/js/SCRIPT against URL and return its JSON result; fail with its output if it did not succeed."""
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        url,
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(SCRIPT_TIMEOUT):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        stdout, stderr = await proc.communicate()
        pytest.fail(
            f"node {script} did not finish in {SCRIPT_TIMEOUT}s\nstdout: {stdout.decode()}\nstderr: {stderr.decode()}"
        )
    out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    lines = out.strip().splitlines()
    result: dict[str, Any] | None = None
    if lines:
        with contextlib.suppress(ValueError):
            result = json.loads(lines[-1])
    if proc.returncode != 0 or result is None or "error" in result:
        detail = json.dumps(result, indent=1) if result is not None else out
        pytest.fail(f"node {script} exited {proc.returncode}:\n{detail}\n--- stderr ---\n{err}", pytrace=False)
    return result


async def wait_acked(js: JetStreamContext, stream: str, consumer: str, floor: int) -> None:
    async def acked() -> bool:
        info = await js.consumer_info(stream, consumer)
        return info.ack_floor.stream_seq == floor and info.num_ack_pending == 0

    await wait_for(acked)


async def test_jsm_add_stream_publish_and_info(node: str, server_url: str) -> None:
    r = await run_js(node, "publish.mjs", server_url)
    assert r["created"] == {"name": "JSPUB", "subjects": ["jspub.>"], "messages": 0}
    assert r["acks"] == [{"stream": "JSPUB", "seq": i, "duplicate": False} for i in range(1, 11)]
    assert r["state"] == {"messages": 10, "first_seq": 1, "last_seq": 10, "num_subjects": 3}
    assert r["names"] == ["JSPUB"]


async def test_fetch_and_ack_durable(node: str, server_url: str, js: JetStreamContext) -> None:
    r = await run_js(node, "fetch.mjs", server_url)
    assert r["added"] == {"name": "dur", "ack_policy": "explicit", "num_pending": 8}
    assert [(m["subject"], m["data"]) for m in r["msgs"]] == [(f"jsfetch.{i}", f"m{i}") for i in range(5)]
    assert [m["streamSequence"] for m in r["msgs"]] == [1, 2, 3, 4, 5]
    assert [m["deliverySequence"] for m in r["msgs"]] == [1, 2, 3, 4, 5]
    assert [m["pending"] for m in r["msgs"]] == [7, 6, 5, 4, 3]
    assert {
        (m["stream"], m["consumer"], m["deliveryCount"], m["redelivered"], m["msgRedelivered"]) for m in r["msgs"]
    } == {("JSFETCH", "dur", 1, False, False)}
    assert r["fetchMs"] < 1500, "fetch of 5 available messages should not wait for its 2 s expiry"
    await wait_acked(js, "JSFETCH", "dur", 5)
    info = await js.consumer_info("JSFETCH", "dur")
    assert (info.delivered.stream_seq, info.num_pending) == (5, 3)


async def test_consume_500_in_order_exactly_once(node: str, server_url: str, js: JetStreamContext) -> None:
    r = await run_js(node, "consume.mjs", server_url)
    assert r["seqs"] == list(range(1, 501))
    assert r["badData"] == [] and r["redelivered"] == 0
    assert r["closedWith"] is None
    assert r["status"] == []
    await wait_acked(js, "JSCONSUME", "worker", 500)


async def test_nak_redelivers_and_nak_delay(node: str, server_url: str, js: JetStreamContext) -> None:
    r = await run_js(node, "nak.mjs", server_url)
    first = {"subject": "jsnak.a", "data": "first", "streamSequence": 1}
    assert {k: r["first"][k] for k in first} == first
    assert (r["first"]["deliveryCount"], r["first"]["redelivered"]) == (1, False)
    assert r["afterNak"] is not None, "a nak()ed message must be redelivered"
    assert {k: r["afterNak"][k] for k in first} == first
    assert (r["afterNak"]["deliveryCount"], r["afterNak"]["redelivered"], r["afterNak"]["msgRedelivered"]) == (
        2,
        True,
        True,
    )
    second = {"subject": "jsnak.b", "data": "second", "streamSequence": 2}
    assert {k: r["second"][k] for k in second} == second
    assert r["second"]["deliveryCount"] == 1
    assert r["afterDelayedNak"] is not None, "a nak(500)ed message must be redelivered after the delay"
    assert {k: r["afterDelayedNak"][k] for k in second} == second
    assert (r["afterDelayedNak"]["deliveryCount"], r["afterDelayedNak"]["redelivered"]) == (2, True)
    assert r["afterDelayedNakMs"] >= 480, "nak(500) redelivered before its delay"
    assert r["afterDelayedNakMs"] < 3000
    await wait_acked(js, "JSNAK", "nk", 2)


async def test_ordered_consumer_consume_and_fetch(node: str, server_url: str) -> None:
    r = await run_js(node, "ordered.mjs", server_url)
    consumed = r["consumed"]
    assert [m["streamSequence"] for m in consumed] == list(range(1, 51))
    assert [m["deliverySequence"] for m in consumed] == list(range(1, 51))
    assert [(m["subject"], m["data"]) for m in consumed] == [(f"jsordered.{i % 5}", f"m{i}") for i in range(50)]
    assert [m["pending"] for m in consumed] == list(range(49, -1, -1))
    assert {(m["stream"], m["deliveryCount"], m["redelivered"]) for m in consumed} == {("JSORDERED", 1, False)}
    assert r["consumeStatus"] == []
    [name] = {m["consumer"] for m in consumed}
    assert name.endswith("_1"), "the ordered consumer was never reset, so it is its first incarnation"
    fetched = r["fetched"]
    assert [m["streamSequence"] for m in fetched] == list(range(2, 51, 5))
    assert [m["deliverySequence"] for m in fetched] == list(range(1, 11))
    assert {m["subject"] for m in fetched} == {"jsordered.1"}
    [fetch_name] = {m["consumer"] for m in fetched}
    assert fetch_name.endswith("_1") and fetch_name != name


async def test_next_returns_null_on_expiry_then_messages(node: str, server_url: str, js: JetStreamContext) -> None:
    r = await run_js(node, "next.mjs", server_url)
    assert r["empty"] is None
    assert 900 <= r["emptyMs"] < 3000, "next() on an empty consumer should resolve null at its 1 s expiry"
    assert r["afterPublish"] is not None
    assert (r["afterPublish"]["subject"], r["afterPublish"]["data"], r["afterPublish"]["streamSequence"]) == (
        "jsnext.one",
        "one",
        1,
    )
    assert r["waiting"] is not None
    assert (r["waiting"]["subject"], r["waiting"]["data"], r["waiting"]["streamSequence"]) == ("jsnext.two", "two", 2)
    assert r["waitingMs"] < 2500, "a waiting next() should be woken by the publish, not by its expiry"
    await wait_acked(js, "JSNEXT", "nx", 2)
