"""Subject transforms as nats-server v2.15 defines them (its subject_transform.go): compiled once, applied per message.

    compile(src, dest) -> Transform | None     validate like the server (TransformError with its wording);
                                               None for an empty dest (the server's "no transform")
    Transform.apply(subject) -> str | None     the mapped subject, or None when `subject` does not match `src`
    Transform.plain                            True when dest has no functions: valid subjects map to valid ones
    validate_mapping(src, dest)                the extra checks the server makes on a stream's subject_transform
                                               destination (ValidateMapping), then compile's

Destination tokens: literals, `$n` / `{{wildcard(n)}}` (the n-th `*` of src), `>` (the rest, when src ends in
`>`), and the mapping functions partition(n[, i...]), split(i, sep), splitFromLeft/Right(i, pos),
sliceFromLeft/Right(i, size), left(i, len), right(i, len), random(n). Names are case-insensitive in their first
letter and words, as the server's patterns are. Server quirks are kept on purpose (a wildcard index of 0 or
below reads token 0; positional functions count UTF-8 bytes; int arguments wrap at 32 bits), so a stream
stores exactly the subjects nats-server would.
"""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable

__all__ = ["Transform", "TransformError", "compile", "validate_mapping"]

_MAX_I32 = 2**31 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")  # Go's strconv.Atoi: an optional sign and ASCII digits, nothing else
_SPACE = "[\t\n\f\r ]"  # Go's \s
_COMMA = re.compile(r"," + _SPACE + "*")


def _fn(name: str) -> re.Pattern[str]:
    """The server's pattern for a mapping function: `{{ name(args) }}`, each word's first letter either case."""
    words = re.findall(r"[a-z]+|[A-Z][a-z]*", name)
    spelled = "".join(f"[{w[0].lower()}{w[0].upper()}]{w[1:].lower()}" for w in words)
    return re.compile(r"\{\{" + _SPACE + "*" + spelled + _SPACE + r"*\((.*)\)" + _SPACE + r"*\}\}")


_WILDCARD, _PARTITION, _RANDOM = _fn("wildcard"), _fn("partition"), _fn("random")
_SPLIT_L, _SPLIT_R = _fn("splitFromLeft"), _fn("splitFromRight")
_SLICE_L, _SLICE_R = _fn("sliceFromLeft"), _fn("sliceFromRight")
_SPLIT, _LEFT, _RIGHT = _fn("split"), _fn("left"), _fn("right")
# (index, int) functions in the order the server tries them (right before left: "splitFromLeft" contains neither).
_INDEX_INT = (
    ("splitFromLeft", _SPLIT_L),
    ("splitFromRight", _SPLIT_R),
    ("sliceFromLeft", _SLICE_L),
    ("sliceFromRight", _SLICE_R),
    ("right", _RIGHT),
    ("left", _LEFT),
)

_KNOWN = (_WILDCARD, _PARTITION, _RANDOM, _SPLIT, *(p for _, p in _INDEX_INT))

_INVALID_DEST = "invalid mapping destination"
BAD_SUBJECT = "invalid subject"
NOT_ENOUGH_ARGS = f"{_INVALID_DEST}: not enough arguments passed to the function"
TOO_MANY_ARGS = f"{_INVALID_DEST}: too many arguments passed to the function"
INVALID_ARG = f"{_INVALID_DEST}: function argument is invalid or in the wrong format"
OUT_OF_RANGE = f"{_INVALID_DEST}: wildcard index out of range"
UNKNOWN_FUNCTION = f"{_INVALID_DEST}: unknown function"
INVALID_TRANSFORM = f"{_INVALID_DEST}: invalid transform"


class TransformError(ValueError):
    """A refused transform; str() is the server's error text (`... in <token>` where it names one)."""

    def __init__(self, reason: str, token: str = "") -> None:
        super().__init__(f"{reason} in {token}" if token else reason)
        self.reason = reason


# ---- parsing one destination token ----------------------------------------------------------------------------

# A parsed token: (kind, source wildcard numbers, int argument, string argument).
_Parsed = tuple[str, list[int], int, str]
_LITERAL: _Parsed = ("literal", [], -1, "")


