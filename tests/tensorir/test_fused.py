import numpy as np
import pytest

from frontends.python import GraphBuilder
from tensorir import (GraphError, ShapeError, TensorType, VerificationError, interpret, parse,
                      print_graph, structural_diff, verify)
from tensorir.ops import op_domain, op_flops


def mlp_graph(batch="batch"):
    b = GraphBuilder("t", seed=0)
    x = b.input("x", [batch, 8])
    y = b.relu(b.linear(x, 8, 4, "fc"))
    return b.build(b.neg(y))


def test_fuse_keeps_results_names_and_provenance():
    g = mlp_graph()
    xs = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    before = interpret(g, {"x": xs})["neg"]
    fused = g.fuse(g.ops[:3], "fused.matmul")
    verify(g)
    assert [op.type for op in g.ops] == ["fused.matmul", "Neg"]
    assert fused.results[0].name == "relu" and fused.source == ("fc/mat_mul", "fc/add", "relu")
    assert [v.name for v in fused.operands] == ["x", "fc/weight", "fc/bias"]  # weights included
    np.testing.assert_array_equal(interpret(g, {"x": xs})["neg"], before)


def test_fused_facts_come_from_the_body():
    g = mlp_graph()
    fused = g.fuse(g.ops[:3], "fused.matmul")
    assert op_flops(fused) == "72*batch"  # 2*8*4 multiply-adds + 4 adds + 4 relus per row
    domain = op_domain(fused)
    assert domain.format() == "domain(m=batch, n=4, k=8(red)) ins([m, k]; [k, n]; [n]) outs([m, n])"


def test_fused_op_prints_parses_and_binds():
    g = mlp_graph()
    g.fuse(g.ops[:3], "fused.matmul")
    text = print_graph(g)
    assert "body = graph relu(%x: f32[batch, 8]" in text
    back = parse(text)
    assert structural_diff(back, g) is None and print_graph(back) == text
    bound = g.bind({"batch": 5})
    verify(bound)
    assert str(bound.outputs[0].type) == "f32[5, 4]" and op_flops(bound.ops[0]) == 360


def test_fused_operand_mismatch_is_a_shape_error_and_body_problems_are_verified():
    g = mlp_graph(batch=2)
    fused = g.fuse(g.ops[:3], "fused.matmul")
    other = g.add_input("y", TensorType((2, 9), g.inputs[0].dtype))
    with pytest.raises(ShapeError, match="fused.matmul operand 0: body input %x is "
                                         "f32\\[2, 8\\]"):
        g.add_op("fused.matmul", [other] + fused.operands[1:], {"body": fused.attrs["body"]})
    body = fused.attrs["body"]
    body.ops[0].results[0].type = TensorType((7,), body.inputs[0].dtype)
    with pytest.raises(VerificationError, match="fused.matmul 'relu' -> %relu: body: MatMul"):
        verify(g)


def test_fuse_refuses_an_empty_set():
    with pytest.raises(GraphError, match="no ops given"):
        mlp_graph().fuse([], "fused.elementwise")


def test_fusing_the_graph_output_keeps_its_name():
    g = mlp_graph(batch=2)
    xs = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    before = interpret(g, {"x": xs})["neg"]
    g.fuse(g.ops, "fused.matmul")
    verify(g)
    assert [v.name for v in g.outputs] == ["neg"] and len(g) == 1
    np.testing.assert_array_equal(interpret(g, {"x": xs})["neg"], before)
