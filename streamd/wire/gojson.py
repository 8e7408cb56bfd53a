"""API request decoding with nats-server's integer rules: each integer field has its Go type (uint64, int64, int,
int32, time.Duration) and a value outside that type's range, a fraction or a string is refused before anything
uses it, with Go's encoding/json wording ("json: cannot unmarshal number -1 into Go struct field X.seq of type
uint64"). msgspec alone would take any size of integer, and the failure would come later, deep in a handler.

Integer fields are typed in models.py as ``U64``, ``I64``, ``Int``, ``I32`` or ``Duration``: plain ``int`` carrying
the Go type name as metadata (msgspec cannot bound integers past int64 itself, so the range check is here).
"""

from __future__ import annotations

import enum
import json
import re
import typing
from typing import Annotated, Any, TypeVar

import msgspec

T = TypeVar("T")
U64 = Annotated[int, msgspec.Meta(extra={"go": "uint64"})]
I64 = Annotated[int, msgspec.Meta(extra={"go": "int64"})]
Int = Annotated[int, msgspec.Meta(extra={"go": "int"})]
I32 = Annotated[int, msgspec.Meta(extra={"go": "int32"})]
Duration = Annotated[int, msgspec.Meta(extra={"go": "time.Duration"})]

_I64 = (-(1 << 63), (1 << 63) - 1)
RANGES: dict[str, tuple[int, int]] = {
    "uint64": (0, (1 << 64) - 1),
    "int64": _I64,
    "int": _I64,
    "int32": (-(1 << 31), (1 << 31) - 1),
    "time.Duration": _I64,
}
_AT = re.compile(r"^(.*) - at `\$(.*)`$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`(?: - at `[^`]*`)?$")

# (field name, Go type, shape): shape "one" an integer, "list" a list of integers, else a nested Struct type.
Fields = tuple[tuple[str, str, Any], ...]


class GoJsonError(ValueError):
    """A request the Go decoder would refuse; str() is the text after "invalid JSON: "."""


def decode(data: bytes, typ: type[T], go_name: str) -> T:
    """Decode `data` as `typ`, then range-check its integers; raises GoJsonError or msgspec's DecodeError."""
    try:
        obj = msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as exc:
        if "got `null`" not in str(exc):
            raise GoJsonError(_type_error(str(exc), data, typ, go_name)) from None
        obj = _decode_without_nulls(data, typ, go_name)
    except RecursionError:  # deeply nested arrays in an untyped field
        raise GoJsonError("exceeded max depth") from None
    _check(obj, go_name, "")
    return obj


def _decode_without_nulls(data: bytes, typ: type[T], go_name: str) -> T:
    """Go's decoder leaves a field at its zero value when the JSON says null; msgspec refuses null for a typed
    field. Only requests that carry a null pay for this second pass (drop null members, decode again)."""
    try:
        raw = msgspec.json.decode(data)
        _refuse_enum_nulls(raw, typ)
        stripped = msgspec.json.encode(_without_nulls(raw))
    except RecursionError:
        raise GoJsonError("exceeded max depth") from None
    try:
        return msgspec.json.decode(stripped, type=typ)
    except msgspec.ValidationError as exc:
        raise GoJsonError(_type_error(str(exc), stripped, typ, go_name)) from None


def _refuse_enum_nulls(value: Any, typ: Any) -> None:
    """Go's policy enums (retention, storage, discard, deliver/ack/replay policy) unmarshal themselves and refuse
    a null, where any other field stays at its zero value: `can not unmarshal "null"` (or the enum's own
    `go_null_error`, e.g. compression's)."""
    if not (isinstance(value, dict) and isinstance(typ, type) and issubclass(typ, msgspec.Struct)):
        return
    hints = _hints(typ)
    for key, item in value.items():
        for arg in _union_args(hints.get(key)):
            if item is None and isinstance(arg, type) and issubclass(arg, enum.Enum):
                custom = getattr(arg, "go_null_error", None)
                raise GoJsonError(custom() if custom else 'can not unmarshal "null"')
            _refuse_enum_nulls(item, arg)


def _hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


_HINTS: dict[type, dict[str, Any]] = {}


