import functools
import logging

import numpy as np
import pytest
from dag_strategies import conv_bn_graphs
from hypothesis import given, settings

from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager
import passes.fold_batchnorm as fold_batchnorm_module
from passes.fold_batchnorm import FoldBatchNorm
from tensorir import DType, Graph, TensorType

F32 = DType.float32
RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)


def fold(g: Graph, feeds=None) -> dict[str, int]:
    """Run the pass; the outputs, by name, stay within float32 rounding of what they were."""
    feeds = {"x": X} if feeds is None else feeds
    result = run_and_compare(FoldBatchNorm(), g, feeds,
                             compare=functools.partial(close, rtol=1e-5))
    return {k: v for k, v in result.stats.items() if v}


def close(actual, expected, rtol):
    """Folding rounds differently: float32 rounding is relative to the terms that cancel, so
    the absolute tolerance scales with the largest value."""
    finite = np.abs(expected[np.isfinite(expected)])  # infinities must match, not set the scale
    atol = rtol * max(1.0, float(finite.max()) if finite.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def const(g, shape, low=None, name="w"):
    data = RNG.uniform(low, 1.5, shape) if low is not None else RNG.standard_normal(shape)
    return g.add_constant(g.unique_name(name), data.astype(np.float32))


def conv_bn(bias=True, group=1, epsilon=1e-5, then=None, out_channels=6):
    """x -> Conv -> BN (-> then(g, bn)) -> Relu."""
    g = Graph("t")
    x = g.add_input("x", TensorType((1, 4, 6, 6), F32))
    operands = [x, const(g, (out_channels, 4 // group, 3, 3))]
    if bias:
        operands.append(const(g, (out_channels,), name="b"))
    conv = g.add_op("Conv", operands, {"pads": [1, 1, 1, 1], "group": group}, name="conv")
    params = [const(g, (out_channels,), 0.5, "s"), const(g, (out_channels,), name="beta"),
              const(g, (out_channels,), name="mean"), const(g, (out_channels,), 0.5, "var")]
    bn = g.add_op("BatchNormalization", [conv.result, *params], {"epsilon": epsilon},
                  name="bn", source=["bn_node"]).result
    h = then(g, bn) if then else bn
    g.set_outputs([g.add_op("Relu", [h], name="out").result])
    return g


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("epsilon", [1e-5, 0.1])
def test_conv_then_batchnorm_folds_into_the_conv(bias, group, epsilon):
    g = conv_bn(bias, group, epsilon)
    assert fold(g) == {"folded": 1}
    conv, relu = g.ops
    assert conv.type == "Conv" and conv.attrs["group"] == group and len(conv.operands) == 3
    assert conv.result.name == "bn"  # it took the folded BN's place and name
    assert conv.source == ("conv", "bn_node")
    assert all(v.dtype == F32 for v in conv.operands)


def test_the_folded_weights_are_computed_in_float64():
    g = conv_bn()
    conv, bn = g.ops[0], g.ops[1]
    w, b = (v.data.astype(np.float64) for v in conv.operands[1:])
    s, beta, mean, var = (v.data.astype(np.float64) for v in bn.operands[1:])
    a = s / np.sqrt(var + np.float32(1e-5).astype(np.float64))
    fold(g)
    new = g.ops[0]
    np.testing.assert_array_equal(new.operands[1].data,
                                  (w * a[:, None, None, None]).astype(np.float32))
    np.testing.assert_array_equal(new.operands[2].data, ((b - mean) * a + beta).astype(np.float32))


@pytest.mark.parametrize("ufunc", [np.multiply, np.divide, np.add, np.subtract])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_channelwise_is_bitwise_the_float64_arithmetic_cast_back(ufunc, dtype):
    rng = np.random.default_rng(0)
    t = rng.standard_normal((64, 3, 5, 5)).astype(dtype)
    c = rng.uniform(0.1, 3.0, 64)
    expected = ufunc(t.astype(np.float64), c[:, None, None, None]).astype(dtype)
    got = fold_batchnorm_module._channelwise(ufunc, t, c, np.dtype(dtype))
    assert got.dtype == dtype and got.tobytes() == expected.tobytes()


def test_per_channel_arithmetic_after_the_bn_folds_too():
    # the Caffe2 exports among the light models: Conv -> BN -> Mul(c) -> Add(c)
    def affine(g, h):
        h = g.add_op("Mul", [h, const(g, (6, 1, 1), 0.5, "m")]).result
        h = g.add_op("Add", [const(g, (1, 6, 1, 1), name="a"), h]).result
        h = g.add_op("Div", [h, const(g, (), 0.5, "d")]).result
        return g.add_op("Sub", [h, const(g, (1,), name="e")]).result

    g = conv_bn(then=affine)
    assert fold(g) == {"folded": 1, "affine_into_conv": 4}
    assert [o.type for o in g.ops] == ["Conv", "Relu"]


def test_per_channel_arithmetic_after_a_bn_that_cannot_fold_merges_into_it():
    g = Graph("t")
    x = g.add_input("x", TensorType((1, 4, 6, 6), F32))
    params = [const(g, (4,), 0.5), const(g, (4,)), const(g, (4,)), const(g, (4,), 0.5)]
    h = g.add_op("BatchNormalization", [g.add_op("Relu", [x]).result, *params]).result
    h = g.add_op("Mul", [h, const(g, (4, 1, 1), 0.5)]).result
    h = g.add_op("Add", [h, const(g, (4, 1, 1))], name="y").result
    g.set_outputs([h])
    assert fold(g) == {"affine_into_bn": 2, "refused_not_after_conv": 1}
    assert [o.type for o in g.ops] == ["Relu", "BatchNormalization"]
    assert [v.name for v in g.outputs] == ["y"]  # a graph output keeps its name


REFUSED = {
    "used_elsewhere": lambda g: g.set_outputs([*g.outputs, g.ops[0].result]),
    "not_constant": lambda g: g.set_operand(g.ops[1], 4, g.add_op(
        "Abs", [g.ops[1].operands[4]]).result),
    "not_after_conv": lambda g: g.set_operand(g.ops[1], 0, g.add_op(
        "Relu", [g.ops[0].result]).result),
}


@pytest.mark.parametrize("reason", sorted(REFUSED))
def test_each_refusal_is_counted_with_its_reason(reason, caplog):
    g = conv_bn()
    REFUSED[reason](g)
    n = len(g)
    with caplog.at_level(logging.DEBUG, logger="passes.fold_batchnorm"):
        assert fold(g) == {f"refused_{reason}": 1}
    assert len(g) == n and "BatchNormalization 'bn' not folded" in caplog.text


@pytest.mark.parametrize("op_type, shape, data, reason", [
    ("Mul", (1, 1, 1, 6), None, "not_per_channel"),  # varies along the width
    ("Add", (2, 6, 6, 6), None, "not_per_channel"),  # broadcasts the result bigger
    ("Div", (6, 1, 1), np.array([1, 2, 0, 1, 1, 1], np.float32).reshape(6, 1, 1),
     "divides_by_zero"),
])
def test_arithmetic_that_is_not_per_channel_is_refused(op_type, shape, data, reason):
    def affine(g, h):
        c = g.add_constant("c", data if data is not None else
                           RNG.uniform(0.5, 1.5, shape).astype(np.float32))
        return g.add_op(op_type, [h, c]).result

    g = conv_bn(then=affine)
    if op_type == "Add":
        g.set_outputs([g.ops[-1].result])  # keep the bigger result an output
    assert fold(g) == {"folded": 1, f"refused_{reason}": 1}


def test_a_conv_result_used_twice_is_left_alone():
    g = Graph("t")
    x = g.add_input("x", TensorType((1, 4, 6, 6), F32))
    conv = g.add_op("Conv", [x, const(g, (4, 4, 1, 1))]).result
    y = g.add_op("Add", [conv, const(g, (4, 1, 1))]).result
    g.set_outputs([g.add_op("Mul", [y, conv]).result])
    assert fold(g) == {"refused_used_elsewhere": 1}


@settings(max_examples=examples(50))
@given(conv_bn_graphs())
def test_folding_keeps_outputs_and_the_graph_verifies(g):
    feeds = {"x": np.random.default_rng(1).standard_normal(g.inputs[0].shape).astype(np.float32)}
    n_bn = sum(o.type == "BatchNormalization" for o in g.ops)
    result = run_and_compare(PassManager("fold-batchnorm"), g, feeds,  # verifies
                             compare=functools.partial(close, rtol=1e-5))
    stats = result.records[0].stats
    left = sum(o.type == "BatchNormalization" for o in result.graph.ops)
    assert left == n_bn - stats["folded"]
    for o in result.graph.ops:  # a BN left behind a Conv is there for a reason
        if o.type == "BatchNormalization" and o.operands[0].producer is not None \
                and o.operands[0].producer.type == "Conv":
            assert stats["refused_used_elsewhere"] + stats["refused_not_constant"] > 0
