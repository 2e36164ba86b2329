"""Reductions: evaluation against onnx.reference and NumPy, types, domains, FLOPs, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_harness import (assert_results_match, build_op, flops_of, i64, onnx_reference, run_op,
                        shape_and_axes)
from tensorir import DType, Graph, TensorType
from tensorir.errors import ShapeError, UnboundDimError
from tensorir.ops import Category, IterKind, get_op_def, op_domain, op_flops

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
              "ReduceSumSquare", "ReduceL2"]


def _data(op: str, shape=(2, 3, 4), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if op == "ReduceProd":  # keep products of many factors near 1
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _check(ours: list, ref: list) -> None:
    assert_results_match(ours, ref, rtol=1e-5, atol=1e-6)


AXES_CASES = [
    pytest.param(None, 0, 1, id="no-axes"),
    pytest.param(None, 1, 0, id="no-axes-keep0"),
    pytest.param(None, 1, 1, id="no-axes-noop"),
    pytest.param(i64(), 0, 1, id="empty-axes"),
    pytest.param(i64(), 1, 0, id="empty-axes-noop"),
    pytest.param(i64(1), 0, 1, id="axis1"),
    pytest.param(i64(1), 0, 0, id="axis1-keep0"),
    pytest.param(i64(-1, 0), 0, 1, id="neg-axes"),
    pytest.param(i64(-1, 0), 0, 0, id="neg-axes-keep0"),
    pytest.param(i64(0, 1, 2), 0, 0, id="all-axes-keep0"),
]


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes, noop, keepdims", AXES_CASES)
def test_reduce_matches_onnx_reference(op: str, axes, noop: int, keepdims: int) -> None:
    x = _data(op)
    attrs = {"keepdims": keepdims, "noop_with_empty_axes": noop}
    arrays = [x] if axes is None else [x, axes]
    _check(run_op(op, arrays, attrs, const_inputs=[1]), onnx_reference(op, arrays, attrs))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
def test_reduce_integer_operand_keeps_dtype(op: str) -> None:
    x = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    arrays = [x, i64(1)]
    _check(run_op(op, arrays, {}, const_inputs=[1]), onnx_reference(op, arrays, {}))


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare",
                                "ReduceL2", "ReduceProd"])
def test_reduce_over_empty_set(op: str) -> None:
    x = np.zeros((2, 0, 3), dtype=np.float32)
    arrays = [x, i64(1)]
    (ours,) = run_op(op, arrays, {"keepdims": 0}, const_inputs=[1])
    (ref,) = onnx_reference(op, arrays, {"keepdims": 0})
    assert ours.shape == (2, 3)
    np.testing.assert_array_equal(ours, ref)


def test_reduce_mean_of_empty_set_is_nan() -> None:
    (ours,) = run_op("ReduceMean", [np.zeros((0, 3), np.float32), i64(0)], {},
                     const_inputs=[1])
    assert ours.shape == (1, 3) and np.isnan(ours).all()


def test_reduce_max_bool() -> None:
    x = np.array([[True, False], [False, False]])
    (ours,) = run_op("ReduceMax", [x, i64(1)], {"keepdims": 0}, const_inputs=[1])
    np.testing.assert_array_equal(ours, [True, False])


def test_reduce_half_precision_accumulates_in_float32() -> None:
    x = np.full(4096, 0.1, dtype=np.float16)
    (ours,) = run_op("ReduceSum", [x], {"keepdims": 0})
    assert ours.dtype == np.float16
    # a float16 running sum would stall far below 409.6 (float16 spacing there is 0.25)
    assert abs(float(ours) - 4096 * float(np.float16(0.1))) < 0.5


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_arg_matches_onnx_reference(op: str, axis: int, keepdims: int, last: int) -> None:
    # small integers give ties, so select_last_index matters
    x = np.random.default_rng(1).integers(0, 3, (3, 4, 5)).astype(np.float32)
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    _check(run_op(op, [x], attrs), onnx_reference(op, [x], attrs))


def test_arg_select_last_index_on_ties() -> None:
    x = np.array([[1, 5, 5, 0]], dtype=np.float32)
    assert run_op("ArgMax", [x], {"axis": 1, "keepdims": 0})[0].tolist() == [1]
    assert run_op("ArgMax", [x], {"axis": 1, "keepdims": 0,
                                  "select_last_index": 1})[0].tolist() == [2]
    assert run_op("ArgMin", [x], {"axis": 1})[0].dtype == np.int64


_NUMPY = {
    "ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min,
    "ReduceProd": np.prod,
    "ReduceSumSquare": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "ReduceL2": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
}


@st.composite
def _reduce_case(draw):
    shape, axes = draw(shape_and_axes(min_dim=1, max_dim=4))
    return shape, axes, draw(st.sampled_from([0, 1])), draw(st.sampled_from(REDUCE_OPS))


@settings(max_examples=80, deadline=None)
@given(_reduce_case())
def test_reduce_random_axes_equal_numpy(case) -> None:
    shape, axes, keepdims, op = case
    x = _data(op, shape, seed=len(shape))
    (ours,) = run_op(op, [x, i64(*axes)], {"keepdims": keepdims}, const_inputs=[1])
    expected = _NUMPY[op](x.astype(np.float64), axis=tuple(axes), keepdims=bool(keepdims))
    assert ours.shape == np.shape(expected)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- types, symbols, domains


def _graph_op(op: str, shape, axes=None, **attrs):
    g = Graph()
    x = g.add_input("x", TensorType(shape, DType.float32))
    operands = [x] if axes is None else [x, g.add_constant("axes", i64(*axes))]
    return g.add_op(op, operands, attrs)


def test_symbolic_reduce_keeps_symbols() -> None:
    op = _graph_op("ReduceMean", ("batch", 196, 512), [-1], keepdims=0)
    assert str(op.result.type) == "f32[batch, 196]"
    op = _graph_op("ReduceSum", ("batch", 196, 512), [0])
    assert str(op.result.type) == "f32[1, 196, 512]"


def test_reduce_domain_keepdims_maps_to_zero() -> None:
    d = op_domain(_graph_op("ReduceSum", (2, 3, 4), [1]))
    assert [k.kind for k in d.dims] == [IterKind.PARALLEL, IterKind.REDUCTION, IterKind.PARALLEL]
    assert d.extents == (2, 3, 4)
    assert d.format() == "domain(d0=2, d1=3(red), d2=4) ins([d0, d1, d2]) outs([d0, 0, d2])"


def test_reduce_domain_drops_reduced_dims() -> None:
    d = op_domain(_graph_op("ReduceMax", (2, 3, 4), [0, 2], keepdims=0))
    assert d.reduction_dims() == (0, 2)
    assert d.outputs[0].format(d.names) == "[d1]"
    assert d.outputs[0].evaluate((1, 2, 3)) == (2,)


def test_noop_reduce_domain_is_parallel_identity() -> None:
    d = op_domain(_graph_op("ReduceSum", (2, 3), [], noop_with_empty_axes=1))
    assert d.reduction_dims() == () and d.outputs[0].format(d.names) == "[d0, d1]"


def test_argmax_domain() -> None:
    d = op_domain(_graph_op("ArgMax", (2, 3, 4), axis=-1, keepdims=0))
    assert d.reduction_dims() == (2,) and d.outputs[0].format(d.names) == "[d0, d1]"


@pytest.mark.parametrize("op, attrs, axes, expected", [
    ("ReduceSum", {}, [1], 24),                         # one add per element
    ("ReduceMax", {"keepdims": 0}, [0, 2], 24),
    ("ReduceMean", {}, [1], 24 + 8),                    # + one divide per result (2*4)
    ("ReduceMean", {}, None, 24 + 1),
    ("ReduceSumSquare", {}, [2], 48),                   # square + add
    ("ReduceL2", {}, [2], 48 + 6),                      # + one sqrt per result (2*3)
    ("ReduceSum", {"noop_with_empty_axes": 1}, [], 0),  # identity
    ("ReduceSumSquare", {"noop_with_empty_axes": 1}, None, 24),  # squares only
    ("ReduceL2", {"noop_with_empty_axes": 1}, None, 48),         # square + sqrt
    ("ArgMax", {"axis": 1}, None, 24),                  # one compare per element
])
def test_reduce_flops(op: str, attrs: dict, axes, expected: int) -> None:
    x = np.zeros((2, 3, 4), np.float32)
    arrays = [x] if axes is None else [x, i64(*axes)]
    assert flops_of(op, arrays, attrs, const_inputs=[1]) == expected


def test_reduce_flops_symbolic() -> None:
    assert op_flops(_graph_op("ReduceSum", ("batch", 196, 512), [0])) == "100352*batch"
    # 196*512 adds + 512 divides per batch entry
    assert op_flops(_graph_op("ReduceMean", ("batch", 196, 512), [1])) == "100864*batch"
    with pytest.raises(UnboundDimError, match="batch"):  # numel + out is not a product
        op_flops(_graph_op("ReduceMean", ("batch", 196, 512), [0]))


def test_categories() -> None:
    for op in REDUCE_OPS + ["ArgMax", "ArgMin"]:
        assert get_op_def(op).category is Category.REDUCTION


# ---------------------------------------------------------------- errors


def test_axis_out_of_range_names_op_and_shape() -> None:
    with pytest.raises(ShapeError) as e:
        _graph_op("ReduceSum", (2, 3, 4), [3])
    msg = str(e.value)
    assert "ReduceSum" in msg and "axis 3 is out of range for rank 3" in msg
    assert "f32[2, 3, 4]" in msg


def test_repeated_axes_rejected() -> None:
    with pytest.raises(ShapeError, match=r"ReduceMean operand 1: axes \[1, -2\] name a dim twice"):
        _graph_op("ReduceMean", (2, 3, 4), [1, -2])


def test_runtime_axes_need_a_constant() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3), DType.float32))
    axes = g.add_input("axes", TensorType((1,), DType.int64))
    with pytest.raises(ShapeError, match=r"ReduceSum operand 1 \(axes\): must be a constant"):
        g.add_op("ReduceSum", [x, axes])


def test_float_axes_rejected() -> None:
    with pytest.raises(ShapeError, match=r"ReduceSum operand 1: axes must be int64, got f32\[1\]"):
        build_op("ReduceSum", [np.zeros((2, 3), np.float32), np.zeros(1, np.float32)],
                 const_inputs=[1])


def test_bool_sum_rejected() -> None:
    with pytest.raises(ShapeError, match=r"ReduceSum operand 0: expects a numeric operand, "
                                         r"got bool\[2\]"):
        build_op("ReduceSum", [np.zeros(2, bool)])


def test_argmax_axis_out_of_range() -> None:
    with pytest.raises(ShapeError,
                       match=r"ArgMax: axis -4 is out of range for rank 3.*f32\[2, 3, 4\]"):
        _graph_op("ArgMax", (2, 3, 4), axis=-4)
