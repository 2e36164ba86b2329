import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_strategies import random_graphs
from hypothesis_budget import examples
from tensorir import (DType, Graph, ParseError, TensorType, parse, print_graph, structural_diff,
                      verify)


@settings(max_examples=examples(150))
@given(random_graphs())
def test_parse_inverts_print(g):
    text = print_graph(g)
    back = parse(text)
    assert structural_diff(g, back) is None, text
    assert print_graph(back) == text  # printing is stable
    verify(back)


def test_small_constants_round_trip_exactly_including_specials():
    g = Graph("consts")
    values = {
        "f": np.array([0.1, -0.0, np.inf, -np.inf, np.nan, 1e-38, 3.4e38], np.float32),
        "h": np.array([0.1, 65504.0], np.float16),
        "bf": np.array([1.5, -2.25], DType.bfloat16.numpy),
        "d": np.array([0.1, 1e-300], np.float64),
        "i": np.array([[-(2**63), 2**63 - 1]], np.int64),
        "u": np.array([0, 255], np.uint8),
        "b": np.array([True, False]),
        "s": np.array(3.5, np.float32),
    }
    for name, data in values.items():
        g.add_constant(name, data)
    x = g.add_input("x", TensorType((2,), DType.float32))
    g.set_outputs([x])
    back = parse(print_graph(g))
    for name, data in values.items():
        got = back.value(name).data
        assert got.dtype == data.dtype and got.shape == data.shape
        assert np.array_equal(np.atleast_1d(got).view(np.uint8), np.atleast_1d(data).view(np.uint8)) or \
            np.array_equal(got, data, equal_nan=True)


def test_large_constants_print_as_digest_and_parse_as_stripped():
    g = Graph("w")
    w = g.add_constant("w", np.arange(100, dtype=np.float32))
    g.set_outputs([g.add_op("Relu", [w]).result])
    text = print_graph(g)
    assert f"%w = const f32[100] sha1:{w.content_digest()}" in text
    back = parse(text)
    assert back.value("w").data is None and structural_diff(g, back) is None


def test_parse_error_names_line_and_column():
    text = "graph g(%x: f32[2]) -> (%y: f32[2]) {\n  %y = Relu(%x) : f33[2]\n  return %y\n}\n"
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (2, 19)
    assert "unknown element type 'f33'" in str(info.value)


def test_parse_reports_shape_errors_at_the_op():
    text = ("graph g(%x: f32[2, 3], %y: f32[4]) -> (%z: f32[2, 3]) {\n"
            "  %z = Add(%x, %y) : f32[2, 3]\n  return %z\n}\n")
    with pytest.raises(ParseError, match=r"<text>:2:8: Add operand 1: shape \[4\] does not "
                                         r"broadcast with \[2, 3\]"):
        parse(text)


MUTATION_ALPHABET = list("%()[]{},:=*->\"#\n 0123456789-.e") + [
    "f32", "i64", "graph", "return", "const", "dense", "none", "loc", "sha1:", "Add", "Relu",
    "batch", "inf", "nan", "opaque", "from"]


@st.composite
def mutated_texts(draw):
    text = print_graph(draw(random_graphs(max_ops=5)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate"]))
        if action == "delete":
            text = text[:i] + text[j:]
        elif action == "insert":
            text = text[:i] + draw(st.sampled_from(MUTATION_ALPHABET)) + text[i:]
        elif action == "replace":
            text = text[:i] + draw(st.sampled_from(MUTATION_ALPHABET)) + text[j:]
        elif action == "truncate":
            text = text[:i]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(max_examples=examples(400))
@given(mutated_texts())
def test_mutated_text_only_raises_parse_errors_with_a_position(text):
    try:
        g = parse(text)
    except ParseError as exc:
        assert exc.line >= 1 and exc.column >= 1
        assert f":{exc.line}:{exc.column}:" in str(exc)
    else:
        verify(g)  # whatever parses is a valid graph
