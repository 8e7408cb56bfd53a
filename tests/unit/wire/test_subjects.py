from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from streamd.wire import subjects

TOKENS = st.sampled_from(["a", "b", "c", "orders", "*"])
LITERAL_TOKENS = st.sampled_from(["a", "b", "c", "orders"])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    toks = draw(st.lists(TOKENS, min_size=1, max_size=4))
    if draw(st.booleans()):
        toks.append(">")
    return ".".join(toks)


literals = st.lists(LITERAL_TOKENS, min_size=1, max_size=5).map(".".join)


def _oracle(pattern: str, subject: str) -> bool:
    parts = {"*": r"[^.]+", ">": r".+"}
    rx = r"\.".join(parts.get(tok, re.escape(tok)) for tok in pattern.split("."))
    return re.fullmatch(rx, subject) is not None


@given(patterns(), literals)
def test_matches_agrees_with_a_regex_oracle(pattern: str, subject: str) -> None:
    assert subjects.matches(pattern, subject) == _oracle(pattern, subject)


@given(patterns(), patterns())
def test_collide_is_symmetric(a: str, b: str) -> None:
    assert subjects.collide(a, b) == subjects.collide(b, a)


@given(patterns(), patterns(), literals)
def test_a_subject_matched_by_both_means_they_collide(a: str, b: str, subject: str) -> None:
    if subjects.matches(a, subject) and subjects.matches(b, subject):
        assert subjects.collide(a, b)


@given(patterns(), patterns(), literals)
def test_subset_means_every_match_of_the_smaller_matches_the_larger(a: str, b: str, subject: str) -> None:
    if subjects.is_subset(a, b) and subjects.matches(a, subject):
        assert subjects.matches(b, subject)


def test_validation() -> None:
    assert subjects.is_valid_subject("orders.>")
    assert subjects.is_valid_subject("orders.*.new")
    for bad in ("", "a..b", ".a", "a.", "a.>.b", "a b", "a.\tb"):
        assert not subjects.is_valid_subject(bad), bad
    assert subjects.is_valid_name("ORDERS-1_x")
    for bad in ("", "a.b", "a*", "a>", "a/b", "a\\b", "a b", "x" * 256):
        assert not subjects.is_valid_name(bad), bad
