"""BatchNormalization, LayerNormalization, RMSNormalization, InstanceNormalization, Softmax and
LogSoftmax: evaluation against onnx.reference, type rules, FLOPs and iteration domains."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from op_harness import build_op, check_op, flops_of, onnx_reference, run_op
from tensorir import DType, Graph, ShapeError, TensorType
from tensorir.ops import Category, IterKind, get_op_def, op_context, op_domain

F32 = DType.float32


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(op_type, arrays, attrs=None, opset=21, rtol=1e-5, atol=1e-5):
    return check_op(op_type, arrays, attrs, partial(onnx_reference, opset=opset), rtol=rtol,
                    atol=atol)


def op_on(op_type, types, attrs=None):
    g = Graph("t")
    return g.add_op(op_type, [None if t is None else g.add_input(f"x{i}", t)
                              for i, t in enumerate(types)], attrs or {})


@pytest.mark.parametrize("name", ["BatchNormalization", "LayerNormalization",
                                  "RMSNormalization", "InstanceNormalization", "Softmax",
                                  "LogSoftmax"])
def test_registered_as_normalization(name):
    assert get_op_def(name).category is Category.NORMALIZATION


# ----------------------------------------------------------------------------- BatchNormalization

def bn_params(c, seed=3):
    return [rand((c,), seed), rand((c,), seed + 1), rand((c,), seed + 2),
            np.abs(rand((c,), seed + 3)) + 0.1]


@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 4, 5), {}),
    ((2, 3, 4, 5), {"epsilon": 1e-2, "momentum": 0.5}),
    ((4, 6), {}),
    ((2, 3, 5), {}),
    ((1, 2, 3, 4, 5), {"epsilon": 1e-3}),
])
def test_batchnorm_matches_reference(shape, attrs):
    check("BatchNormalization", [rand(shape, 1)] + bn_params(shape[1]), attrs)


def test_batchnorm_training_mode_and_shape_errors():
    t = TensorType((2, 3, 4, 4), F32)
    with pytest.raises(ShapeError, match="training_mode=1"):
        op_on("BatchNormalization", [t] + [TensorType((3,), F32)] * 4, {"training_mode": 1})
    with pytest.raises(ShapeError, match=r"BatchNormalization operand 3: input_mean of shape "
                                         r"\[4\] must be \[3\] \(X's channels, X is "
                                         r"f32\[2, 3, 4, 4\]\)"):
        op_on("BatchNormalization", [t] + [TensorType((3,), F32)] * 2
              + [TensorType((4,), F32), TensorType((3,), F32)])


def test_batchnorm_flops_and_domain():
    arrays = [rand((2, 3, 4, 5))] + bn_params(3)
    assert flops_of("BatchNormalization", arrays) == 2 * 120
    g, op = build_op("BatchNormalization", arrays)
    d = op_domain(op)
    assert d.reduction_dims() == ()
    assert all(m.format(d.names) == "[d1]" for m in d.inputs[1:])
    op = op_on("BatchNormalization", [TensorType(("batch", 3, 4, 4), F32)]
               + [TensorType((3,), F32)] * 4)
    assert str(op.result.type) == "f32[batch, 3, 4, 4]"
    assert get_op_def("BatchNormalization").flops(op_context(op)) == "96*batch"


# ----------------------------------------------------------------------------- LayerNormalization

LN_CASES = [
    ((2, 3, 8), -1, (8,), True),
    ((2, 3, 8), -1, (8,), False),
    ((2, 3, 4, 5), -2, (4, 5), True),
    ((2, 3, 4, 5), 1, (3, 4, 5), True),
    ((2, 3, 4, 5), 0, (1, 1, 1, 5), False),   # broadcast Scale
    ((2, 3, 4, 5), 2, (1, 5), True),
    ((6,), 0, (6,), True),
]


@pytest.mark.parametrize("shape,axis,scale,bias", LN_CASES)
def test_layernorm_matches_reference(shape, axis, scale, bias):
    arrays = [rand(shape, 1), rand(scale, 2)] + ([rand(scale, 3)] if bias else [])
    check("LayerNormalization", arrays, {"axis": axis, "epsilon": 1e-3})


def test_layernorm_float16_and_stash_types():
    x, s, b = rand((3, 16), 1) * 4 + 2, rand((16,), 2), rand((16,), 3)
    (h,) = run_op("LayerNormalization", [x.astype(np.float16), s.astype(np.float16),
                                         b.astype(np.float16)])
    assert h.dtype == np.float16
    (f,) = run_op("LayerNormalization", [x, s, b])
    np.testing.assert_allclose(h.astype(np.float32), f, rtol=1e-2, atol=1e-2)
    # stash_type 11 (double) computes the statistics in float64
    x64 = rand((3, 16), 1).astype(np.float64) + 1e4
    (d,) = run_op("LayerNormalization", [x64, np.ones(16), np.zeros(16)], {"stash_type": 11})
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(d, want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ShapeError, match="stash_type must be one of"):
        op_on("LayerNormalization", [TensorType((3, 4), F32), TensorType((4,), F32)],
              {"stash_type": 7})


def test_layernorm_errors():
    with pytest.raises(ShapeError, match=r"LayerNormalization operand 1: Scale of shape \[5\] "
                                         r"does not broadcast to X's shape \[2, 8\]"):
        op_on("LayerNormalization", [TensorType((2, 8), F32), TensorType((5,), F32)])
    with pytest.raises(ShapeError, match=r"axis 2 is out of range for rank 2"):
        op_on("LayerNormalization", [TensorType((2, 8), F32), TensorType((8,), F32)],
              {"axis": 2})
    with pytest.raises(ShapeError, match=r"operand 0: expects a floating-point operand"):
        op_on("LayerNormalization", [TensorType((2, 8), DType.int32),
                                     TensorType((8,), DType.int32)])


def test_layernorm_flops_and_domain():
    x, s, b = rand((2, 3, 4, 5)), rand((4, 5)), rand((5,))
    assert flops_of("LayerNormalization", [x, s, b], {"axis": -2}) == 7 * 120
    assert flops_of("LayerNormalization", [x, s], {"axis": -2}) == 6 * 120
    g, op = build_op("LayerNormalization", [x, s, b], {"axis": -2})
    d = op_domain(op)
    assert [dim.kind for dim in d.dims] == [IterKind.PARALLEL] * 2 + [IterKind.REDUCTION] * 2
    assert d.inputs[1].format(d.names) == "[d2, d3]"
    assert d.inputs[2].format(d.names) == "[d3]"
    assert d.outputs[0].format(d.names) == "[d0, d1, d2, d3]"
    op = op_on("LayerNormalization", [TensorType(("batch", "seq", 768), F32),
                                      TensorType((768,), F32), TensorType((768,), F32)])
    assert str(op.result.type) == "f32[batch, seq, 768]"
    assert get_op_def("LayerNormalization").flops(op_context(op)) == "5376*batch*seq"


# ----------------------------------------------------------------------------- RMSNormalization

def _reference_supports_rms() -> bool:
    try:
        from onnx import helper
        ReferenceEvaluator(helper.make_node("RMSNormalization", ["x", "s"], ["y"]),
                           opsets={"": 23})
        return True
    except Exception:
        return False


def rms_spec(x, scale, axis=-1, epsilon=1e-5):
    axes = tuple(range(axis % x.ndim, x.ndim))
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=axes, keepdims=True) + epsilon) * scale


RMS_CASES = [((2, 3, 8), -1, (8,)), ((2, 3, 4, 5), -2, (4, 5)), ((2, 3, 4, 5), 1, (3, 1, 5)),
             ((2, 6), 0, (6,))]


@pytest.mark.parametrize("shape,axis,scale", RMS_CASES)
def test_rmsnorm_matches_reference(shape, axis, scale):
    arrays = [rand(shape, 1), rand(scale, 2)]
    attrs = {"axis": axis, "epsilon": 1e-3}
    if _reference_supports_rms():
        check("RMSNormalization", arrays, attrs, opset=23)
    (ours,) = run_op("RMSNormalization", arrays, attrs)
    np.testing.assert_allclose(ours, rms_spec(*arrays, axis=axis, epsilon=1e-3),
                               rtol=1e-5, atol=1e-5)


def test_rmsnorm_flops_domain_and_errors():
    x, s = rand((2, 3, 8)), rand((8,))
    assert flops_of("RMSNormalization", [x, s]) == 4 * 48
    g, op = build_op("RMSNormalization", [x, s])
    d = op_domain(op)
    assert d.reduction_dims() == (2,)
    assert d.inputs[1].format(d.names) == "[d2]"
    with pytest.raises(ShapeError, match=r"RMSNormalization operand 1: scale of shape \[3\] "
                                         r"does not broadcast to X's shape \[2, 3, 8\]"):
        op_on("RMSNormalization", [TensorType((2, 3, 8), F32), TensorType((3,), F32)])


# ----------------------------------------------------------------------------- InstanceNormalization

@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 7), (1, 2, 3, 4, 5)])
def test_instancenorm_matches_reference(shape):
    check("InstanceNormalization", [rand(shape, 1), rand(shape[1:2], 2), rand(shape[1:2], 3)],
          {"epsilon": 1e-3}, rtol=1e-4, atol=1e-5)


def test_instancenorm_flops_domain_and_errors():
    arrays = [rand((2, 3, 4, 5)), rand((3,)), rand((3,))]
    assert flops_of("InstanceNormalization", arrays) == 7 * 120
    g, op = build_op("InstanceNormalization", arrays)
    d = op_domain(op)
    assert d.reduction_dims() == (2, 3)
    assert d.inputs[1].format(d.names) == "[d1]"
    with pytest.raises(ShapeError, match=r"InstanceNormalization operand 2: B of shape \[4\] "
                                         r"must be \[3\]"):
        op_on("InstanceNormalization", [TensorType((2, 3, 4, 5), F32), TensorType((3,), F32),
                                        TensorType((4,), F32)])


# ----------------------------------------------------------------------------- Softmax

@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,attrs", [((2, 3, 5), {}), ((2, 3, 5), {"axis": 1}),
                                         ((2, 3, 5), {"axis": -3}), ((7,), {}),
                                         ((2, 3, 4, 5), {"axis": 2})])
def test_softmax_matches_reference(op_type, shape, attrs):
    check(op_type, [rand(shape, 1) * 10], attrs)


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax_is_stable_and_float16(op_type):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], np.float32)
    (y,) = run_op(op_type, [x])
    assert np.all(np.isfinite(y))
    (h,) = run_op(op_type, [x.astype(np.float16)])
    assert h.dtype == np.float16
    np.testing.assert_allclose(h.astype(np.float32), y, rtol=1e-2, atol=1e-2)


def test_softmax_flops_domain_and_errors():
    x = rand((2, 3, 5))
    assert flops_of("Softmax", [x], {"axis": 1}) == 5 * 30
    assert flops_of("LogSoftmax", [x]) == 5 * 30
    g, op = build_op("Softmax", [x], {"axis": 1})
    d = op_domain(op)
    assert d.reduction_dims() == (1,)
    assert d.inputs[0] == d.outputs[0]
    with pytest.raises(ShapeError, match=r"Softmax: axis 3 is out of range for rank 3"):
        op_on("Softmax", [TensorType((2, 3, 5), F32)], {"axis": 3})
    op = op_on("Softmax", [TensorType(("batch", 12, "seq", "seq"), F32)])
    assert get_op_def("Softmax").flops(op_context(op)) == "60*batch*seq*seq"