def _atoi(text: str, token: str, bits: int = 64) -> int:
    text = text.strip(" ")
    if not _INT_RE.match(text):
        raise TransformError(INVALID_ARG, token)
    value = int(text)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise TransformError(INVALID_ARG, token)
    return value


def _i32(value: int) -> int:
    """Go's int32(v): wraps."""
    return (value + 2**31) % 2**32 - 2**31


def _args(pattern: re.Pattern[str], token: str) -> list[str] | None:
    m = pattern.search(token)
    return _COMMA.split(m.group(1)) if m else None


def _parse_token(token: str) -> _Parsed:
    """The server's indexPlaceHolders: what one destination token asks for."""
    if len(token) > 1 and token[0] == "$":
        if _INT_RE.match(token[1:]) and -(2**63) <= int(token[1:]) < 2**63:
            return ("wildcard", [int(token[1:])], -1, "")
        return _LITERAL  # other `$...` tokens are literal text
    if not (len(token) > 4 and token.startswith("{{") and token.endswith("}}")):
        return _LITERAL
    return _parse_function(token)


def _parse_function(token: str) -> _Parsed:
    args = _args(_WILDCARD, token)
    if args is not None:
        if args == [""]:
            raise TransformError(NOT_ENOUGH_ARGS, token)
        if len(args) > 1:
            raise TransformError(TOO_MANY_ARGS, token)
        return ("wildcard", [_atoi(args[0], token)], -1, "")
    args = _args(_PARTITION, token)
    if args is not None:
        n = _atoi(args[0], token)
        if n > _MAX_I32:
            raise TransformError(INVALID_ARG, token)
        return ("partition", [_atoi(a, token) for a in args[1:]], _i32(n), "")
    for kind, pattern in _INDEX_INT:
        args = _args(pattern, token)
        if args is not None:
            if len(args) < 2:
                raise TransformError(NOT_ENOUGH_ARGS, token)
            if len(args) > 2:
                raise TransformError(TOO_MANY_ARGS, token)
            return (kind, [_atoi(args[0], token)], _atoi(args[1], token, 32), "")
    return _parse_split_or_random(token)


def _parse_split_or_random(token: str) -> _Parsed:
    args = _args(_SPLIT, token)
    if args is not None:
        if len(args) < 2:
            raise TransformError(NOT_ENOUGH_ARGS, token)
        if len(args) > 2:
            raise TransformError(TOO_MANY_ARGS, token)
        index = _atoi(args[0], token)
        if " " in args[1] or "." in args[1]:
            raise TransformError(INVALID_ARG, token)
        return ("split", [index], -1, args[1])
    args = _args(_RANDOM, token)
    if args is not None:
        if len(args) != 1:
            raise TransformError(NOT_ENOUGH_ARGS, token)
        n = _atoi(args[0], token)
        if n > _MAX_I32:
            raise TransformError(INVALID_ARG, token)
        return ("random", [], _i32(n), "")
    raise TransformError(UNKNOWN_FUNCTION, token)


# ---- the per-token steps of a compiled transform --------------------------------------------------------------

Step = Callable[[list[str]], str]


def _raw(token: str) -> bytes | str:
    """Positional functions count bytes, as Go does; ASCII (the usual case) stays a str."""
    return token if token.isascii() else token.encode()


def _text(part: bytes | str) -> str:
    return part if isinstance(part, str) else part.decode(errors="surrogateescape")


def _literal(text: str) -> Step:
    return lambda toks: text


def _wildcard(i: int) -> Step:
    return lambda toks: toks[i] if i < len(toks) else ""


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _partition(indexes: list[int], buckets: int) -> Step:
    n = buckets & 0xFFFFFFFF  # Go: h % uint32(buckets)

    def step(toks: list[str]) -> str:
        if n == 0:
            return "0"
        key = "".join(toks[i] for i in indexes) if indexes else ".".join(toks)
        return str(_fnv32a(key.encode(errors="surrogateescape")) % n)

    return step


def _random_step(ceiling: int) -> Step:
    return lambda toks: str(random.getrandbits(31) % abs(ceiling)) if ceiling else "0"


def _split_from(i: int, pos: int, from_right: bool) -> Step:
    def step(toks: list[str]) -> str:
        tok = _raw(toks[i])
        if not 0 < pos < len(tok):
            return toks[i]
        cut = len(tok) - pos if from_right else pos
        return _text(tok[:cut]) + "." + _text(tok[cut:])

    return step


