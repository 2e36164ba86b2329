"""MatMul, Gemm, Conv and ConvTranspose: evaluation against onnx.reference (onnxruntime where
the reference is known to be wrong), type rules, FLOPs and iteration domains."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hypothesis_budget import examples
from op_harness import build_op, check_op, flops_of, onnx_reference, ort_reference, run_op
from tensorir import DType, Graph, ShapeError, TensorType, UnboundDimError
from tensorir.ops import Category, IterKind, get_op_def, infer_types, op_context, op_domain


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(op_type, arrays, attrs=None, ref=onnx_reference, rtol=1e-4, atol=1e-4):
    return check_op(op_type, arrays, attrs, ref, rtol=rtol, atol=atol)


def ctx_for(op_type, types, attrs=None, consts=None):
    """An op built on inputs of the given TensorTypes (constants where ``consts`` has data)."""
    g = Graph("t")
    operands = []
    for i, t in enumerate(types):
        if t is None:
            operands.append(None)
        elif consts and consts.get(i) is not None:
            operands.append(g.add_constant(f"c{i}", consts[i]))
        else:
            operands.append(g.add_input(f"x{i}", t))
    op = g.add_op(op_type, operands, attrs or {})
    return op


F32 = DType.float32


# ----------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", ["MatMul", "Gemm", "Conv", "ConvTranspose"])
def test_registered_as_contraction(name):
    assert get_op_def(name).category is Category.CONTRACTION


# ----------------------------------------------------------------------------- MatMul

MATMUL_CASES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),            # 1-D first operand
    ((3, 4), (4,)),            # 1-D second operand
    ((4,), (4,)),              # dot product -> scalar
    ((2, 3, 4), (4, 5)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((2, 1, 3, 4), (5, 4, 6)),  # batch broadcasting both ways
    ((1, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
]


@pytest.mark.parametrize("a,b", MATMUL_CASES)
def test_matmul_matches_reference(a, b):
    check("MatMul", [rand(a, 1), rand(b, 2)])


@pytest.mark.parametrize("dtype,tol", [(np.float16, 1e-2), (np.float64, 1e-12), (np.int32, 0)])
def test_matmul_dtypes(dtype, tol):
    a, b = rand((2, 3, 4), 1), rand((4, 5), 2)
    if dtype == np.int32:
        a, b = (a * 4).astype(dtype), (b * 4).astype(dtype)
    (ours,) = run_op("MatMul", [a.astype(dtype), b.astype(dtype)])
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours.astype(np.float64),
                               a.astype(dtype).astype(np.float64) @ b.astype(dtype).astype(
                                   np.float64), rtol=tol, atol=tol)


def test_matmul_symbolic_batch_flows():
    op = ctx_for("MatMul", [TensorType(("batch", "seq", 64), F32), TensorType((64, 32), F32)])
    assert op.result.type == TensorType(("batch", "seq", 32), F32)
    assert get_op_def("MatMul").flops(op_context(op)) == "4096*batch*seq"


def test_matmul_inner_mismatch_message():
    with pytest.raises(ShapeError) as err:
        ctx_for("MatMul", [TensorType((2, 4), F32), TensorType((5, 3), F32)])
    msg = str(err.value)
    assert "MatMul" in msg and "operand 1" in msg
    assert "inner dimension 5" in msg and "operand 0's 4" in msg
    assert "[5, 3]" in msg and "[2, 4]" in msg


def test_matmul_batch_mismatch_message():
    with pytest.raises(ShapeError, match=r"MatMul operand 1: batch dims \[3\] do not broadcast"):
        ctx_for("MatMul", [TensorType((2, 4, 5), F32), TensorType((3, 5, 6), F32)])


def test_matmul_flops_and_domain():
    assert flops_of("MatMul", [rand((2, 1, 3, 4)), rand((5, 4, 6))]) == 2 * 2 * 5 * 3 * 6 * 4
    g, op = build_op("MatMul", [rand((2, 1, 3, 4)), rand((5, 4, 6))])
    d = op_domain(op)
    assert d.names == ("b0", "b1", "m", "n", "k")
    assert d.extents == (2, 5, 3, 6, 4)
    assert d.reduction_dims() == (4,)
    # A's size-1 batch dim reads index 0; B has no leading batch dim
    assert d.inputs[0].evaluate((1, 3, 2, 5, 1)) == (1, 0, 2, 1)
    assert d.inputs[1].evaluate((1, 3, 2, 5, 1)) == (3, 1, 5)
    assert d.outputs[0].evaluate((1, 3, 2, 5, 1)) == (1, 3, 2, 5)


def test_matmul_domain_1d_operands():
    g, op = build_op("MatMul", [rand((4,)), rand((2, 4, 5))])
    d = op_domain(op)
    assert d.names == ("b0", "n", "k")
    assert d.inputs[0].evaluate((1, 3, 2)) == (2,)
    assert d.outputs[0].evaluate((1, 3, 2)) == (1, 3)
    g, op = build_op("MatMul", [rand((4,)), rand((4,))])
    assert op_domain(op).names == ("k",) and op_domain(op).outputs[0].exprs == ()


# ----------------------------------------------------------------------------- Gemm

GEMM_CASES = [
    ({}, (3, 4), (4, 5), None),
    ({"transA": 1}, (4, 3), (4, 5), (5,)),
    ({"transB": 1}, (3, 4), (5, 4), (3, 5)),
    ({"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, (4, 3), (5, 4), (3, 1)),
    ({"alpha": 2.0}, (3, 4), (4, 5), (1, 5)),
    ({"beta": 0.0}, (3, 4), (4, 5), (3, 5)),
    ({}, (3, 4), (4, 5), ()),  # scalar C
]


@pytest.mark.parametrize("attrs,a,b,c", GEMM_CASES)
def test_gemm_matches_reference(attrs, a, b, c):
    arrays = [rand(a, 1), rand(b, 2)] + ([rand(c, 3)] if c is not None else [])
    check("Gemm", arrays, attrs)


@pytest.mark.parametrize("attrs,has_c,extra", [
    ({}, False, 0),
    ({}, True, 1),                      # + C
    ({"alpha": 2.0}, False, 1),         # alpha * acc
    ({"alpha": 2.0, "beta": 0.5}, True, 3),  # alpha, + C, beta * C
    ({"beta": 0.0}, True, 0),           # C ignored
])
def test_gemm_flops(attrs, has_c, extra):
    arrays = [rand((3, 4)), rand((4, 5))] + ([rand((5,))] if has_c else [])
    assert flops_of("Gemm", arrays, attrs) == 2 * 3 * 5 * 4 + extra * 3 * 5


def test_gemm_domain_trans_maps():
    g, op = build_op("Gemm", [rand((4, 3)), rand((5, 4)), rand((3, 1))],
                     {"transA": 1, "transB": 1})
    d = op_domain(op)
    assert d.names == ("m", "n", "k") and d.extents == (3, 5, 4)
    pt = (2, 4, 1)
    assert d.inputs[0].evaluate(pt) == (1, 2)   # A[k, m]
    assert d.inputs[1].evaluate(pt) == (4, 1)   # B[n, k]
    assert d.inputs[2].evaluate(pt) == (2, 0)   # C broadcast along n
    assert d.outputs[0].evaluate(pt) == (2, 4)


def test_gemm_errors():
    with pytest.raises(ShapeError, match=r"Gemm operand 1: inner dimension 6 .* operand 0's 4"):
        ctx_for("Gemm", [TensorType((3, 4), F32), TensorType((6, 5), F32)])
    with pytest.raises(ShapeError, match=r"Gemm operand 2: C of shape \[4, 5\] does not "
                                         r"broadcast to the result's \[3, 5\]"):
        ctx_for("Gemm", [TensorType((3, 4), F32), TensorType((4, 5), F32),
                         TensorType((4, 5), F32)])
    with pytest.raises(ShapeError, match="rank-2"):
        ctx_for("Gemm", [TensorType((2, 3, 4), F32), TensorType((4, 5), F32)])


def test_gemm_symbolic_batch():
    op = ctx_for("Gemm", [TensorType(("batch", 2048), F32), TensorType((1000, 2048), F32),
                          TensorType((1000,), F32)], {"transB": 1})
    assert op.result.type == TensorType(("batch", 1000), F32)
    assert get_op_def("Gemm").flops(op_context(op)) == f"{1000 * (2 * 2048 + 1)}*batch"


# ----------------------------------------------------------------------------- Conv

CONV_CASES = [
    # (x shape, w shape, attrs, bias)
    ((1, 3, 8, 8), (4, 3, 3, 3), {}, False),
    ((2, 3, 8, 7), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ((1, 3, 9, 9), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, False),
    ((1, 2, 9, 8), (3, 2, 3, 2), {"strides": [2, 1], "pads": [0, 1, 2, 0]}, True),  # asym
    ((1, 2, 10, 10), (3, 2, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}, False),
    ((2, 4, 7, 7), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, True),
    ((1, 6, 7, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}, True),  # depthwise
    ((1, 4, 8, 8), (8, 1, 3, 3), {"group": 4, "strides": [2, 2]}, False),  # multiplier 2
    ((1, 3, 9, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, False),
    ((1, 3, 9, 8), (4, 3, 4, 2), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, False),
    ((1, 3, 9, 8), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}, True),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, False),
    ((1, 16, 5, 5), (8, 16, 1, 1), {}, True),                      # pointwise
    ((1, 3, 11), (4, 3, 3), {"strides": [2], "pads": [1, 2]}, True),   # 1-D
    ((2, 4, 12), (4, 2, 5), {"group": 2, "dilations": [2], "pads": [2, 2]}, False),  # 1-D
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 2, 1], "strides": [1, 2, 2]},
     True),                                                         # 3-D
    ((1, 2, 4, 5, 6), (4, 1, 3, 3, 3), {"group": 2, "auto_pad": "SAME_UPPER"}, False),  # 3-D
]


@pytest.mark.parametrize("x,w,attrs,bias", CONV_CASES)
def test_conv_matches_reference(x, w, attrs, bias):
    arrays = [rand(x, 1), rand(w, 2)] + ([rand((w[0],), 3)] if bias else [])
    check("Conv", arrays, attrs)


def test_conv_same_lower_dilated_equals_explicit_pads():
    # (onnxruntime rejects dilated SAME convolutions; onnx.reference follows the spec)
    arrays = [rand((1, 2, 8, 8), 1), rand((3, 2, 3, 3), 2)]
    attrs = {"auto_pad": "SAME_LOWER", "strides": [2, 1], "dilations": [2, 2]}
    out = check("Conv", arrays, attrs)
    assert out.shape == (1, 3, 4, 8)
    # H: out 4, pad (4-1)*2 + 5 - 8 = 3, the odd unit first; W: pad 7 + 5 - 8 = 4
    (explicit,) = run_op("Conv", arrays, {"strides": [2, 1], "dilations": [2, 2],
                                          "pads": [2, 2, 1, 2]})
    np.testing.assert_array_equal(out, explicit)


def test_conv_float16_accumulates_in_float32():
    x, w = rand((1, 8, 6, 6), 1), rand((4, 8, 3, 3), 2)
    (ours,) = run_op("Conv", [x.astype(np.float16), w.astype(np.float16)], {"pads": [1] * 4})
    assert ours.dtype == np.float16
    (want,) = onnx_reference("Conv", [x.astype(np.float16).astype(np.float32),
                                      w.astype(np.float16).astype(np.float32)], {"pads": [1] * 4})
    np.testing.assert_allclose(ours.astype(np.float32), want, rtol=2e-3, atol=2e-2)


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 2), group=st.integers(1, 3), cg=st.integers(1, 3), ocg=st.integers(1, 3),
       h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 3), kw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), dh=st.integers(1, 2), dw=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_conv_hypothesis(n, group, cg, ocg, h, w, kh, kw, sh, sw, dh, dw, pads, bias, seed):
    assume(h + pads[0] + pads[2] >= (kh - 1) * dh + 1)
    assume(w + pads[1] + pads[3] >= (kw - 1) * dw + 1)
    x = rand((n, group * cg, h, w), seed)
    wt = rand((group * ocg, cg, kh, kw), seed + 1)
    arrays = [x, wt] + ([rand((group * ocg,), seed + 2)] if bias else [])
    attrs = {"group": group, "strides": [sh, sw], "dilations": [dh, dw], "pads": pads}
    g, op = build_op("Conv", arrays, attrs)
    ours = check("Conv", arrays, attrs)
    assert tuple(op.result.type.shape) == ours.shape


RESNET_STEM = 118_013_952  # multiply-adds of ResNet-50's 7x7/2 stem


def test_conv_flops_resnet_stem():
    x, w = np.zeros((1, 3, 224, 224), np.float32), np.zeros((64, 3, 7, 7), np.float32)
    attrs = {"strides": [2, 2], "pads": [3, 3, 3, 3]}
    assert flops_of("Conv", [x, w], attrs) == 2 * RESNET_STEM
    bias = np.zeros(64, np.float32)
    assert flops_of("Conv", [x, w, bias], attrs) == 2 * RESNET_STEM + 64 * 112 * 112
    # the domain agrees: 2 FLOPs per point
    g, op = build_op("Conv", [x, w], attrs, const_inputs=(1,))
    assert op_domain(op).static_size() == RESNET_STEM


def test_conv_flops_grouped_and_depthwise():
    x = np.zeros((2, 32, 10, 10), np.float32)
    # depthwise 3x3, pad 1: 2 * N * C * H * W * 1 * 9
    assert flops_of("Conv", [x, np.zeros((32, 1, 3, 3), np.float32)],
                    {"group": 32, "pads": [1] * 4}) == 2 * 2 * 32 * 100 * 9
    # 4 groups, 16 output channels: each output reads 8 input channels
    assert flops_of("Conv", [x, np.zeros((16, 8, 1, 1), np.float32)], {"group": 4}) \
        == 2 * 2 * 16 * 100 * 8


def test_conv_symbolic_batch():
    w = rand((64, 3, 7, 7))
    op = ctx_for("Conv", [TensorType(("batch", 3, 224, 224), F32), TensorType(w.shape, F32)],
                 {"strides": [2, 2], "pads": [3, 3, 3, 3]}, consts={1: w})
    assert str(op.result.type) == "f32[batch, 64, 112, 112]"
    assert get_op_def("Conv").flops(op_context(op)) == f"{2 * RESNET_STEM}*batch"
    assert op_domain(op).extents[0] == "batch"


def test_conv_symbolic_spatial_is_rejected():
    with pytest.raises(UnboundDimError, match=r"Conv: spatial dim 2 of operand 0 "
                                              r"\(f32\[1, 3, h, 224\]\)"):
        ctx_for("Conv", [TensorType((1, 3, "h", 224), F32), TensorType((8, 3, 3, 3), F32)])


def test_conv_channel_mismatch_message():
    with pytest.raises(ShapeError) as err:
        ctx_for("Conv", [TensorType((1, 6, 8, 8), F32), TensorType((4, 2, 3, 3), F32)],
                {"group": 2})
    msg = str(err.value)
    assert msg.startswith("Conv operand 1: X has 6 channels (shape [1, 6, 8, 8])")
    assert "W of shape [4, 2, 3, 3] with group=2 expects 2*2 = 4" in msg


@pytest.mark.parametrize("types,attrs,pattern", [
    ([(1, 4, 8, 8), (6, 2, 3, 3)], {"group": 2, "kernel_shape": [3, 2]},
     r"Conv operand 1: kernel_shape \[3, 2\] does not match W's spatial dims \[3, 3\]"),
    ([(1, 4, 8, 8), (6, 2, 3, 3), (5,)], {"group": 2},
     r"Conv operand 2: bias B of shape \[5\] must be \[6\]"),
    ([(1, 4, 8, 8), (6, 4, 3, 3)], {"pads": [1, 1]},
     r"Conv: attribute pads has 2 entries, expected 4"),
    ([(1, 4, 2, 8), (6, 4, 3, 3)], {},
     r"Conv operand 0: the window .* does not fit the spatial dims \[2, 8\]"),
    ([(1, 4, 8, 8), (6, 4, 3)], {}, r"Conv operand 1: W of shape \[6, 4, 3\] must have X's rank"),
    ([(1, 4, 8, 8), (6, 4, 3, 3)], {"auto_pad": "SAME"}, r"auto_pad must be one of"),
    ([(1, 4, 8, 8), (6, 4, 3, 3)], {"group": 3}, r"X has 4 channels"),
])
def test_conv_errors(types, attrs, pattern):
    with pytest.raises(ShapeError, match=pattern):
        ctx_for("Conv", [TensorType(s, F32) for s in types], attrs)


def test_conv_domain_shape_and_halo():
    g, op = build_op("Conv", [rand((1, 8, 16, 16)), rand((4, 8, 3, 3))], {"pads": [1] * 4})
    d = op_domain(op)
    assert d.names == ("n", "oc", "oh", "ow", "ic", "kh", "kw")
    assert [k for k in (x.kind for x in d.dims)] == [IterKind.PARALLEL] * 4 + \
        [IterKind.REDUCTION] * 3
    assert d.inputs[0].format(d.names) == "[n, ic, oh + kh - 1, ow + kw - 1]"
    # a 4x4 output tile of a 3x3 stride-1 conv touches a 6x6 input patch
    tile = (1, 4, 4, 4, 8, 3, 3)
    assert d.inputs[0].footprint(tile) == (1, 8, 6, 6)
    assert d.inputs[1].footprint(tile) == (4, 8, 3, 3)
    assert d.outputs[0].footprint(tile) == (1, 4, 4, 4)
    # a corner tile is clipped at the edge of the tensor
    assert d.inputs[0].footprint((1, 4, 16, 16, 8, 3, 3), bounds=(1, 8, 16, 16)) == (1, 8, 16, 16)


def test_conv_domain_strided_dilated():
    g, op = build_op("Conv", [rand((1, 3, 20, 20)), rand((4, 3, 3, 3))],
                     {"strides": [2, 2], "dilations": [2, 1], "pads": [2, 1, 2, 1]})
    d = op_domain(op)
    assert d.inputs[0].format(d.names) == "[n, ic, 2*oh + 2*kh - 2, 2*ow + kw - 1]"
    # 4x4 outputs at stride 2: 3*2+1 rows plus the dilated kernel's 4 extra rows
    assert d.inputs[0].footprint((1, 4, 4, 4, 3, 3, 3)) == (1, 3, 7 + 4, 7 + 2)


def test_conv_domain_grouped_channel_maps_are_affine():
    g, op = build_op("Conv", [rand((1, 6, 5, 5)), rand((9, 2, 3, 3)), rand((9,))],
                     {"group": 3})
    d = op_domain(op)
    assert d.names == ("n", "g", "oc", "oh", "ow", "ic", "kh", "kw")
    assert d.extents == (1, 3, 3, 3, 3, 2, 3, 3)
    assert d.inputs[0].format(d.names) == "[n, 2*g + ic, oh + kh, ow + kw]"
    assert d.inputs[1].format(d.names) == "[3*g + oc, ic, kh, kw]"
    assert d.inputs[2].format(d.names) == "[3*g + oc]"
    assert d.outputs[0].format(d.names) == "[n, 3*g + oc, oh, ow]"
    # one group's tile reads only that group's 2 input channels
    assert d.inputs[0].footprint((1, 1, 3, 3, 3, 2, 3, 3)) == (1, 2, 5, 5)
    # a brute-force check: every domain point reads the input channel the definition says
    pt = (0, 2, 1, 0, 0, 1, 2, 2)
    assert d.inputs[0].evaluate(pt)[1] == 2 * 2 + 1
    assert d.outputs[0].evaluate(pt)[1] == 2 * 3 + 1


def test_conv_resnet_layer_is_fast():
    x, w = rand((1, 64, 56, 56), 1), rand((64, 64, 3, 3), 2)
    g, op = build_op("Conv", [x, w], {"pads": [1] * 4})
    ctx, evaluate = op_context(op), get_op_def("Conv").evaluate
    evaluate(ctx, [x, w])
    best = min(_timed(lambda: evaluate(ctx, [x, w])) for _ in range(3))
    assert best < 0.1, f"a 64x56x56 3x3 conv took {best * 1e3:.1f} ms"


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- ConvTranspose

CONVT_CASES = [
    ((1, 3, 5, 5), (3, 2, 3, 3), {}, False),
    ((2, 3, 4, 5), (3, 4, 3, 3), {"strides": [2, 2]}, True),
    ((1, 3, 4, 5), (3, 2, 3, 3), {"strides": [2, 2], "pads": [1, 0, 0, 1],
                                  "output_padding": [1, 0]}, True),
    ((1, 2, 4, 4), (2, 2, 3, 2), {"strides": [3, 2], "dilations": [2, 1], "pads": [1, 1, 2, 0]},
     False),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, False),
    ((1, 2, 4, 5), (2, 3, 4, 3), {"strides": [2, 3], "auto_pad": "SAME_LOWER"}, False),
    ((1, 2, 4, 5), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "VALID"}, True),
    # output_shape larger than the natural size: the extra rows/cols are zeros at the end
    ((1, 1, 3, 3), (1, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}, False),
    ((1, 3, 7), (3, 2, 3), {"strides": [2], "pads": [1, 2], "output_padding": [1]}, True),  # 1-D
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 1]},
     False),                                                                       # 3-D
]


@pytest.mark.parametrize("x,w,attrs,bias", CONVT_CASES)
def test_conv_transpose_matches_reference(x, w, attrs, bias):
    oc = w[1] * attrs.get("group", 1)
    arrays = [rand(x, 1), rand(w, 2)] + ([rand((oc,), 3)] if bias else [])
    check("ConvTranspose", arrays, attrs)


# onnx.reference's grouped ConvTranspose slices W by output channel (a bug) and it crops
# output_shape without the spec's generated pads: these go against onnxruntime
CONVT_ORT_CASES = [
    ((2, 4, 5, 4), (4, 3, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 0, 0]}, True),
    ((1, 4, 5, 4), (4, 1, 3, 3), {"group": 4, "strides": [2, 1]}, False),  # depthwise
    ((1, 6, 5), (6, 2, 3), {"group": 3, "strides": [2], "dilations": [2]}, True),
    ((2, 4, 9, 8), (4, 3, 3, 3), {"strides": [2, 2], "output_shape": [17, 15]}, False),
    ((2, 4, 9, 8), (4, 3, 3, 3), {"strides": [2, 2], "output_shape": [16, 14]}, False),
]


@pytest.mark.parametrize("x,w,attrs,bias", CONVT_ORT_CASES)
def test_conv_transpose_matches_onnxruntime(x, w, attrs, bias):
    oc = w[1] * attrs.get("group", 1)
    arrays = [rand(x, 1), rand(w, 2)] + ([rand((oc,), 3)] if bias else [])
    check("ConvTranspose", arrays, attrs, ref=ort_reference)


def test_conv_transpose_is_the_adjoint_of_conv():
    # <conv(x), y> == <x, conv_transpose(y)> for the same W, strides, pads and dilations
    x, w = rand((1, 4, 9, 8), 1), rand((6, 2, 3, 3), 2)
    attrs = {"group": 2, "strides": [2, 2], "pads": [1, 0, 1, 1], "dilations": [1, 2]}
    (cx,) = run_op("Conv", [x, w], attrs)
    y = rand(cx.shape, 3)
    out_pad = [9 - ((cx.shape[2] - 1) * 2 + 2 + 1 - 2), 8 - ((cx.shape[3] - 1) * 2 + 4 + 1 - 1)]
    # Conv's W[g*OCg + o, c] is ConvTranspose's W[input channel g*OCg + o, output channel c]
    (ty,) = run_op("ConvTranspose", [y, w], {**attrs, "output_padding": out_pad})
    assert ty.shape == x.shape
    np.testing.assert_allclose(np.vdot(cx, y), np.vdot(x, ty), rtol=1e-4)


def test_conv_transpose_flops_and_domain():
    x, w, b = rand((2, 4, 5, 6)), rand((4, 3, 3, 3)), rand((6,))
    attrs = {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}
    (y,) = run_op("ConvTranspose", [x, w, b], attrs)
    assert y.shape == (2, 6, 9, 11)
    # every input element meets every kernel tap of its group's 3 output channels
    assert flops_of("ConvTranspose", [x, w, b], attrs) == 2 * 2 * 4 * 30 * 3 * 9 + 2 * 6 * 99
    g, op = build_op("ConvTranspose", [x, w, b], attrs)
    d = op_domain(op)
    assert d.names == ("n", "g", "oc", "ih", "iw", "ic", "kh", "kw")
    assert d.reduction_dims() == (5, 6, 7)
    assert d.inputs[0].format(d.names) == "[n, 2*g + ic, ih, iw]"
    assert d.inputs[1].format(d.names) == "[2*g + ic, oc, kh, kw]"
    assert d.outputs[0].format(d.names) == "[n, 3*g + oc, 2*ih + kh - 1, 2*iw + kw - 1]"
    assert 2 * d.static_size() == 2 * 2 * 4 * 30 * 3 * 9
    # a 2x2 input tile scatters into a (2-1)*2 + 3 = 5 wide output patch
    assert d.outputs[0].footprint((1, 1, 3, 2, 2, 2, 3, 3)) == (1, 3, 5, 5)


def test_conv_transpose_errors():
    with pytest.raises(ShapeError, match=r"ConvTranspose operand 1: X has 3 channels .* "
                                         r"expects 4"):
        ctx_for("ConvTranspose", [TensorType((1, 3, 4, 4), F32), TensorType((4, 2, 3, 3), F32)])
    with pytest.raises(ShapeError, match=r"output_shape \[8\] must have 2 spatial entries"):
        ctx_for("ConvTranspose", [TensorType((1, 4, 4, 4), F32), TensorType((4, 2, 3, 3), F32)],
                {"output_shape": [8]})


def test_conv_transpose_symbolic_batch():
    op = ctx_for("ConvTranspose", [TensorType(("batch", 4, 8, 8), F32),
                                   TensorType((4, 2, 4, 4), F32)],
                 {"strides": [2, 2], "pads": [1, 1, 1, 1]})
    assert str(op.result.type) == "f32[batch, 2, 16, 16]"
    assert get_op_def("ConvTranspose").flops(op_context(op)) == f"{2 * 4 * 64 * 2 * 16}*batch"


def test_infer_types_entry_point():
    g = Graph("t")
    x = g.add_input("x", TensorType((1, 3, 8, 8), F32))
    w = g.add_input("w", TensorType((4, 3, 3, 3), F32))
    assert infer_types("Conv", {"pads": (1, 1, 1, 1)}, [x, w]) == [
        TensorType((1, 4, 8, 8), F32)]
