"""wire/transform.py: nats-server's own table of subject transform examples, plus properties checked by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.wire import transform
from streamd.wire.transform import TransformError

# nats-server's subject_transform_test.go (shouldMatch): src, dest, published subject, transformed subject.
SERVER_EXAMPLES = [
    ("", "prefix.>", "foo", "prefix.foo"),
    ("foo", "bar", "foo", "bar"),
    ("foo.*.bar.*.baz", "req.$2.$1", "foo.A.bar.B.baz", "req.B.A"),
    ("foo.*.bar.*.baz", "req.{{wildcard(2)}}.{{wildcard(1)}}", "foo.A.bar.B.baz", "req.B.A"),
    ("baz.>", "my.pre.>", "baz.1.2.3", "my.pre.1.2.3"),
    ("baz.>", "foo.bar.>", "baz.1.2.3", "foo.bar.1.2.3"),
    ("*", "foo.bar.$1", "foo", "foo.bar.foo"),
    ("*", "{{splitfromleft(1,3)}}", "12345", "123.45"),
    ("*", "{{SplitFromRight(1,3)}}", "12345", "12.345"),
    ("*", "{{SliceFromLeft(1,3)}}", "1234567890", "123.456.789.0"),
    ("*", "{{SliceFromRight(1,3)}}", "1234567890", "1.234.567.890"),
    ("*", "{{split(1,-)}}", "-abc-def--ghi-", "abc.def.ghi"),
    ("*", "{{split(1,-)}}", "abc-def--ghi-", "abc.def.ghi"),
    ("*.*", "{{split(2,-)}}.{{splitfromleft(1,2)}}", "foo.-abc-def--ghij-", "abc.def.ghij.fo.o"),
    ("*", "{{right(1,1)}}", "1234", "4"),
    ("*", "{{right(1,3)}}", "1234", "234"),
    ("*", "{{right(1,6)}}", "1234", "1234"),
    ("*", "{{left(1,1)}}", "1234", "1"),
    ("*", "{{left(1,3)}}", "1234", "123"),
    ("*", "{{left(1,6)}}", "1234", "1234"),
    ("*", "bar.{{partition(0)}}", "baz", "bar.0"),
    ("*", "bar.{{partition(10, 0)}}", "foo", "bar.3"),
    ("*.*", "bar.{{partition(10)}}", "foo.bar", "bar.6"),
    ("*", "bar.{{partition(10)}}", "foo", "bar.3"),
    ("*", "bar.{{partition(10)}}", "baz", "bar.0"),
    ("*", "bar.{{partition(10)}}", "qux", "bar.9"),
    ("*", "bar.{{random(0)}}", "qux", "bar.0"),
    ("foo.bar", "baz.{{partition(10)}}", "foo.bar", "baz.6"),
    ("foo.baz", "qux.{{partition(10)}}", "foo.baz", "qux.4"),
    ("test.subject", "result.{{partition(5)}}", "test.subject", "result.0"),
    ("foo.*", "one.two.{{wildcard(1)}}", "foo.x", "one.two.x"),
]


@pytest.mark.parametrize(("src", "dest", "subject", "expected"), SERVER_EXAMPLES)
def test_the_servers_examples(src: str, dest: str, subject: str, expected: str) -> None:
    tr = transform.compile(src, dest)
    assert tr is not None and tr.apply(subject) == expected


# shouldErr in the same file, with the text nats-server gives.
SERVER_REFUSALS = [
    ("foo..", "bar", "invalid subject"),
    ("foo.*", "bar.*", "invalid subject"),
    ("foo.*", "bar.$2", "wildcard index out of range in $2: [2]"),
    ("foo.*", "bar.$1.>", "invalid subject"),
    ("foo.>", "bar.baz", "invalid subject"),
    ("foo.*", "foo.{{wildcard(2)}}", "wildcard index out of range in {{wildcard(2)}}: [2]"),
    ("foo.*", "foo.{{unimplemented(1)}}", "unknown function in {{unimplemented(1)}}"),
    ("foo.*", "foo.{{partition()}}", "function argument is invalid or in the wrong format in {{partition()}}"),
    ("foo.*", "foo.{{random()}}", "function argument is invalid or in the wrong format in {{random()}}"),
    ("foo.*", "foo.{{wildcard(foo)}}", "function argument is invalid or in the wrong format in {{wildcard(foo)}}"),
    ("foo.*", "foo.{{wildcard()}}", "not enough arguments passed to the function in {{wildcard()}}"),
    ("foo.*", "foo.{{wildcard(1,2)}}", "too many arguments passed to the function in {{wildcard(1,2)}}"),
    ("foo.*", "foo.{{ wildcard5) }}", "unknown function in {{ wildcard5) }}"),
    ("foo.*", "foo.{{splitLeft(2,2}}", "unknown function in {{splitLeft(2,2}}"),
    ("foo", "bla.{{wildcard(1)}}", "wildcard index out of range in {{wildcard(1)}}"),
    ("foo.*", "foo.{{partition(2147483648)}}", "function argument is invalid"),
    ("foo.*", "foo.{{random(2147483648)}}", "function argument is invalid"),
    ("*", "{{left(1)}}", "not enough arguments passed to the function in {{left(1)}}"),
    ("*", "{{split(1,a b)}}", "function argument is invalid"),
]


@pytest.mark.parametrize(("src", "dest", "text"), SERVER_REFUSALS)
def test_the_servers_refusals(src: str, dest: str, text: str) -> None:
    with pytest.raises(TransformError, match=r".*" + "".join("\\" + c if not c.isalnum() else c for c in text)):
        transform.compile(src, dest)


def test_no_dest_is_no_transform_and_non_matching_subjects_map_to_none() -> None:
    assert transform.compile("foo", "") is None
    tr = transform.compile("foo.*", "bar.$1")
    assert tr is not None
    assert [tr.apply(s) for s in ("foo", "foo.a.b", "bar.a", "foo.*", "foo..")] == [None] * 5
    assert transform.compile(">", ">").apply("any.thing") == "any.thing"  # type: ignore[union-attr]


def test_validate_mapping_checks_destination_tokens_first() -> None:
    with pytest.raises(TransformError, match=r"^invalid mapping destination: invalid transform in h$"):
        transform.validate_mapping("f.>", "g.>.h")
    with pytest.raises(TransformError, match=r"^invalid mapping destination: invalid transform$"):
        transform.validate_mapping("f.*", "g h.$1")


UNTIMED = settings(deadline=None)  # no timed assertions: a loaded machine must not fail a property

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@UNTIMED
@given(st.lists(token, min_size=1, max_size=6))
def test_wildcards_in_any_order_place_the_matching_tokens(toks: list[str]) -> None:
    n = len(toks)
    src = ".".join(["in"] + ["*"] * n)
    order = list(range(n, 0, -1))
    dollar = transform.compile(src, "out." + ".".join(f"${i}" for i in order))
    mustache = transform.compile(src, "out." + ".".join(f"{{{{Wildcard({i})}}}}" for i in order))
    subject = "in." + ".".join(toks)
    expected = "out." + ".".join(reversed(toks))
    assert dollar is not None and mustache is not None
    assert dollar.apply(subject) == mustache.apply(subject) == expected


@UNTIMED
@given(st.lists(token, min_size=1, max_size=6), st.lists(token, min_size=0, max_size=3))
def test_a_full_wildcard_carries_the_rest(rest: list[str], prefix: list[str]) -> None:
    tr = transform.compile("a.>", ".".join([*prefix, ">"]))
    assert tr is not None and tr.apply("a." + ".".join(rest)) == ".".join([*prefix, *rest])


@UNTIMED
@given(token, st.integers(min_value=-3, max_value=15))
def test_splitting_and_slicing_keep_every_character(tok: str, n: int) -> None:
    for fn in ("splitFromLeft", "splitFromRight", "sliceFromLeft", "sliceFromRight"):
        tr = transform.compile("*", f"{{{{{fn}(1,{n})}}}}")
        assert tr is not None
        out = tr.apply(tok)
        assert out is not None and out.replace(".", "") == tok
        assert all(out.split("."))


@UNTIMED
@given(st.lists(token, min_size=2, max_size=4), st.integers(min_value=1, max_value=1000))
def test_partitions_are_stable_and_in_range(toks: list[str], n: int) -> None:
    tr = transform.compile(".".join("*" * len(toks)), f"p.{{{{partition({n},1,2)}}}}")
    assert tr is not None
    out = tr.apply(".".join(toks))
    assert out is not None and out == tr.apply(".".join(toks))
    assert 0 <= int(out.split(".")[1]) < n


@UNTIMED
@given(st.text(max_size=40), st.text(max_size=40))
def test_compile_takes_any_text_and_refuses_only_with_the_servers_errors(src: str, dest: str) -> None:
    try:
        tr = transform.compile(src, dest)
    except TransformError:
        return
    if tr is not None:
        tr.apply("a.b.c")


DEST_TOKENS = ["x", "$1", "$2", "$0", "$-1", "$x", "{{wildcard(1)}}", "{{ Wildcard( 2 ) }}", "{{partition(3)}}"]
DEST_TOKENS += ["{{partition(-2,1,2)}}", "{{split(1,-)}}", "{{split(1,)}}", "{{SliceFromLeft(2,0)}}", "{{left(1,-1)}}"]
DEST_TOKENS += ["{{right(2,99)}}", "{{random(-3)}}", "{{splitFromRight(1,2)}}", "{{nope()}}", ">", "*", ""]
subject_tokens = st.text(alphabet="ab-é%", min_size=1, max_size=6)


@UNTIMED
@given(
    st.lists(st.sampled_from(["a", "*", "*", ">", ""]), min_size=1, max_size=4),
    st.lists(st.sampled_from(DEST_TOKENS), min_size=1, max_size=4),
    st.lists(subject_tokens, min_size=1, max_size=5),
)
def test_any_mix_of_functions_compiles_or_is_refused_and_never_fails_when_applied(
    src: list[str], dest: list[str], subject: list[str]
) -> None:
    try:
        tr = transform.validate_mapping(".".join(src), ".".join(dest))
    except TransformError:
        return
    if tr is None:  # an empty destination: no transform
        assert dest == [""]
        return
    out = tr.apply(".".join(subject))
    if out is not None and tr.plain:
        assert all(out.split("."))
