import numpy as np
import pytest

from tensorir import DType, Graph, TensorType, VerificationError, verify

F32 = DType.float32


def test_verifier_lists_every_problem_each_naming_its_op():
    g = Graph("broken")
    x = g.add_input("x", TensorType((2, 3), F32))
    a = g.add_op("Relu", [x], name="relu1").result
    b = g.add_op("Add", [a, x], name="add1").result
    c = g.add_op("Relu", [b], name="relu2").result
    g.set_outputs([c])
    # corrupt the graph behind the Graph methods' back, three different ways
    x.type = TensorType((2, 4), F32)                      # every result type is now stale
    b.producer.operands[1] = a                            # operand list and edges disagree
    c.type = TensorType((9,), F32)
    with pytest.raises(VerificationError) as info:
        verify(g)
    problems = info.value.problems
    text = str(info.value)
    assert "Relu 'relu1' -> %relu1: result %relu1 is f32[2, 3] but the type rule gives " \
           "f32[2, 4]" in text
    assert any("Add 'add1'" in p and "operand 1 %relu1 has no edge" in p for p in problems)
    assert any("Relu 'relu2'" in p and "f32[9]" in p for p in problems)
    assert len(problems) >= 3


def test_verifier_checks_constant_data_against_type():
    g = Graph("c")
    w = g.add_constant("w", np.zeros((2, 2), np.float32))
    g.set_outputs([g.add_op("Relu", [w]).result])
    w.data = np.zeros((3,), np.float64)
    with pytest.raises(VerificationError, match=r"constant %w: data is float64\[3\], type says "
                                                r"f32\[2, 2\]"):
        verify(g)


def test_verifier_detects_a_cycle():
    g = Graph("cyc")
    x = g.add_input("x", TensorType((2,), F32))
    a = g.add_op("Relu", [x], name="a").result
    b = g.add_op("Relu", [a], name="b").result
    g.set_outputs([b])
    a.producer.operands[0] = b           # close a loop behind the graph's back
    g.nx.add_edge(b, a.producer, key=0)
    with pytest.raises(VerificationError, match="cycle"):
        verify(g)


def test_a_valid_graph_verifies():
    g = Graph("ok")
    x = g.add_input("x", TensorType(("batch", 3), F32))
    g.set_outputs([g.add_op("Relu", [x]).result])
    verify(g)
