"""Each kind of bad input gives one clear, typed error; these tests show the messages."""

import pytest

from tensorir import (DType, Graph, InvalidOpError, ParseError, ShapeError, TensorIRError,
                      TensorType, UnboundDimError, UnknownOpError, VerificationError, parse, verify)
from tensorir.analysis import graph_stats

F32 = DType.float32


def test_shape_mismatch_names_op_operand_and_both_shapes():
    g = Graph("g")
    a = g.add_input("a", TensorType((2, 4), F32))
    b = g.add_input("b", TensorType((5, 3), F32))
    with pytest.raises(ShapeError) as info:
        g.add_op("MatMul", [a, b], name="fc/MatMul")
    message = str(info.value)
    assert message.startswith("MatMul 'fc/MatMul' operand 1:")
    assert "[2, 4]" in message.replace("f32", "") or "f32[2, 4]" in message
    assert "f32[5, 3]" in message
    assert isinstance(info.value, TensorIRError)


def test_unknown_op_is_named():
    g = Graph("g")
    x = g.add_input("x", TensorType((2,), F32))
    with pytest.raises(UnknownOpError, match="unknown op type 'FancyOp': it is not in the op "
                                             "registry"):
        g.add_op("FancyOp", [x])


def test_bad_attribute_and_arity_are_invalid_op_errors():
    g = Graph("g")
    x = g.add_input("x", TensorType((2,), F32))
    with pytest.raises(InvalidOpError, match="Relu: takes 1 operands, got 2"):
        g.add_op("Relu", [x, x])
    with pytest.raises(InvalidOpError, match="unknown attribute\\(s\\) alhpa"):
        g.add_op("LeakyRelu", [x], {"alhpa": 0.1})


def test_broken_text_gives_line_and_column():
    text = "graph g(%x: f32[2]) -> (%y: f32[2]) {\n  %y = Relu(%x : f32[2]\n  return %y\n}\n"
    with pytest.raises(ParseError) as info:
        parse(text)
    assert str(info.value) == "<text>:2:16: expected ',', found ':'"


def test_invalid_graph_lists_every_problem():
    g = Graph("g")
    x = g.add_input("x", TensorType((2,), F32))
    y = g.add_op("Relu", [x], name="r").result
    z = g.add_op("Neg", [y], name="n").result
    g.set_outputs([z])
    y.type = TensorType((3,), F32)   # corrupted behind the graph's back
    z.type = TensorType((2, 2), F32)
    with pytest.raises(VerificationError) as info:
        verify(g)
    assert len(info.value.problems) == 2
    assert str(info.value).splitlines()[0] == "g: 2 verification problem(s):"


def test_unbound_symbolic_dims_ask_for_a_binding():
    g = Graph("g")
    x = g.add_input("x", TensorType(("batch", 4), F32))
    g.set_outputs([g.add_op("Relu", [x]).result])
    with pytest.raises(UnboundDimError, match=r"symbolic dims \['batch'\]; bind them"):
        graph_stats(g)
    assert graph_stats(g.bind({"batch": 2})).flops == 8


def test_reshape_with_a_runtime_shape_says_it_needs_a_constant():
    g = Graph("g")
    x = g.add_input("x", TensorType((2, 3), F32))
    s = g.add_input("s", TensorType((2,), DType.int64))
    with pytest.raises(ShapeError, match="Reshape operand 1 .*must be a constant"):
        g.add_op("Reshape", [x, s])
