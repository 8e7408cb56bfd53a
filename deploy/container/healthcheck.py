#!/usr/bin/env python3
"""streamd health check for containers and Kubernetes probes: ask $JS.API.INFO and read streamd's health block.

Exit 0 when streamd answers and reports itself healthy, 1 otherwise, with one line on stdout either way.
  (no argument)  ready: the client and leaf connections are up and the store is writable
  --live         alive: streamd answers at all (for liveness probes; a down leaf or a full disk is not fixed by a
                 restart)

Settings as `streamd` reads them: STREAMD_SERVER (default nats://127.0.0.1:4222, the embedded server), STREAMD_DOMAIN,
STREAMD_USER / STREAMD_PASSWORD, STREAMD_TOKEN, STREAMD_CREDS, STREAMD_NKEY_SEED, or those keys in the TOML file named
by STREAMD_CONFIG (variables win). Needs only nats-py, which streamd installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tomllib
from typing import Any

KEYS = ("server", "domain", "user", "password", "token", "creds", "nkey_seed")
TIMEOUT = 2.0  # seconds, for the connection and for the request each


def settings(env: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    if env.get("STREAMD_CONFIG"):
        with open(env["STREAMD_CONFIG"], "rb") as f:
            table = tomllib.load(f)
        values = {k: str(table[k.replace("_", "-")]) for k in KEYS if table.get(k.replace("_", "-"))}
    values.update({k: env[f"STREAMD_{k.upper()}"] for k in KEYS if env.get(f"STREAMD_{k.upper()}")})
    values.setdefault("server", "nats://127.0.0.1:4222")
    return values


async def ask_info(cfg: dict[str, str]) -> dict[str, Any]:
    import nats  # imported here so that --help and settings errors need no nats-py

    # nats-py retries a failed first connection forever even without reconnects: its first error is the answer
    failed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    async def first_error(exc: Exception) -> None:
        if not failed.done():
            failed.set_result(exc)

    auth: dict[str, Any] = {"user": cfg.get("user"), "password": cfg.get("password"), "token": cfg.get("token")}
    if cfg.get("creds"):
        auth["user_credentials"] = cfg["creds"]
    if cfg.get("nkey_seed"):
        auth["nkeys_seed"] = cfg["nkey_seed"]
    connecting = asyncio.ensure_future(
        nats.connect(
            cfg["server"],
            name="streamd-healthcheck",
            connect_timeout=TIMEOUT,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=first_error,
            **{k: v for k, v in auth.items() if v},
        )
    )
    waiting: set[asyncio.Future[Any]] = {connecting, failed}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        raise failed.result()
    nc = connecting.result()
    try:
        prefix = f"$JS.{cfg['domain']}.API" if cfg.get("domain") else "$JS.API"
        reply = await nc.request(f"{prefix}.INFO", b"", timeout=TIMEOUT)
        info: dict[str, Any] = json.loads(reply.data)
        return info
    finally:
        await nc.close()


def verdict(info: dict[str, Any], live_only: bool) -> tuple[bool, str]:
    if "error" in info:
        return False, f"$JS.API.INFO answered an error: {info['error']}"
    block = info.get("streamd")
    if not isinstance(block, dict) or not isinstance(block.get("health"), dict):
        return False, "$JS.API.INFO is answered, but not by streamd (a JetStream server?)"
    health: dict[str, Any] = block["health"]
    if live_only:
        return True, "streamd answers"
    problems = [
        text
        for key, text in (
            ("connected", "client connection down"),
            ("leaf_connected", "leaf connection down (consumer deliveries wait)"),
            ("store_writable", "store not writable"),
        )
        if not health.get(key)
    ]
    if problems:
        detail = f"; last error: {health['last_error']}" if health.get("last_error") else ""
        return False, "streamd unhealthy: " + ", ".join(problems) + detail
    return True, "streamd healthy: connected, leaf up, store writable"


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(__doc__ or "")
        return 0
    live_only = "--live" in argv
    try:
        cfg = settings(dict(os.environ))
        info = asyncio.run(asyncio.wait_for(ask_info(cfg), 3 * TIMEOUT))
    except Exception as exc:  # any failure to get an answer is "unhealthy", said in one line
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        sys.stdout.write(f"streamd unhealthy: no $JS.API.INFO answer ({reason})\n")
        return 1
    ok, text = verdict(info, live_only)
    sys.stdout.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
