"""NATS subject rules: validation, wildcard matching and overlap, as nats-server applies them to streams."""

from __future__ import annotations

from functools import lru_cache

_BAD_NAME_CHARS = frozenset(".*>/\\ \t\r\n\f\v")
MAX_NAME_LEN = 255
# streamd's own limit: a stored subject is a key of the store's subject index (LMDB keys stop at 511 bytes).
# Stream config rules refuse longer subjects up front, the write path refuses longer published ones.
MAX_STORED_SUBJECT = 480


def is_valid_name(name: str) -> bool:
    """Stream and consumer names become subject tokens, so they may not contain separators or wildcards."""
    return 0 < len(name) <= MAX_NAME_LEN and not any(c in _BAD_NAME_CHARS for c in name)


_SUBJECT_SPACE = frozenset(" \t\n\r\f")


def is_valid_subject(subject: str, *, wildcards: bool = True) -> bool:
    """nats-server's IsValidSubject: non-empty tokens without spaces, tabs or line breaks, nothing after a `>`
    token. Wildcard characters inside a longer token (`A*`, `x.b>c`) are literal text there, and so here."""
    if not subject:
        return False
    after_fwc = False
    for tok in subject.split("."):
        if not tok or after_fwc:
            return False
        if len(tok) > 1:
            if any(c in _SUBJECT_SPACE for c in tok):
                return False
        elif tok == ">":
            if not wildcards:
                return False
            after_fwc = True
        elif tok in _SUBJECT_SPACE or (tok == "*" and not wildcards):
            return False
    return True


def is_literal(subject: str) -> bool:
    return not any(t in ("*", ">") for t in subject.split("."))


@lru_cache(maxsize=65536)
def _tokens(subject: str) -> tuple[str, ...]:
    return tuple(subject.split("."))


def matches(filter_subject: str, subject: str) -> bool:
    """True when a literal `subject` is selected by `filter_subject` (which may hold wildcards)."""
    if filter_subject == subject or filter_subject == ">":
        return True
    f = _tokens(filter_subject)
    s = _tokens(subject)
    for i, ft in enumerate(f):
        if ft == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if ft != "*" and ft != s[i]:
            return False
    return len(f) == len(s)


def collide(a: str, b: str) -> bool:
    """True when some literal subject would match both `a` and `b` (wildcards on either side)."""
    ta, tb = _tokens(a), _tokens(b)
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != "*" and y != "*" and x != y:
            return False
    return True


def is_subset(sub: str, sup: str) -> bool:
    """True when every subject matched by `sub` is also matched by `sup`."""
    ts, tp = _tokens(sub), _tokens(sup)
    for i, p in enumerate(tp):
        if p == ">":
            return len(ts) > i
        if i >= len(ts):
            return False
        s = ts[i]
        if s == ">":
            return False
        if p != "*" and (s == "*" or s != p):
            return False
    return len(ts) == len(tp)