def _union_args(hint: Any) -> tuple[Any, ...]:
    if hint is None:
        return ()
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _check(obj: Any, go_name: str, path: str) -> None:
    for name, go, shape in _int_fields(type(obj)):
        value = getattr(obj, name)
        if value is msgspec.UNSET or value is None:
            continue
        if shape == "one":
            _in_range(value, go, f"Go struct field {go_name}.{path}{name}")
        elif shape == "list":
            for i, v in enumerate(value):
                _in_range(v, go, f"{go_name}.{path}{name}.{i}")
        else:
            _check(value, go_name, f"{path}{name}.")


def _in_range(value: int, go: str, where: str) -> None:
    lo, hi = RANGES[go]
    if not lo <= value <= hi:
        text = str(value) if value.bit_length() < 4000 else "(too many digits)"  # str() refuses > 4300 digits
        raise GoJsonError(f"json: cannot unmarshal number {text} into {where} of type {go}")


_FIELDS: dict[type, Fields] = {}


def _int_fields(cls: type) -> Fields:
    """The integer (and nested Struct) fields of a Struct class, from its annotations; computed once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = _scan(cls)
    return found


def _scan(cls: type) -> Fields:
    if not issubclass(cls, msgspec.Struct):
        return ()
    out = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        found = _shape(hint)
        if found is not None:
            out.append((name, *found))
    return tuple(out)


def _shape(hint: Any) -> tuple[str, Any] | None:
    go = _go_type(hint)
    if go is not None:
        return go, "one"
    for arg in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,):
        if typing.get_origin(arg) is list:
            elem = _go_type(typing.get_args(arg)[0])
            if elem is not None:
                return elem, "list"
        if isinstance(arg, type) and issubclass(arg, msgspec.Struct) and _int_fields(arg):
            return "", arg
        go = _go_type(arg)
        if go is not None:
            return go, "one"
    return None


def _go_type(hint: Any) -> str | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    for meta in hint.__metadata__:
        if isinstance(meta, msgspec.Meta) and meta.extra and "go" in meta.extra:
            return str(meta.extra["go"])
    return None


_UnionType = type(int | str)


def _type_error(message: str, data: bytes, typ: type, go_name: str) -> str:
    """msgspec's "Expected `int`, got `float` - at `$.seq`" as Go words it, for integer fields; an unknown field
    as Go's strict decoder words it (nats-server refuses those); else as is."""
    unknown = _UNKNOWN.match(message)
    if unknown is not None:
        return f"json: unknown field {json.dumps(unknown.group(1))}"
    m = _AT.match(message)
    if m is None:
        return message
    steps = [(k, int(i) if i else None) for k, i in _STEP.findall(m.group(2))]
    go = _go_type_at(typ, steps)
    if go is None:
        return message
    value = _value_at(data, steps)
    if isinstance(value, _Number):
        what = f"number {value.text}"
    else:
        what = {str: "string", bool: "bool", list: "array", dict: "object"}.get(type(value), "value")
    dotted = ".".join(k if i is None else str(i) for k, i in steps)
    where = f"{go_name}.{dotted}" if steps[-1][1] is not None else f"Go struct field {go_name}.{dotted}"
    return f"json: cannot unmarshal {what} into {where} of type {go}"


def _go_type_at(typ: type, steps: list[tuple[str, int | None]]) -> str | None:
    """The Go type of the integer at `steps` (a field path, list indexes included), or None if not an integer."""
    cls: Any = typ
    listed: str | None = None
    for n, (key, index) in enumerate(steps):
        last = n == len(steps) - 1
        if index is not None:
            return listed if last else None
        fields = {name: (go, shape) for name, go, shape in _int_fields(cls)}
        if key not in fields:
            return None
        go, shape = fields[key]
        if shape == "one":
            return go if last else None
        if shape == "list":
            listed = go
        else:
            cls = shape
    return None


class _Number:
    def __init__(self, text: str) -> None:
        self.text = text


def _value_at(data: bytes, steps: list[tuple[str, int | None]]) -> Any:
    try:
        value: Any = json.loads(data, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
        for key, index in steps:
            value = value[index] if index is not None else value[key]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None
    return value
