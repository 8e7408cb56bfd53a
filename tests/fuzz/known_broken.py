"""Requests the fuzz currently skips because streamd mishandles them (issue 9): each entry names the failure.

The lead removes an entry once its fix is merged; test_known_broken.py reproduces each one (strict xfail), so a
fix shows up there as an unexpected pass."""

from __future__ import annotations

from collections.abc import Callable

from tests.fuzz.strategies import JSON_VERBS, Request


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


KNOWN_BROKEN: dict[str, tuple[str, Callable[[Request], bool]]] = {
    "non_utf8_api_subject": (
        "issue 9 item 2: a JSON API request whose subject or reply subject is not UTF-8 raises UnicodeDecodeError "
        "in nats-py's message parser on streamd's connection; from then on no API request or publish is answered",
        lambda r: r.verb in JSON_VERBS and not (_utf8(r.subject) and _utf8(r.reply_tail or b"")),
    ),
    "non_utf8_pull_reply": (
        "a CONSUMER.MSG.NEXT request whose reply subject is not UTF-8: UnicodeDecodeError in service.on_next "
        "(reply.decode()), logged as 'message on ... could not be handled'; the requester gets no answer",
        lambda r: r.verb == "CONSUMER.MSG.NEXT" and not _utf8(r.reply_tail or b""),
    ),
    "wildcard_inside_token": (
        "issue 9 item 1: STREAM.CREATE/UPDATE with a subject like 'A*' or 'x.b>c' (legal for nats-server, which "
        "stores them) commits the config, then nats-py refuses to subscribe (BadSubjectError): the answer is "
        "500/10051 'internal error' or a success whose subject is not served (publish gets 503), and every later "
        "start of streamd fails",
        lambda r: r.verb in ("STREAM.CREATE", "STREAM.UPDATE") and (b'"A*"' in r.body or b'"x.b>c"' in r.body),
    ),
}


def known_broken(req: Request) -> str | None:
    """The name of the known failure `req` would hit, or None."""
    for name, (_reason, matches) in KNOWN_BROKEN.items():
        if matches(req):
            return name
    return None
