"""Pull consumer priority groups (nats-server 2.11+), as pure functions over the waiting requests.

A consumer with a priority policy names its groups; every pull request must name one of them. The policy decides
which waiting request gets the next message:
- overflow: a request with `min_pending` / `min_ack_pending` only gets messages while the consumer has at least
  that many pending (or unacknowledged) messages; one without them is served as usual.
- pinned_client: one requester at a time is pinned (its pin id travels in the `Nats-Pin-Id` header of every
  delivery, and the client sends it back as `id`); others wait until the pin is released by CONSUMER.UNPIN or by
  the pinned client not asking for `priority_timeout` (a request carrying a stale id gets `423`).
- prioritized: requests are queued by `priority` (0 first, up to 9).
Consumers without a policy never call into this module: their requests are served in arrival order.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streamd.wire.models import PullRequest

NONE = "none"
OVERFLOW = "overflow"
PINNED = "pinned_client"
PRIORITIZED = "prioritized"
POLICIES = (NONE, OVERFLOW, PINNED, PRIORITIZED)
DEFAULT_PINNED_TTL = 120 * 1_000_000_000  # nats-server JsDefaultPinnedTTL
GROUP_NAME = re.compile(r"[a-zA-Z0-9/_=-]{1,16}")
MAX_PRIORITY = 9
_NUID_ALPHABET = string.ascii_letters + string.digits
WRONG_PIN = (423, "Nats-Wrong-Pin-Id")


class Ask(Protocol):
    """The priority fields of a waiting pull request."""

    group: str
    min_pending: int
    min_ack_pending: int
    pin_id: str
    priority: int


@dataclass(slots=True)
class Pin:
    """The pinned client of a pinned_client consumer (in memory, as on the server: a restart unpins)."""

    id: str
    pinned_ns: int
    deadline_ns: int  # the pin is released unless the pinned client asks again before this
    group: str = ""


def new_pin_id() -> str:
    """A 22-character random id, shaped like the server's NUIDs."""
    return "".join(secrets.choice(_NUID_ALPHABET) for _ in range(22))


def refusal(policy: str, groups: Sequence[str], req: PullRequest, pin: Pin | None) -> tuple[int, str] | None:
    """Why a pull request is refused by the consumer's priority settings (status, description), or None.

    The same checks, in the same order, as nats-server's processNextMsgRequest; only for a JSON request (an
    empty or bare batch size request has no priority fields, and the server checks none)."""
    if (req.min_pending or req.min_ack_pending) and policy != OVERFLOW:
        return 400, "Bad Request - Not a Overflow Priority consumer"
    if req.id and policy != PINNED:
        return 400, "Bad Request - Not a Pinned Client Priority consumer"
    if req.priority < 0 or req.priority > MAX_PRIORITY:
        return 400, f"Bad Request - Priority must be between 0 and {MAX_PRIORITY}"
    if policy == NONE:
        return None
    if not req.group:
        return 400, "Bad Request - Priority Group missing"
    if req.group not in groups:
        return 400, "Bad Request - Invalid Priority Group"
    if pin is not None and req.id and req.id != pin.id:
        return 423, "Nats-Pin-Id mismatch"
    return None


def insert_at(waiting: Sequence[Ask], priority: int) -> int:
    """Where a prioritized request goes: after every request of the same or a more urgent (lower) priority."""
    for i, w in enumerate(waiting):
        if w.priority > priority:
            return i
    return len(waiting)


@dataclass(frozen=True, slots=True)
class Choice:
    """What to do with waiting request `index`: serve it (pinning it first when `pin` is set), or answer it with
    `WRONG_PIN` and drop it (`reject`)."""

    index: int
    reject: bool = False
    pin: bool = False


def choose(
    policy: str, waiting: Sequence[Ask], pin: Pin | None, num_pending: int, ack_pending: int, skip: int = 0
) -> Choice | None:
    """The next waiting request (from `skip` on) to act on for one message, or None when none may have it.

    `num_pending` counts the message about to be delivered (nats-server's npc+1); `ack_pending` is the number of
    deliveries awaiting an ack before this one."""
    for i in range(skip, len(waiting)):
        w = waiting[i]
        if policy == PINNED:
            if pin is None:
                if w.pin_id:
                    return Choice(i, reject=True)  # an id from an earlier pin
                return Choice(i, pin=bool(w.group))  # (a request without a JSON body is served unpinned)
            if w.pin_id != pin.id:
                if w.pin_id:
                    return Choice(i, reject=True)
                continue  # not the pinned client: it waits
        elif policy == OVERFLOW and not overflows(w, num_pending, ack_pending):
            continue
        return Choice(i)
    return None


def overflows(w: Ask, num_pending: int, ack_pending: int) -> bool:
    """Whether an overflow request may have messages: no thresholds, or one of them reached."""
    if w.min_pending <= 0 and w.min_ack_pending <= 0:
        return True
    return (0 < w.min_pending <= num_pending) or (0 < w.min_ack_pending <= ack_pending)
