"""Shape and constant ops: onnx.reference, symbolic shapes, domains, errors."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from op_harness import assert_results_match, build_op, flops_of, i64, onnx_reference, run_op
from tensorir import DType, Graph, TensorType
from tensorir.errors import InvalidOpError, ShapeError
from tensorir.ops import Category, get_op_def, op_context, op_domain

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def _check(ours: list, ref: list) -> None:
    assert_results_match(ours, ref, rtol=1e-6)


@pytest.mark.parametrize("attrs", [
    {}, {"start": 1}, {"start": -2}, {"end": -1}, {"start": 1, "end": -1}, {"start": -10},
    {"end": 10}, {"start": 2, "end": 1}, {"start": 0, "end": 0},
])
def test_shape_matches_onnx_reference(attrs: dict) -> None:
    _check(run_op("Shape", [X], attrs), onnx_reference("Shape", [X], attrs))


@pytest.mark.parametrize("x", [X, np.float32(2.0), np.zeros((3, 0), np.int32)])
def test_shape_and_size_of_any_rank(x: np.ndarray) -> None:
    _check(run_op("Shape", [x]), onnx_reference("Shape", [x]))
    _check(run_op("Size", [x]), onnx_reference("Size", [x]))


@pytest.mark.parametrize("attrs", [
    {"value": np.array([[1.5, -2.0], [3.0, 4.0]], np.float32)},
    {"value": np.array([7, 8, 9], np.int32)},
    {"value": np.array(True)},
    {"value": np.zeros((0, 2), np.float64)},
    {"value_float": 2.5},
    {"value_int": -3},
    {"value_floats": [1.0, 2.5]},
    {"value_ints": [4, 5, 6]},
])
def test_constant_matches_onnx_reference(attrs: dict) -> None:
    _check(run_op("Constant", [], attrs), onnx_reference("Constant", [], attrs))


@pytest.mark.parametrize("shape, attrs", [
    (i64(2, 3), {}),
    (i64(2, 3), {"value": np.array([5], np.int32)}),
    (i64(4), {"value": np.array([-1.25], np.float64)}),
    (i64(), {"value": np.array([3], np.int64)}),     # scalar result
    (i64(2, 0), {}),
])
def test_constant_of_shape_matches_onnx_reference(shape: np.ndarray, attrs: dict) -> None:
    _check(run_op("ConstantOfShape", [shape], attrs, const_inputs=[0]),
           onnx_reference("ConstantOfShape", [shape], attrs))


@pytest.mark.parametrize("start, limit, delta", [
    (0, 5, 1), (1, 10, 3), (10, -7, -3), (5, 5, 1), (5, 0, 1), (-2, 3, 2),
    (np.float32(1.0), np.float32(5.5), np.float32(0.5)),
    (np.float32(0.0), np.float32(1.0), np.float32(0.1)),
    (np.float64(3.0), np.float64(-1.0), np.float64(-0.75)),
    (np.int32(2), np.int32(11), np.int32(4)),
])
def test_range_matches_onnx_reference(start, limit, delta) -> None:
    dtype = np.asarray(start).dtype if isinstance(start, np.generic) else np.int64
    arrays = [np.array(v, dtype=dtype) for v in (start, limit, delta)]
    _check(run_op("Range", arrays, const_inputs=[0, 1, 2]), onnx_reference("Range", arrays))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_range_of_half_precision_scalars_matches_onnx_reference_opset_27(dtype) -> None:
    # opset 27 added float16 and bfloat16 (onnx's test_range_float16_type_positive_delta)
    arrays = [np.array(v, dtype=dtype) for v in (1.0, 5.0, 0.5)]
    (ours,) = run_op("Range", arrays, const_inputs=[0, 1, 2])
    assert ours.dtype == dtype and ours.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    assert_results_match([ours], onnx_reference("Range", arrays, opset=27))


def test_range_lengths_by_hand() -> None:
    def length(*v: int) -> int:
        return run_op("Range", [np.array(a) for a in v], const_inputs=[0, 1, 2])[0].shape[0]
    assert length(0, 10, 3) == 4    # 0 3 6 9
    assert length(10, 0, -4) == 3   # 10 6 2
    assert length(0, -5, 1) == 0


def test_constant_result_does_not_alias_the_attribute() -> None:
    value = np.array([1.0, 2.0], np.float32)
    g, node = build_op("Constant", [], {"value": value})
    (out,) = get_op_def("Constant").evaluate(op_context(node), [])
    out[0] = 99
    assert node.attrs["value"][0] == 1.0


# ---------------------------------------------------------------- symbolic shapes and domains


def test_shape_of_symbolic_tensor_has_static_type() -> None:
    g = Graph()
    x = g.add_input("x", TensorType(("batch", 196, 512), DType.float32))
    assert str(g.add_op("Shape", [x]).result.type) == "i64[3]"
    assert str(g.add_op("Shape", [x], {"start": 1}).result.type) == "i64[2]"
    assert str(g.add_op("Size", [x]).result.type) == "i64[]"
    # evaluation reports the bound sizes
    node = g.add_op("Shape", [x], {"end": 2})
    (out,) = get_op_def("Shape").evaluate(op_context(node), [np.zeros((5, 196, 512), np.float32)])
    assert out.tolist() == [5, 196] and out.dtype == np.int64


def test_domains() -> None:
    node = build_op("Range", [np.array(0), np.array(10), np.array(3)], const_inputs=[0, 1, 2])[1]
    d = op_domain(node)
    assert d.extents == (4,) and d.outputs[0].format(d.names) == "[d0]"
    assert all(m.format(d.names) == "[]" for m in d.inputs)   # scalars
    d = op_domain(build_op("Shape", [X])[1])
    assert d.extents == (3,) and d.inputs == (None,)
    d = op_domain(build_op("ConstantOfShape", [i64(2, 5)], const_inputs=[0])[1])
    assert d.extents == (2, 5) and d.inputs == (None,)
    d = op_domain(build_op("Constant", [], {"value_ints": [1, 2, 3]})[1])
    assert d.extents == (3,) and d.inputs == ()


def test_zero_flops_and_category() -> None:
    for op in ["Shape", "Size", "Constant", "ConstantOfShape", "Range"]:
        assert get_op_def(op).category is Category.SHAPE
    assert flops_of("Shape", [X]) == 0
    assert flops_of("Range", [np.array(0), np.array(100), np.array(1)],
                    const_inputs=[0, 1, 2]) == 0
    assert flops_of("ConstantOfShape", [i64(64, 64)], const_inputs=[0]) == 0


# ---------------------------------------------------------------- errors


def _fails(op: str, arrays: list, attrs: dict | None = None, const=(), exc=ShapeError) -> str:
    with pytest.raises(exc) as e:
        build_op(op, arrays, attrs, const_inputs=const)
    return str(e.value)


def test_runtime_shape_operands_need_constants() -> None:
    assert "Range operand 1 (limit): must be a constant" in _fails(
        "Range", [np.array(0), np.array(5), np.array(1)], const=[0, 2])
    assert "ConstantOfShape operand 0 (shape): must be a constant" in _fails(
        "ConstantOfShape", [i64(2, 3)])


def test_range_errors() -> None:
    msg = _fails("Range", [np.array(0), np.array(5, np.int32), np.array(1)], const=[0, 1, 2])
    assert msg.startswith("Range operand 1: limit is i32[] but start is i64[]")
    assert "Range operand 2: delta is 0" in _fails(
        "Range", [np.array(0), np.array(5), np.array(0)], const=[0, 1, 2])
    assert "Range operand 0: start must be a scalar, got i64[2]" in _fails(
        "Range", [i64(0, 1), np.array(5), np.array(1)], const=[0, 1, 2])


def test_constant_errors() -> None:
    assert "needs exactly one of the attributes" in _fails(
        "Constant", [], {"value_int": 1, "value_float": 2.0})
    assert "got none" in _fails("Constant", [])
    assert "must be a NumPy array" in _fails("Constant", [], {"value": 3})
    with pytest.raises(InvalidOpError, match="unknown attribute"):
        build_op("Constant", [], {"value_string": "x"})


def test_constant_of_shape_errors() -> None:
    assert "ConstantOfShape operand 0: shape [2, -1] has a negative size" in _fails(
        "ConstantOfShape", [i64(2, -1)], const=[0])
    assert "1-element NumPy array" in _fails(
        "ConstantOfShape", [i64(2)], {"value": np.array([1, 2], np.int64)}, const=[0])
    assert "shape must be an int64 tensor, got f32[2]" in _fails(
        "ConstantOfShape", [np.array([2, 3], np.float32)], const=[0])