def _slice_from_left(i: int, size: int) -> Step:
    def step(toks: list[str]) -> str:
        tok = _raw(toks[i])
        n = len(tok)
        if not 0 < size < n:
            return toks[i]
        parts = [tok[j : j + size] for j in range(0, n - n % size, size)]
        if n % size:
            parts.append(tok[n - n % size :])
        return ".".join(_text(p) for p in parts)

    return step


def _slice_from_right(i: int, size: int) -> Step:
    def step(toks: list[str]) -> str:
        tok = _raw(toks[i])
        n = len(tok)
        if not 0 < size < n:
            return toks[i]
        rem = n % size
        parts = ([tok[:rem]] if rem else []) + [tok[j : j + size] for j in range(rem, n, size)]
        return ".".join(_text(p) for p in parts)

    return step


def _left_right(i: int, size: int, right: bool) -> Step:
    def step(toks: list[str]) -> str:
        tok = _raw(toks[i])
        if not 0 < size < len(tok):
            return toks[i]
        return _text(tok[len(tok) - size :] if right else tok[:size])

    return step


def _split(i: int, sep: str) -> Step:
    def step(toks: list[str]) -> str:
        tok = toks[i]
        parts = tok.split(sep) if sep else list(tok)
        out: list[str] = []
        for j, part in enumerate(parts):
            out.append(part)
            if j < len(parts) - 1 and parts[j + 1] != "" and not (j == 0 and part == ""):
                out.append(".")
        return "".join(out)

    return step


def _step(parsed: _Parsed, sources: list[int]) -> Step:
    """The runtime step for a parsed function whose wildcard numbers became source token positions."""
    kind, _, n, text = parsed
    i = sources[0] if sources else 0
    if kind == "wildcard":
        return _wildcard(i)
    if kind == "partition":
        return _partition(sources, n)
    if kind == "random":
        return _random_step(n)
    if kind in ("splitFromLeft", "splitFromRight"):
        return _split_from(i, n, kind == "splitFromRight")
    if kind == "sliceFromLeft":
        return _slice_from_left(i, n)
    if kind == "sliceFromRight":
        return _slice_from_right(i, n)
    if kind in ("left", "right"):
        return _left_right(i, n, kind == "right")
    return _split(i, text)


# ---- compiling and applying -----------------------------------------------------------------------------------


def _subject_info(subject: str) -> tuple[list[str], int, bool] | None:
    """The server's subjectInfo: (tokens, number of `*`, ends in `>`), or None when not a subject."""
    if not subject:
        return None
    tokens = subject.split(".")
    pwcs, fwc = 0, False
    for t in tokens:
        if not t or fwc:
            return None
        if t == ">":
            fwc = True
        elif t == "*":
            pwcs += 1
    return tokens, pwcs, fwc


class Transform:
    """A compiled transform; immutable and safe to share. `apply` costs one split, a few C-level checks and one
    format: a destination of literals and wildcards (the usual case) runs no Python code per token."""

    __slots__ = (
        "src",
        "dest",
        "plain",
        "_identity",
        "_ntoks",
        "_fwc",
        "_literals",
        "_steps",
        "_rest_from",
        "_fmt",
        "_get",
    )

    def __init__(
        self, src: str, dest: str, steps: list[Step | int | str], rest_from: int | None, stoks: list[str]
    ) -> None:
        self.src, self.dest = src, dest
        self._identity = src == ">" and dest == ">"
        self._fwc = rest_from is not None
        self._ntoks = len(stoks) - 1 if self._fwc else len(stoks)  # tokens before a `>`
        self._literals = [(i, t) for i, t in enumerate(stoks[: self._ntoks]) if t != "*"]
        self._rest_from = rest_from  # dest ends in `>`: the source tokens from here on close the result
        self._fmt: str | None = None
        self._get: Callable[[list[str]], tuple[str, ...]] = _no_tokens
        if all(not callable(step) for step in steps):  # literals (str) and wildcards (source positions)
            pieces = [step.replace("%", "%%") if isinstance(step, str) else "%s" for step in steps]
            self._fmt = ".".join(pieces + (["%s"] if self._fwc else []))
            self._get = _getter([step for step in steps if isinstance(step, int)])
        self._steps = [_as_step(step) for step in steps]
        # Only literals without white space, wildcards and `>`: a published (valid) subject maps to a valid one.
        self.plain = self._fmt is not None and not any(c in dest for c in "\t\n\f\r ")

    def apply(self, subject: str) -> str | None:
        """The transformed subject; None when `subject` is not a literal subject matching `src`."""
        if self._identity:
            return subject
        toks = subject.split(".")
        n = len(toks)
        if (n <= self._ntoks if self._fwc else n != self._ntoks) or "" in toks or "*" in toks or ">" in toks:
            return None
        for i, t in self._literals:
            if toks[i] != t:
                return None
        if self._fmt is not None:
            values = self._get(toks)
            if self._rest_from is not None:
                values = (*values, ".".join(toks[self._rest_from :]))
            return self._fmt % values
        parts = [step(toks) for step in self._steps]
        if self._rest_from is not None:
            parts.append(".".join(toks[self._rest_from :]))
        return ".".join(parts)

    def __repr__(self) -> str:
        return f"Transform({self.src!r}, {self.dest!r})"


