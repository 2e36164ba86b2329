"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool and LRN: evaluation against
onnx.reference (onnxruntime or the spec's formula where the reference is known to be wrong),
type rules, FLOPs and iteration domains."""

from __future__ import annotations

import numpy as np
import pytest

from op_harness import build_op, check_op, flops_of, onnx_reference, ort_reference, run_op
from tensorir import DType, Graph, InvalidOpError, ShapeError, TensorType, UnboundDimError
from tensorir.ops import Category, IterKind, get_op_def, op_context, op_domain

F32 = DType.float32


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(op_type, arrays, attrs=None, ref=onnx_reference, rtol=1e-5, atol=1e-6):
    return check_op(op_type, arrays, attrs, ref, rtol=rtol, atol=atol)


def op_on(op_type, types, attrs=None):
    g = Graph("t")
    return g.add_op(op_type, [g.add_input(f"x{i}", t) for i, t in enumerate(types)], attrs or {})


@pytest.mark.parametrize("name", ["MaxPool", "AveragePool", "GlobalAveragePool",
                                  "GlobalMaxPool", "LRN"])
def test_registered_as_pooling(name):
    assert get_op_def(name).category is Category.POOLING


# ----------------------------------------------------------------------------- window pools

POOL_CASES = [
    ((2, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 1, 2, 0]}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1, 1, 1, 1],
                    "ceil_mode": 1}),  # the last ceil window would start in the padding
    ((1, 2, 10, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 1],
                     "pads": [1, 0, 1, 2], "ceil_mode": 1}),
    ((1, 2, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 9, 8), {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),           # 1-D
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2],
                       "pads": [0, 1, 1, 1, 1, 0]}),                                 # 3-D
]


@pytest.mark.parametrize("shape,attrs", POOL_CASES)
def test_maxpool_matches_reference(shape, attrs):
    check("MaxPool", [rand(shape, 1)], attrs)


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("shape,attrs", POOL_CASES)
def test_averagepool_matches_reference(shape, attrs, include):
    check("AveragePool", [rand(shape, 1)], {**attrs, "count_include_pad": include})


@pytest.mark.parametrize("op_type,attrs", [
    # onnx.reference's MaxPool gets SAME_LOWER's size wrong once strides are not 1
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "SAME_LOWER",
                     "count_include_pad": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                 "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                     "ceil_mode": 1, "count_include_pad": 1}),
])
def test_pools_match_onnxruntime(op_type, attrs):
    check(op_type, [rand((2, 3, 9, 8), 1)], attrs, ref=ort_reference)


def test_maxpool_integers_and_padding_never_wins():
    x = -np.arange(1, 2 * 25 + 1, dtype=np.int8).reshape(1, 2, 5, 5)
    (y,) = run_op("MaxPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    assert y.dtype == np.int8 and y.max() < 0   # padding (-128) never beats -1
    (f,) = run_op("MaxPool", [x.astype(np.float32)], {"kernel_shape": [3, 3],
                                                      "pads": [1, 1, 1, 1]})
    np.testing.assert_array_equal(y, f.astype(np.int8))


def test_averagepool_counts():
    x = np.ones((1, 1, 4, 4), np.float32)
    # excluding padding, a mean of ones is one everywhere
    (y,) = run_op("AveragePool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    np.testing.assert_allclose(y, 1.0)
    # including it, a corner window sees 4 ones among 9 positions
    (y,) = run_op("AveragePool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                       "count_include_pad": 1})
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9) and y[0, 0, 1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("attrs,out", [
    ({"kernel_shape": [3, 3], "strides": [2, 2]}, (3, 3)),
    ({"kernel_shape": [2, 2], "strides": [2, 2]}, (3, 3)),
    ({"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, (4, 4)),
    # floor mode keeps a window that starts in the end padding (the formula says so) ...
    ({"kernel_shape": [1, 1], "strides": [2, 2], "pads": [0, 0, 2, 2]}, (5, 5)),
    # ... ceil mode drops it
    ({"kernel_shape": [1, 1], "strides": [2, 2], "pads": [0, 0, 2, 2], "ceil_mode": 1},
     (4, 4)),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER", "ceil_mode": 1},
     (4, 4)),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID", "ceil_mode": 1}, (3, 3)),
])
def test_pool_output_sizes(attrs, out):
    op = op_on("MaxPool", [TensorType(("n", "c", 7, 7), F32)], attrs)
    assert op.result.type.shape == ("n", "c") + out


def test_pool_flops_and_domain():
    x = rand((1, 64, 112, 112))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    # ResNet-50's max pool: one compare per window element, padding included
    assert flops_of("MaxPool", [x], attrs) == 64 * 56 * 56 * 9
    assert flops_of("AveragePool", [x], attrs) == 64 * 56 * 56 * (9 + 1)
    g, op = build_op("MaxPool", [x], attrs)
    d = op_domain(op)
    assert d.names == ("n", "c", "oh", "ow", "kh", "kw")
    assert d.reduction_dims() == (4, 5)
    assert d.inputs[0].format(d.names) == "[n, c, 2*oh + kh - 1, 2*ow + kw - 1]"
    assert d.outputs[0].format(d.names) == "[n, c, oh, ow]"
    # a 4x4 tile of stride-2 3x3 windows touches 3*2 + 3 = 9 rows and columns
    assert d.inputs[0].footprint((1, 8, 4, 4, 3, 3)) == (1, 8, 9, 9)
    assert d.static_size() == 64 * 56 * 56 * 9


def test_pool_symbolic_batch_and_errors():
    op = op_on("AveragePool", [TensorType(("batch", 2048, 7, 7), F32)], {"kernel_shape": [7, 7]})
    assert str(op.result.type) == "f32[batch, 2048, 1, 1]"
    assert get_op_def("AveragePool").flops(op_context(op)) == f"{2048 * 50}*batch"
    with pytest.raises(UnboundDimError, match=r"MaxPool: spatial dim 3 of operand 0"):
        op_on("MaxPool", [TensorType((1, 3, 8, "w"), F32)], {"kernel_shape": [2, 2]})
    with pytest.raises(ShapeError, match=r"MaxPool operand 0: kernel_shape \[2\] has 1 entries "
                                         r"but X has 2 spatial dims .*f32\[1, 3, 8, 8\]"):
        op_on("MaxPool", [TensorType((1, 3, 8, 8), F32)], {"kernel_shape": [2]})
    with pytest.raises(ShapeError, match=r"AveragePool operand 0: the window .* does not fit"):
        op_on("AveragePool", [TensorType((1, 3, 2, 8), F32)], {"kernel_shape": [3, 3]})
    with pytest.raises(ShapeError, match=r"AveragePool operand 0: expects a floating-point"):
        op_on("AveragePool", [TensorType((1, 3, 8, 8), DType.int8)], {"kernel_shape": [3, 3]})
    with pytest.raises(ShapeError, match=r"MaxPool operand 0: expects X of rank >= 3"):
        op_on("MaxPool", [TensorType((3, 8), F32)], {"kernel_shape": [3]})
    with pytest.raises(InvalidOpError, match="missing required attribute 'kernel_shape'"):
        op_on("MaxPool", [TensorType((1, 3, 8, 8), F32)])


# ----------------------------------------------------------------------------- global pools

@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 5, 4), (1, 2, 3, 4, 5)])
def test_global_pools_match_reference(op_type, shape):
    # onnx.reference's GlobalMaxPool gets the result rank wrong unless X is 4-D: onnxruntime
    ref = ort_reference if op_type == "GlobalMaxPool" and len(shape) != 4 else onnx_reference
    check(op_type, [rand(shape, 1)], ref=ref)


def test_global_pool_flops_and_domain():
    x = rand((2, 8, 7, 7))
    assert flops_of("GlobalMaxPool", [x]) == 2 * 8 * 49
    assert flops_of("GlobalAveragePool", [x]) == 2 * 8 * 50
    g, op = build_op("GlobalAveragePool", [x])
    d = op_domain(op)
    assert d.names == ("n", "c", "h", "w")
    assert [x.kind for x in d.dims[2:]] == [IterKind.REDUCTION] * 2
    assert d.outputs[0].format(d.names) == "[n, c, 0, 0]"
    op = op_on("GlobalAveragePool", [TensorType(("batch", 8, 7, 7), F32)])
    assert str(op.result.type) == "f32[batch, 8, 1, 1]"
    assert get_op_def("GlobalAveragePool").flops(op_context(op)) == "400*batch"


# ----------------------------------------------------------------------------- LRN

def lrn_spec(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    """The formula of the ONNX spec, channel by channel (float64)."""
    x = x.astype(np.float64)
    c = x.shape[1]
    sq = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + -(-(size - 1) // 2))
        sq[:, ch] = (x[:, lo:hi + 1] ** 2).sum(axis=1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize("size,attrs", [(5, {}), (3, {"alpha": 0.1, "beta": 0.5, "bias": 2.0}),
                                        (1, {"alpha": 0.5}), (9, {"alpha": 0.2})])
def test_lrn_matches_onnxruntime_and_spec(size, attrs):
    # onnx.reference's LRN loops over the batch dim instead of channels: use onnxruntime
    x = rand((2, 6, 4, 3), 1)
    ours = check("LRN", [x], {"size": size, **attrs}, ref=ort_reference)
    np.testing.assert_allclose(ours, lrn_spec(x, size, **attrs), rtol=1e-5, atol=1e-6)


def test_lrn_matches_reference_where_it_is_correct():
    x = rand((3, 3, 4, 4), 1)  # N == C: the reference's batch/channel mix-up is harmless
    check("LRN", [x], {"size": 3, "alpha": 0.1, "beta": 0.7, "bias": 2.0})


def test_lrn_even_size_follows_spec():
    # onnxruntime only accepts odd sizes; the spec's window is c-floor(3/2)..c+ceil(3/2)
    x = rand((1, 7, 3, 3), 1)
    (ours,) = run_op("LRN", [x], {"size": 4, "alpha": 0.3})
    np.testing.assert_allclose(ours, lrn_spec(x, 4, alpha=0.3), rtol=1e-5, atol=1e-6)


def test_lrn_flops_and_domain():
    x = rand((1, 96, 55, 55))
    assert flops_of("LRN", [x], {"size": 5}) == 96 * 55 * 55 * (2 * 5 + 4)
    g, op = build_op("LRN", [x], {"size": 5})
    d = op_domain(op)
    assert d.names == ("n", "c", "h", "w", "i")
    assert d.reduction_dims() == (4,)
    assert d.inputs[0].format(d.names) == "[n, c + i - 2, h, w]"
    # a tile of 8 channels reads those plus the 4 neighbours of the window
    assert d.inputs[0].footprint((1, 8, 5, 5, 5)) == (1, 12, 5, 5)
