"""Fuzz of the restore side's snapshot decoding (no server: the store's decoder alone): whatever bytes arrive, in
whatever chunking, decoding either yields records or refuses with the restore failure (500/10062) — never another
exception, never unbounded output per step. The service test (tests/test_snapshot.py) shows a refusal leaves
nothing behind."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.store import snapshot as snap
from streamd.wire.models import StreamConfig
from tests.fuzz.strategies import examples


def _valid() -> bytes:
    e = snap.Exporter()
    out = e.start(snap.Head(snap.VERSION, StreamConfig(name="S", subjects=["s.>"]), 1, 1, 9, 9))
    out += e.add(
        snap.Msgs([(s, s, b"s.%d" % s, b"NATS/1.0\r\nX: 1\r\n\r\n" if s % 2 else b"", b"d" * s) for s in (1, 2, 5, 9)])
    )
    out += e.add(snap.ConsumerEntry("C", b"\x93", b""))
    return out + e.end()


VALID = _valid()


def _decode(data: bytes, cut: int) -> list[snap.Record]:
    """Feed in two pieces, drain in steps, and check completeness, as a restore does."""
    d = snap.Decoder()
    records: list[snap.Record] = []
    for piece in (data[:cut], data[cut:]):
        d.feed(piece)
        while d.has_more:
            records += d.step()
    d.check_complete()
    return records


def test_a_wrong_format_version_is_named() -> None:
    d = snap.Decoder()
    try:
        d.feed(snap.SNAPPY_ID + snap.snappy_frames(snap.MAGIC + b"\x00\x09" + b"rest"))
    except snap.SnapshotError as exc:
        assert "format version 9 is not supported" in exc.description
    else:
        raise AssertionError("version 9 accepted")


def test_a_valid_snapshot_decodes_whole_in_any_chunking() -> None:
    for cut in (0, 1, 7, 8, 9, len(VALID) // 2, len(VALID)):
        kinds = [type(r).__name__ for r in _decode(VALID, cut)]
        assert kinds == ["Head", "Msgs", "ConsumerEntry", "End"]


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_mangled_snapshots_are_refused_with_the_restore_error(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "random"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    elif how == "insert":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        inner = data.draw(st.sampled_from([b"", snap.PREAMBLE])) + data.draw(st.binary(max_size=2000))
        raw = bytearray(snap.SNAPPY_ID + snap.snappy_frames(inner))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        _decode(bytes(raw), cut)
    except snap.SnapshotError as exc:
        assert exc.err_code == 10062 and exc.description.startswith("restore failed: ")