def _no_tokens(toks: list[str]) -> tuple[str, ...]:
    return ()


def _getter(positions: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """The source tokens at `positions`, as a tuple (operator.itemgetter, which returns a bare item for one)."""
    if not positions:
        return _no_tokens
    if len(positions) == 1:
        i = positions[0]
        return lambda toks: (toks[i],)
    return operator.itemgetter(*positions)


def _as_step(step: Step | int | str) -> Step:
    if isinstance(step, str):
        return _literal(step)
    if isinstance(step, int):
        return _wildcard(step)
    return step


def compile(src: str, dest: str) -> Transform | None:
    """Validate and compile `src` -> `dest` as nats-server's NewSubjectTransform; an empty src means `>`. None for
    an empty dest (no transform); TransformError (the server's text) when the server refuses it."""
    if not dest:
        return None
    src = src or ">"
    sinfo, dinfo = _subject_info(src), _subject_info(dest)
    if sinfo is None or dinfo is None or dinfo[1] > 0 or sinfo[2] != dinfo[2]:
        raise TransformError(BAD_SUBJECT)
    stoks, npwcs, fwc = sinfo
    dtoks = dinfo[0]
    positions = [i for i, t in enumerate(stoks) if t == "*"]  # wildcard n is source token positions[n - 1]
    steps: list[Step | int | str] = []  # a literal, a source position (wildcard) or a function's step
    for token in dtoks[:-1] if fwc else dtoks:
        parsed = _parse_token(token)
        kind, numbers = parsed[0], parsed[1]
        if kind == "literal":
            steps.append(token)
        elif kind == "random" or (kind == "partition" and not (npwcs or fwc)):
            steps.append(_step((kind, [], parsed[2], ""), []))
        elif not (npwcs or fwc):
            raise TransformError(OUT_OF_RANGE, token)
        else:
            for n in numbers:
                if n > npwcs:
                    raise TransformError(OUT_OF_RANGE, f"{token}: [{n}]")
            # The server's index map: numbers of 0 or below are absent from it and read as source token 0.
            sources = [positions[n - 1] if n >= 1 else 0 for n in numbers]
            steps.append(sources[0] if kind == "wildcard" else _step(parsed, sources))
    return Transform(src, dest, steps, len(stoks) - 1 if fwc else None, stoks)


def validate_mapping(src: str, dest: str) -> Transform | None:
    """nats-server's ValidateMapping (a stream's subject_transform): its own token checks on `dest` first (their
    errors name other tokens than compile's would), then compile's."""
    if not dest:
        return None
    after_fwc = False
    for t in dest.split("."):
        if not t or after_fwc:
            raise TransformError(INVALID_TRANSFORM, t)
        if len(t) > 4 and t.startswith("{{") and t.endswith("}}"):
            if not any(p.search(t) for p in _KNOWN):
                raise TransformError(UNKNOWN_FUNCTION, t)
            continue
        if t == ">":
            after_fwc = True
        elif any(c in t for c in "\t\n\f\r "):
            raise TransformError(INVALID_TRANSFORM)
    return compile(src, dest)
