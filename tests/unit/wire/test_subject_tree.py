"""The subject tree answers exactly what the pairwise rules in `subjects` answer, for any set of patterns."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from streamd.wire import subjects
from streamd.wire.subject_tree import SubjectTree, first_overlap

TOKENS = st.sampled_from(["a", "b", "c", "*"])
LITERAL_TOKENS = st.sampled_from(["a", "b", "c", "d"])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    toks = draw(st.lists(TOKENS, min_size=0, max_size=4))
    if not toks or draw(st.booleans()):
        toks.append(">")
    return ".".join(toks)


literals = st.lists(LITERAL_TOKENS, min_size=1, max_size=5).map(".".join)
pattern_sets = st.lists(patterns(), max_size=12)


def _tree(pats: list[str]) -> SubjectTree[int]:
    tree: SubjectTree[int] = SubjectTree()
    for i, p in enumerate(pats):
        tree.insert(p, i)
    return tree


@given(pattern_sets, patterns())
def test_colliding_equals_pairwise_collide(pats: list[str], query: str) -> None:
    got = Counter(_tree(pats).colliding(query))
    want = Counter(i for i, p in enumerate(pats) if subjects.collide(p, query))
    assert got == want


@given(pattern_sets, literals)
def test_match_equals_pairwise_matches(pats: list[str], subject: str) -> None:
    got = Counter(_tree(pats).match(subject))
    want = Counter(i for i, p in enumerate(pats) if subjects.matches(p, subject))
    assert got == want


@given(pattern_sets, st.data())
def test_remove_forgets_exactly_what_was_removed(pats: list[str], data: st.DataObject) -> None:
    tree = _tree(pats)
    gone = data.draw(st.sets(st.integers(0, max(len(pats) - 1, 0))))
    for i in gone:
        if i < len(pats):
            tree.remove(pats[i], i)
    tree.remove("never.stored", 99)
    kept = [i for i in range(len(pats)) if i not in gone]
    assert len(tree) == len(kept)
    query = data.draw(patterns())
    assert Counter(tree.colliding(query)) == Counter(i for i in kept if subjects.collide(pats[i], query))
    if not kept:
        assert not tree._root.children  # empty branches are pruned


@given(pattern_sets)
def test_first_overlap_agrees_with_pairwise(pats: list[str]) -> None:
    found = first_overlap(pats)
    pairs = [(i, j) for j in range(len(pats)) for i in range(j) if subjects.collide(pats[i], pats[j])]
    if not pairs:
        assert found is None
        return
    j = min(j for _, j in pairs)  # the first pattern that overlaps an earlier one is the one reported
    assert found is not None
    assert found[1] == pats[j] and subjects.collide(found[0], found[1])
    assert found[0] in pats[:j]


@given(pattern_sets, patterns())
def test_collides_ignores_one_value(pats: list[str], query: str) -> None:
    tree: SubjectTree[str] = SubjectTree()
    for p in pats:
        tree.insert(p, "me")
    assert not tree.collides(query, ignore="me")
    assert tree.collides(query) == any(subjects.collide(p, query) for p in pats)


def test_many_literal_subjects_are_checked_in_linear_time() -> None:
    """20k distinct literals: one pass; a quadratic check (200M pair tests) would not finish within the test run."""
    pats = [f"orders.{i}.created" for i in range(20_000)]
    assert first_overlap(pats) is None
    found = first_overlap([*pats, "orders.*.created"])
    assert found is not None and found[1] == "orders.*.created"
    tree = _tree(pats)
    assert list(tree.match("orders.77.created")) == [77]
    assert tree.collides("orders.19999.>")
