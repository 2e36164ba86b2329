"""The elementwise op family: evaluation against onnx.reference, type rules, FLOPs, domains,
typed errors, broadcasting properties and conformance with the ONNX schemas."""

from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import defs, helper
from onnx.reference import ReferenceEvaluator

from op_harness import build_op, flops_of, onnx_reference, run_op
from tensorir import DType, Graph, InvalidOpError, ShapeError, TensorType
from tensorir.errors import InterpreterError
from tensorir.interpreter import interpret
from tensorir.ops import Category, get_op_def, op_context, op_domain, registered_ops
from tensorir.ops.elementwise import erf

NEWEST = defs.onnx_opset_version()  # the newest opset this onnx knows: its semantics are ours

ELEMENTWISE_OPS = sorted(
    "Add Sub Mul Div Pow Neg Abs Exp Log Sqrt Reciprocal Erf Tanh Sigmoid Relu LeakyRelu Elu "
    "Selu Gelu HardSigmoid HardSwish Mish Softplus Clip Where Equal Greater Less GreaterOrEqual "
    "LessOrEqual Not And Or Xor Cast CastLike Identity Max Min Sum Mean PRelu Dropout Floor Ceil Round "
    "Sign Sin Cos Mod IsNaN".split())

R = np.random.default_rng(20240611)


def fl(*shape: int, lo: float = -3.0, hi: float = 3.0, dtype: Any = np.float32) -> np.ndarray:
    return R.uniform(lo, hi, shape).astype(dtype)


def ints(*shape: int, lo: int = -10, hi: int = 10, dtype: Any = np.int64) -> np.ndarray:
    return R.integers(lo, hi, shape).astype(dtype)


def nonzero_ints(*shape: int, lo: int = -10, hi: int = 10, dtype: Any = np.int64) -> np.ndarray:
    a = ints(*shape, lo=lo, hi=hi, dtype=dtype)
    return np.where(a == 0, 3, a).astype(dtype)


def bools(*shape: int) -> np.ndarray:
    return R.random(shape) < 0.5


def away_from_zero(*shape: int) -> np.ndarray:
    a = fl(*shape, lo=0.5, hi=3.0)
    return np.where(bools(*shape), a, -a).astype(np.float32)


@attrs.frozen
class Case:
    op: str
    arrays: tuple = attrs.field(converter=tuple)
    attrs: dict = attrs.field(factory=dict)
    ref_attrs: dict | None = None      # attributes for onnx (ours may add tensorir ones)
    n_outputs: int = 1
    const_inputs: tuple = ()
    rtol: float = 1e-5
    atol: float = 1e-6
    id: str = ""


def case(op: str, *arrays: Any, id: str = "", **kw: Any) -> Any:
    c = Case(op, arrays, id=id, **kw)
    return pytest.param(c, id=f"{op}-{id}" if id else op)


HALF_TOL = dict(rtol=2e-3, atol=2e-3)
BF16_TOL = dict(rtol=2e-2, atol=2e-2)

CASES = [
    # arithmetic, with broadcasting and several dtypes
    case("Add", fl(2, 3), fl(3), id="f32-bcast"),
    case("Add", ints(4, 1, dtype=np.int32), ints(1, 5, dtype=np.int32), id="i32-bcast2way"),
    case("Add", ints(6, lo=100, hi=255, dtype=np.uint8), ints(6, lo=100, hi=255, dtype=np.uint8),
         id="u8-wraps"),
    case("Add", fl(3, 4, dtype=np.float16), fl(4, dtype=np.float16), id="f16", **HALF_TOL),
    case("Add", fl(3, 4, dtype=ml_dtypes.bfloat16), fl(3, 4, dtype=ml_dtypes.bfloat16),
         id="bf16", **BF16_TOL),
    case("Sub", fl(2, 1, 4), fl(3, 1), id="f32-bcast3d"),
    case("Sub", ints(3, 4, dtype=np.int8), ints(4, dtype=np.int8), id="i8"),
    case("Mul", fl(2, 3, dtype=np.float64), fl(dtype=np.float64), id="f64-scalar"),
    case("Mul", ints(2, 3, dtype=np.int16), ints(2, 1, dtype=np.int16), id="i16"),
    case("Div", fl(2, 3), away_from_zero(3), id="f32-bcast"),
    case("Div", ints(4, 5, lo=-50, hi=50, dtype=np.int32), nonzero_ints(5, dtype=np.int32),
         id="i32-truncates"),
    case("Pow", fl(2, 3, lo=0.1, hi=3.0), fl(3, lo=-2.0, hi=2.0), id="f32-bcast"),
    case("Pow", fl(2, 3), ints(3, lo=0, hi=4), id="f32-base-i64-exp"),
    case("Pow", ints(3, 4, lo=-5, hi=5), ints(4, lo=0, hi=5), id="i64"),
    case("Pow", ints(5, lo=0, hi=5, dtype=np.int32), fl(5, lo=0.0, hi=2.0), id="i32-base-f32-exp"),
    case("Mod", ints(3, 4, lo=-20, hi=20), nonzero_ints(4), id="i64-floor"),
    case("Mod", ints(3, 4, lo=-20, hi=20), nonzero_ints(4), attrs={"fmod": 1}, id="i64-fmod"),
    case("Mod", fl(3, 4, lo=-9, hi=9), away_from_zero(3, 4), attrs={"fmod": 1}, id="f32-fmod"),
    case("Mod", fl(3, 4, lo=-9, hi=9), away_from_zero(4), attrs={"fmod": 0}, id="f32-floor"),
    # unary arithmetic
    case("Neg", fl(2, 3), id="f32"),
    case("Neg", ints(5, dtype=np.int8), id="i8"),
    case("Abs", fl(2, 3), id="f32"),
    case("Abs", ints(5, dtype=np.int16), id="i16"),
    case("Sign", np.array([-2.5, -0.0, 0.0, 1e-30, 7.0], np.float32), id="f32"),
    case("Sign", ints(6, dtype=np.int32), id="i32"),
    case("Reciprocal", away_from_zero(3, 4)),
    case("Floor", fl(3, 4)),
    case("Ceil", fl(3, 4)),
    case("Round", np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, 2.6, -0.2], np.float32),
         id="halves-to-even"),
    case("Round", fl(3, 4, lo=-5, hi=5, dtype=np.float16), id="f16", **HALF_TOL),
    # transcendental
    case("Exp", fl(3, 4)),
    case("Log", fl(3, 4, lo=0.01, hi=10.0)),
    case("Sqrt", fl(3, 4, lo=0.0, hi=10.0)),
    case("Erf", fl(3, 50, lo=-5, hi=5), id="f32"),
    # onnx.reference computes Erf through float32 even for f64 (np.vectorize(otypes="f")), so
    # f64 matches it to f32 precision only; test_erf_matches_math_erf checks the f64 accuracy
    case("Erf", fl(200, lo=-6, hi=6, dtype=np.float64), rtol=1e-6, atol=1e-7, id="f64"),
    case("Tanh", fl(3, 4, lo=-10, hi=10)),
    case("Sin", fl(3, 4, lo=-7, hi=7)),
    case("Cos", fl(3, 4, lo=-7, hi=7)),
    # activations, default and non-default attributes
    case("Relu", fl(3, 4), id="f32"),
    case("Relu", ints(3, 4, dtype=np.int32), id="i32"),
    case("Sigmoid", np.concatenate([fl(20, lo=-8, hi=8), np.float32([-100, 100, 0])]),
         id="f32-extremes"),
    case("Sigmoid", fl(10, dtype=np.float16), id="f16", **HALF_TOL),
    case("LeakyRelu", fl(3, 4), id="default"),
    case("LeakyRelu", fl(3, 4), attrs={"alpha": 0.2}, id="alpha"),
    case("Elu", fl(3, 4), id="default"),
    case("Elu", fl(3, 4), attrs={"alpha": 0.5}, id="alpha"),
    case("Selu", fl(3, 4), id="default"),
    case("Selu", fl(3, 4), attrs={"alpha": 1.5, "gamma": 2.0}, id="alpha-gamma"),
    case("Gelu", fl(4, 25, lo=-5, hi=5), id="default"),
    case("Gelu", fl(4, 25, lo=-5, hi=5), attrs={"approximate": "tanh"}, id="tanh"),
    case("Gelu", fl(4, 25, lo=-5, hi=5), attrs={"approximate": "none"}, id="none"),
    case("Gelu", fl(30, lo=-5, hi=5, dtype=np.float64), rtol=1e-6, atol=1e-7,
         id="f64"),  # onnx.reference's Erf is f32 inside (see Erf-f64)
    case("HardSigmoid", fl(3, 10, lo=-6, hi=6), id="default"),
    case("HardSigmoid", fl(3, 10, lo=-6, hi=6), attrs={"alpha": 0.5, "beta": 0.25},
         id="alpha-beta"),
    case("HardSwish", fl(3, 10, lo=-6, hi=6)),
    case("Mish", fl(3, 10, lo=-8, hi=8)),
    case("Softplus", np.concatenate([fl(20, lo=-10, hi=10), np.float32([-100, 100])]),
         id="f32-extremes"),
    case("PRelu", fl(2, 3, 4, 4), fl(3, 1, 1), id="per-channel"),
    case("PRelu", fl(2, 3, 4), fl(4), id="last-dim"),
    case("PRelu", fl(2, 3), fl(1), id="one-slope"),
    case("PRelu", ints(3, 4, dtype=np.int32), ints(4, lo=0, hi=4, dtype=np.int32), id="i32"),
    # Clip: absent, one or both optional bounds (constants or inputs)
    case("Clip", fl(3, 4), id="no-bounds"),
    case("Clip", fl(3, 4), np.float32(-1.0), const_inputs=(1,), id="min-only"),
    case("Clip", fl(3, 4), None, np.float32(0.5), id="max-only"),
    case("Clip", fl(3, 4), np.float32(-1.0), np.float32(1.0), id="both"),
    case("Clip", fl(3, 4), np.float32(1.0), np.float32(-1.0), id="min-above-max"),
    case("Clip", ints(3, 4, dtype=np.int32), np.int32(-2), np.int32(3), id="i32"),
    case("Clip", fl(3, 4), np.float32([-0.5]), np.float32([0.5]), const_inputs=(1, 2),
         id="one-element-bounds"),
    # variadic
    case("Max", fl(2, 3), id="one"),
    case("Max", fl(2, 3), fl(3), id="two-bcast"),
    case("Max", fl(2, 1, 3), fl(4, 1), fl(3), id="three-bcast"),
    case("Max", ints(2, 3, dtype=np.int32), ints(3, dtype=np.int32), id="i32"),
    case("Min", fl(2, 3), id="one"),
    case("Min", fl(2, 1, 3), fl(4, 1), fl(3), id="three-bcast"),
    case("Min", ints(2, 3, dtype=np.uint8, lo=0), ints(2, 3, dtype=np.uint8, lo=0), id="u8"),
    case("Sum", fl(2, 3), id="one"),
    case("Sum", fl(2, 4, 3), fl(4, 1), fl(3), id="three-bcast"),
    # onnx.reference's Mean adds in place into its first operand: the largest goes first
    case("Mean", fl(2, 4, 3), fl(4, 1), fl(3), id="three-bcast"),
    case("Mean", fl(2, 3, dtype=np.float64), fl(2, 3, dtype=np.float64), id="f64"),
    # comparisons and logic
    case("Equal", ints(3, 4, lo=0, hi=3), ints(4, lo=0, hi=3), id="i64-bcast"),
    case("Equal", bools(3, 4), bools(3, 1), id="bool"),
    case("Equal", ints(3, 4, lo=0, hi=3).astype(np.float32), np.float32([0, 1, 2, 1]), id="f32"),
    case("Greater", ints(3, 4, lo=0, hi=3).astype(np.float32), np.float32([0, 1, 2, 1])),
    case("Less", ints(3, 4, lo=0, hi=3, dtype=np.int32), ints(4, lo=0, hi=3, dtype=np.int32)),
    case("GreaterOrEqual", ints(3, 4, lo=0, hi=3).astype(np.float32),
         np.float32([0, 1, 2, 1])),
    case("LessOrEqual", ints(2, 1, 4, lo=0, hi=3), ints(3, 1, lo=0, hi=3)),
    case("Not", bools(3, 4)),
    case("And", bools(3, 4), bools(4)),
    case("Or", bools(2, 1, 4), bools(3, 1)),
    case("Xor", bools(3, 4), bools(3, 4)),
    case("IsNaN", np.float32([1.0, np.nan, -np.inf, 0.0, np.nan]), id="f32"),
    case("IsNaN", np.float16([np.nan, 2.0]), id="f16"),
    # Where: three-way broadcasting
    case("Where", bools(2, 1, 4), fl(3, 1), fl(4), id="f32-bcast3"),
    case("Where", bools(3, 4), ints(3, 4), ints(1), id="i64"),
    case("Where", bools(4), bools(4), bools(1), id="bool"),
    # Cast: the ONNX TensorProto codes
    case("Cast", fl(3, 4, lo=-100, hi=100), attrs={"to": 6}, id="f32-to-i32"),
    case("Cast", fl(3, 4), attrs={"to": 10}, id="f32-to-f16"),
    case("Cast", fl(3, 4), attrs={"to": 16}, id="f32-to-bf16"),
    case("Cast", ints(3, 4), attrs={"to": 1}, id="i64-to-f32"),
    case("Cast", np.float32([0.0, -0.0, 2.0, np.nan, -1e-30]), attrs={"to": 9}, id="f32-to-bool"),
    case("Cast", bools(3, 4), attrs={"to": 1}, id="bool-to-f32"),
    case("Cast", np.int32([200, -200, 127, -129, 5]), attrs={"to": 3}, id="i32-to-i8-wraps"),
    case("Cast", ints(3, 4, lo=0, hi=255, dtype=np.uint8), attrs={"to": 7}, id="u8-to-i64"),
    case("Cast", fl(3, 4, lo=-7, hi=7, dtype=np.float64), attrs={"to": 22}, id="f64-to-i4"),
    case("Cast", ints(6, lo=-8, hi=8, dtype=np.int8).astype(ml_dtypes.int4), attrs={"to": 1},
         id="i4-to-f32"),
    case("Cast", fl(3), attrs={"to": 11, "saturate": 0}, ref_attrs={"to": 11},
         id="f32-to-f64-saturate-ignored"),
    # CastLike: the dtype of operand 1 (target_type), whose shape and values do not matter
    case("CastLike", fl(3, 4), np.float16([7.0]), id="f32-to-f16"),
    case("CastLike", fl(3, 4, lo=-100, hi=100), ints(2, 5, dtype=np.int32), id="f32-to-i32"),
    case("CastLike", np.float32([2.5, -2.5, 0.99, -0.99, 1e9]), np.int32(0),
         id="f32-to-i32-truncates"),
    case("CastLike", ints(3, 4, lo=-1000, hi=1000), fl(1), id="i64-to-f32"),
    case("CastLike", bools(3, 4), fl(), id="bool-to-f32"),
    case("CastLike", fl(3, 4), fl(2, dtype=ml_dtypes.bfloat16), id="f32-to-bf16"),
    case("CastLike", np.float32([0.0, -0.0, 2.0, np.nan]), bools(1), id="f32-to-bool"),
    case("CastLike", fl(2, 3), fl(3, dtype=np.float16), const_inputs=(1,),
         id="f32-to-f16-const-target"),
    # onnx.reference's CastLike predates round_mode (opset 25): it is left out for onnx
    case("CastLike", fl(3), fl(1, dtype=np.float16), attrs={"saturate": 0, "round_mode": "down"},
         ref_attrs={"saturate": 0}, id="f32-to-f16-float8-attrs-ignored"),
    case("Identity", fl(3, 4), id="f32"),
    case("Identity", bools(3), id="bool"),
    # Dropout in inference, one or two results
    case("Dropout", fl(3, 4), id="default"),
    case("Dropout", fl(3, 4), np.float32(0.3), const_inputs=(1,), id="ratio"),
    case("Dropout", fl(3, 4), np.float32(0.3), np.bool_(False), id="training-off"),
    case("Dropout", fl(3, 4), np.float32(0.0), np.bool_(True), const_inputs=(1, 2),
         id="training-ratio-0"),
    case("Dropout", fl(3, 4), attrs={"num_outputs": 2}, ref_attrs={}, n_outputs=2, id="mask"),
    case("Dropout", fl(3, 4, dtype=np.float16), np.float16(0.5), np.bool_(False),
         attrs={"num_outputs": 2}, ref_attrs={}, n_outputs=2, id="mask-f16-operands"),
]


def model_reference(op: str, arrays: Sequence[np.ndarray | None], attrs: dict,
                    n_outputs: int) -> list[np.ndarray]:
    """onnx.reference on a model with inferred shapes: Gelu's function body depends on its
    context, which a bare node (onnx_reference) cannot give."""
    names = ["" if a is None else f"x{i}" for i, a in enumerate(arrays)]
    node = helper.make_node(op, names, [f"y{i}" for i in range(n_outputs)], **attrs)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype),
                                            a.shape) for n, a in zip(names, arrays) if n]
    outputs = [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.UNDEFINED, None)
               for i in range(n_outputs)]
    model = helper.make_model(helper.make_graph([node], op, inputs, outputs),
                              opset_imports=[helper.make_opsetid("", NEWEST)])
    model = onnx.shape_inference.infer_shapes(model)
    feeds = {n: np.asarray(a) for n, a in zip(names, arrays) if n}
    return list(ReferenceEvaluator(model).run(None, feeds))


def comparable(a: np.ndarray) -> np.ndarray:
    """bf16 and int4 arrays as f64 / i64, which NumPy's testing functions understand."""
    if a.dtype in (np.dtype(ml_dtypes.bfloat16),):
        return a.astype(np.float64)
    if a.dtype in (np.dtype(ml_dtypes.int4),):
        return a.astype(np.int64)
    return a


@pytest.mark.parametrize("c", CASES)
def test_evaluation_matches_onnx_reference(c: Case) -> None:
    ours = run_op(c.op, c.arrays, c.attrs, const_inputs=c.const_inputs)  # also checks types
    ref_attrs = c.attrs if c.ref_attrs is None else c.ref_attrs
    if c.op == "Gelu":
        ref = model_reference(c.op, c.arrays, ref_attrs, c.n_outputs)
    else:
        ref = onnx_reference(c.op, c.arrays, ref_attrs, n_outputs=c.n_outputs, opset=NEWEST)
    assert len(ours) == len(ref) == c.n_outputs
    for o, r in zip(ours, ref):
        r = np.asarray(r)
        assert o.dtype == r.dtype, (o.dtype, r.dtype)
        assert o.shape == r.shape
        if o.dtype.kind in "biu" or o.dtype == np.dtype(ml_dtypes.int4):
            np.testing.assert_array_equal(comparable(o), comparable(r))
        else:
            np.testing.assert_allclose(comparable(o), comparable(r), rtol=c.rtol, atol=c.atol,
                                       equal_nan=True)


def test_every_op_is_registered_with_a_case_a_doc_and_the_category() -> None:
    covered = {p.values[0].op for p in CASES}
    assert covered == set(ELEMENTWISE_OPS)
    for op in ELEMENTWISE_OPS:
        d = get_op_def(op)
        assert d.category is Category.ELEMENTWISE, op
        assert "FLOP" in d.doc, op  # each op states its FLOP convention
    assert set(ELEMENTWISE_OPS) <= set(registered_ops())


# --------------------------------------------------------------------------------------------
# erf accuracy (it feeds Erf and Gelu)

def test_erf_matches_math_erf_on_a_dense_grid() -> None:
    x = np.concatenate([np.linspace(-7, 7, 140_001), np.float64([-30, 30, 1e-300, -1e-12])])
    ref = np.array([math.erf(v) for v in x])
    got = erf(x)
    assert np.max(np.abs(got - ref)) < 5e-16
    tiny = (np.abs(x) < 0.5) & (x != 0)
    assert np.max(np.abs((got - ref)[tiny] / ref[tiny])) < 1e-15  # relative near zero too


def test_erf_special_values() -> None:
    got = erf(np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])
    assert got[3] == 0.0 and not np.signbit(got[3]) and np.signbit(got[4])


# --------------------------------------------------------------------------------------------
# semantics onnx.reference cannot check

def test_integer_pow_with_negative_exponents_truncates() -> None:
    base = np.array([2, -2, 1, -1, -1, 5, 3], np.int64)
    exp = np.array([-1, -1, -7, -3, -4, 0, 2], np.int64)
    (out,) = run_op("Pow", [base, exp])
    np.testing.assert_array_equal(out, [0, 0, 1, -1, 1, 1, 9])


def test_integer_division_truncates_toward_zero_exactly_for_large_int64() -> None:
    a = np.array([-7, 7, -7, 2**62 + 1, -(2**62) - 3], np.int64)
    b = np.array([2, -2, -2, 3, 7], np.int64)
    (out,) = run_op("Div", [a, b])
    np.testing.assert_array_equal(out, [-3, -3, 3, (2**62 + 1) // 3, -((2**62 + 3) // 7)])


def test_ieee_results_raise_no_warnings() -> None:
    with np.errstate(all="raise"):
        (out,) = run_op("Div", [np.float32([1, -1, 0]), np.float32([0, 0, 0])])
        (lg,) = run_op("Log", [np.float32([-1.0, 0.0])])
    assert np.isposinf(out[0]) and np.isneginf(out[1]) and np.isnan(out[2])
    assert np.isnan(lg[0]) and np.isneginf(lg[1])


def test_dropout_training_mode_true_at_run_time_is_an_error() -> None:
    x = fl(3)
    with pytest.raises(InterpreterError, match="training_mode"):
        run_op("Dropout", [x, np.float32(0.5), np.bool_(True)])


def test_cast_codes_follow_onnx_tensorproto() -> None:
    """Every TensorProto code either maps to the dtype ONNX means, or is refused by name."""
    reached = set()
    for name, code in onnx.TensorProto.DataType.items():
        try:
            want = DType.from_numpy(helper.tensor_dtype_to_np_dtype(code))
        except Exception:  # no NumPy dtype (string, undefined) or none in tensorir
            want = None
        g = Graph("cast")
        x = g.add_input("x", TensorType((2,), DType.float32))
        if want is None:
            with pytest.raises(ShapeError, match=f"to={code} \\({name}\\)"):
                g.add_op("Cast", [x], {"to": code})
        else:
            assert g.add_op("Cast", [x], {"to": code}).result.type.dtype is want
            reached.add(want)
    assert reached == set(DType)


# --------------------------------------------------------------------------------------------
# FLOPs, hand counted

FLOP_CASES = [
    ("Add", [fl(2, 3), fl(3)], {}, 6),
    ("Div", [fl(4), fl(4)], {}, 4),
    ("Pow", [fl(2, 2), ints(1)], {}, 4),
    ("Exp", [fl(2, 5)], {}, 10),
    ("Relu", [fl(7)], {}, 7),
    ("Sigmoid", [fl(2, 2)], {}, 16),          # neg exp add div
    ("Softplus", [fl(2)], {}, 6),             # exp add log
    ("Mish", [fl(10)], {}, 50),               # softplus 3, tanh, mul
    ("HardSigmoid", [fl(3)], {}, 12),         # mul add min max
    ("HardSwish", [fl(10)], {}, 50),          # hardsigmoid 4, mul
    ("LeakyRelu", [fl(3)], {"alpha": 0.1}, 6),
    ("PRelu", [fl(2, 3), fl(3)], {}, 12),
    ("Elu", [fl(3)], {}, 12),                 # select exp sub mul
    ("Selu", [fl(3)], {}, 15),
    ("Gelu", [fl(4, 5)], {}, 100),            # div erf add mul mul
    ("Gelu", [fl(4, 5)], {"approximate": "tanh"}, 180),
    ("Clip", [fl(10)], {}, 0),
    ("Clip", [fl(10), np.float32(0)], {}, 10),
    ("Clip", [fl(10), None, np.float32(1)], {}, 10),
    ("Clip", [fl(10), np.float32(0), np.float32(1)], {}, 20),
    ("Max", [fl(2, 3), fl(3), fl(1)], {}, 12),
    ("Min", [fl(5)], {}, 0),
    ("Sum", [fl(2, 3), fl(2, 3)], {}, 6),
    ("Mean", [fl(2, 3), fl(3), fl(1)], {}, 18),
    ("Where", [bools(2, 3), fl(3), fl(1)], {}, 6),
    ("Equal", [ints(2, 3), ints(3)], {}, 6),
    ("Not", [bools(4)], {}, 4),
    ("IsNaN", [fl(4)], {}, 4),
    ("Cast", [fl(4)], {"to": 7}, 0),
    ("CastLike", [fl(2, 4), ints(3)], {}, 0),
    ("Identity", [fl(4)], {}, 0),
    ("Dropout", [fl(4)], {"num_outputs": 2}, 0),
]


@pytest.mark.parametrize("op,arrays,attrs_,expected", FLOP_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FLOP_CASES)])
def test_flops_hand_counted(op: str, arrays: list, attrs_: dict, expected: int) -> None:
    assert flops_of(op, arrays, attrs_) == expected


def test_flops_stay_symbolic() -> None:
    g = Graph("sym")
    x = g.add_input("x", TensorType(("batch", 3), DType.float32))
    y = g.add_input("y", TensorType((3,), DType.float32))
    add = g.add_op("Add", [x, y])
    mean = g.add_op("Mean", [x, y, x])
    assert get_op_def("Add").flops(op_context(add)) == "3*batch"
    assert get_op_def("Mean").flops(op_context(mean)) == "9*batch"


# --------------------------------------------------------------------------------------------
# iteration domains

def domain_of(op: str, arrays: list, attrs_: dict | None = None, const_inputs: tuple = ()):
    _, o = build_op(op, arrays, attrs_, const_inputs)
    d = op_domain(o)
    fmt = [None if m is None else m.format(d.names) for m in d.inputs]
    return d, fmt


def test_domain_of_a_broadcast_add_reads_the_small_operand_along_d1_only() -> None:
    d, ins = domain_of("Add", [fl(2, 3), fl(3)])
    assert d.names == ("d0", "d1") and d.extents == (2, 3)
    assert ins == ["[d0, d1]", "[d1]"]
    assert d.reduction_dims() == ()
    assert [m.format(d.names) for m in d.outputs] == ["[d0, d1]"]


def test_domain_broadcast_size_one_dims_read_index_zero() -> None:
    _, ins = domain_of("Sub", [fl(2, 1), fl(1, 3)])
    assert ins == ["[d0, 0]", "[0, d1]"]
    _, ins = domain_of("Where", [bools(2, 1, 4), fl(3, 1), fl(4)])
    assert ins == ["[d0, 0, d2]", "[d1, 0]", "[d2]"]
    _, ins = domain_of("Max", [fl(2, 1, 3), fl(4, 1), fl(3)])
    assert ins == ["[d0, 0, d2]", "[d1, 0]", "[d2]"]
    _, ins = domain_of("PRelu", [fl(2, 3, 4, 4), fl(3, 1, 1)])
    assert ins == ["[d0, d1, d2, d3]", "[d1, 0, 0]"]


def test_domain_scalar_operands_read_index_zero() -> None:
    d, ins = domain_of("Clip", [fl(2, 3), np.float32(0)], const_inputs=(1,))
    assert ins == ["[d0, d1]", "[]"]
    d, ins = domain_of("Clip", [fl(2, 3), None, np.float32([[[1]]])])
    assert ins == ["[d0, d1]", None, "[0, 0, 0]"]
    assert d.extents == (2, 3)
    d, ins = domain_of("Dropout", [fl(2, 3), np.float32(0.1)], {"num_outputs": 2})
    assert ins == ["[d0, d1]", "[]"]
    assert [m.format(d.names) for m in d.outputs] == ["[d0, d1]", "[d0, d1]"]


def test_cast_like_domain_is_elementwise_and_does_not_read_target_type() -> None:
    for target in (fl(4, dtype=np.float16), fl(2, 3, dtype=np.float16), np.float16(1), fl(1)):
        d, ins = domain_of("CastLike", [fl(2, 3), target])
        assert d.names == ("d0", "d1") and d.extents == (2, 3)
        assert ins == ["[d0, d1]", None]
        assert [m.format(d.names) for m in d.outputs] == ["[d0, d1]"]
        assert d.reduction_dims() == ()
    d, ins = domain_of("CastLike", [fl(5, 1), ints(2)])
    assert d.extents == (5, 1) and ins == ["[d0, d1]", None]


def test_domain_keeps_symbolic_extents() -> None:
    g = Graph("sym")
    x = g.add_input("x", TensorType(("batch", 3), DType.float32))
    y = g.add_input("y", TensorType((3,), DType.float32))
    d = op_domain(g.add_op("Add", [x, y]))
    assert d.extents == ("batch", 3) and d.size == "3*batch"


# --------------------------------------------------------------------------------------------
# typed errors

def add(op: str, types: Sequence[TensorType | None], attrs_: dict | None = None):
    g = Graph("t")
    operands = [None if t is None else g.add_input(f"x{i}", t) for i, t in enumerate(types)]
    return g.add_op(op, operands, attrs_ or {})


def T(shape: Sequence[Any], dtype: DType = DType.float32) -> TensorType:
    return TensorType(tuple(shape), dtype)


F32, F16, I32, I64, I8, BOOL = (DType.float32, DType.float16, DType.int32, DType.int64,
                                DType.int8, DType.bool)


def test_shape_mismatch_names_op_operand_and_both_shapes() -> None:
    with pytest.raises(ShapeError) as e:
        add("Add", [T([2, 3]), T([4])])
    msg = str(e.value)
    assert msg.startswith("Add operand 1:")
    assert "[4]" in msg and "[2, 3]" in msg


@pytest.mark.parametrize("op,types", [
    ("Sub", [T([2, 3]), T([2, 2])]),
    ("Pow", [T([5]), T([4], I64)]),
    ("Equal", [T([2, 3], I64), T([3, 2], I64)]),
    ("Where", [T([4], BOOL), T([4]), T([3])]),
    ("Max", [T([2, 3]), T([3]), T([2])]),
])
def test_broadcast_errors_name_the_clashing_operand(op: str, types: list) -> None:
    with pytest.raises(ShapeError) as e:
        add(op, types)
    bad = len(types) - 1
    assert str(e.value).startswith(f"{op} operand {bad}:")
    assert str(list(types[bad].shape)) in str(e.value)


@pytest.mark.parametrize("op,types,needle", [
    ("Add", [T([2]), T([2], I32)], "dtype i32 differs from operand 0's f32"),
    ("Add", [T([2], BOOL), T([2], BOOL)], "dtype bool is not supported"),
    ("Log", [T([2], I64)], "dtype i64 is not supported"),
    ("Neg", [T([2], DType.uint8)], "dtype u8 is not supported"),
    ("Relu", [T([2], BOOL)], "dtype bool is not supported"),
    ("Sum", [T([2], I32)], "dtype i32 is not supported"),
    ("Pow", [T([2], I8), T([2], I8)], "dtype i8 is not supported"),
    ("Pow", [T([2]), T([2], BOOL)], "exponent dtype bool"),
    ("Where", [T([2]), T([2]), T([2])], "condition dtype f32"),
    ("Where", [T([2], BOOL), T([2]), T([2], F16)], "dtype f16 differs"),
    ("And", [T([2], BOOL), T([2], I32)], "dtype i32 is not supported"),
    ("PRelu", [T([2]), T([2], F16)], "differs"),
    ("Clip", [T([2]), T([], I32)], "min has dtype i32"),
    ("Dropout", [T([2]), T([], BOOL)], "ratio dtype bool"),
    ("Dropout", [T([2]), T([]), T([], F32)], "training_mode dtype f32"),
])
def test_dtype_errors(op: str, types: list, needle: str) -> None:
    with pytest.raises(ShapeError, match=needle.replace("(", r"\(")) as e:
        add(op, types)
    assert str(e.value).startswith(op)


@pytest.mark.parametrize("op,n", [("Add", 1), ("Add", 3), ("Relu", 2), ("Where", 2),
                                  ("CastLike", 1), ("CastLike", 3),
                                  ("Clip", 4), ("Dropout", 4), ("Max", 0), ("Not", 2)])
def test_wrong_arity_is_an_invalid_op_error(op: str, n: int) -> None:
    dtype = BOOL if op == "Not" else F32
    with pytest.raises(InvalidOpError, match=f"got {n}") as e:
        add(op, [T([2], dtype)] * n)
    assert not isinstance(e.value, ShapeError)


@pytest.mark.parametrize("op,types,attrs_,error,needle", [
    ("Gelu", [T([2])], {"approximate": "fast"}, ShapeError, "approximate='fast'"),
    ("Mod", [T([2], I32), T([2], I32)], {"fmod": 2}, ShapeError, "fmod=2"),
    ("Cast", [T([2])], {"to": 8}, ShapeError, r"to=8 \(STRING\)"),
    ("Cast", [T([2])], {"to": "float"}, ShapeError, "ONNX TensorProto data type code"),
    ("Cast", [T([2])], {}, InvalidOpError, "missing required attribute 'to'"),
    ("Cast", [T([2])], {"to": 1, "round_mode": "sideways"}, ShapeError, "round_mode"),
    ("CastLike", [T([2]), T([], I32)], {"round_mode": "sideways"}, ShapeError, "round_mode"),
    ("CastLike", [T([2]), T([], I32)], {"saturate": 2}, ShapeError, "saturate=2"),
    ("CastLike", [T([2]), T([], I32)], {"to": 6}, InvalidOpError, "unknown attribute"),
    ("LeakyRelu", [T([2])], {"beta": 0.1}, InvalidOpError, "unknown attribute"),
    ("Dropout", [T([2])], {"num_outputs": 3}, ShapeError, "num_outputs=3"),
    ("PRelu", [T([3]), T([2, 3])], {}, ShapeError, "more dims"),
    ("PRelu", [T([2, 1]), T([3])], {}, ShapeError, "unidirectionally"),
    ("Clip", [T([2, 3]), T([2])], {}, ShapeError, r"min must be a scalar .* \[2\]"),
    ("Clip", [T([2, 3]), None, T(["batch"])], {}, ShapeError, "max must be a scalar"),
])
def test_attribute_and_operand_errors(op: str, types: list, attrs_: dict, error: type,
                                      needle: str) -> None:
    with pytest.raises(error, match=needle):
        add(op, types, attrs_)


def test_dropout_constant_operands_are_checked() -> None:
    x = fl(3)
    with pytest.raises(ShapeError, match="training_mode is true"):
        build_op("Dropout", [x, np.float32(0.5), np.bool_(True)], const_inputs=(1, 2))
    with pytest.raises(ShapeError, match="training_mode is true"):
        build_op("Dropout", [x, None, np.bool_(True)], const_inputs=(2,))
    with pytest.raises(ShapeError, match=r"ratio 1.0 is outside \[0, 1\)"):
        build_op("Dropout", [x, np.float32(1.0)], const_inputs=(1,))


# --------------------------------------------------------------------------------------------
# broadcasting property: inference agrees with NumPy, and fails exactly when NumPy does

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=4).map(tuple)

BINARY_DTYPES = {
    "Add": (F32, F32), "Pow": (F32, I64), "Equal": (I64, I64), "And": (BOOL, BOOL),
    "Mod": (I32, I32), "Less": (DType.uint8, DType.uint8),
}


@pytest.mark.parametrize("op", sorted(BINARY_DTYPES))
@settings(max_examples=60, deadline=None)
@given(a=shapes, b=shapes)
def test_binary_broadcast_matches_numpy(op: str, a: tuple, b: tuple) -> None:
    da, db = BINARY_DTYPES[op]
    try:
        want = np.broadcast_shapes(a, b)
    except ValueError:
        with pytest.raises(ShapeError):
            add(op, [T(a, da), T(b, db)])
        return
    assert add(op, [T(a, da), T(b, db)]).result.type.shape == want


@settings(max_examples=80, deadline=None)
@given(many=st.lists(shapes, min_size=1, max_size=4), where=st.tuples(shapes, shapes, shapes))
def test_variadic_and_where_broadcast_match_numpy(many: list, where: tuple) -> None:
    for op, types in (("Max", [T(s) for s in many]),
                      ("Where", [T(where[0], BOOL), T(where[1]), T(where[2])])):
        try:
            want = np.broadcast_shapes(*(t.shape for t in types))
        except ValueError:
            with pytest.raises(ShapeError):
                add(op, types)
            continue
        assert add(op, types).result.type.shape == want


# --------------------------------------------------------------------------------------------
# symbolic dims: inference keeps the symbol, evaluation takes shapes from the arrays

def test_symbolic_batch_is_kept_and_evaluation_uses_array_shapes() -> None:
    g = Graph("sym")
    x = g.add_input("x", TensorType(("batch", 3), DType.float32))
    y = g.add_input("y", TensorType((3,), DType.float32))
    c = g.add_input("c", TensorType(("batch", 1), DType.bool))
    s = g.add_op("Add", [x, y]).result
    w = g.add_op("Where", [c, s, y]).result
    k = g.add_op("Clip", [w, None, g.add_constant("hi", np.float32(1.0))]).result
    gl = g.add_op("Gelu", [k], {"approximate": "tanh"}).result
    d = g.add_op("Dropout", [gl], {"num_outputs": 2})
    cast = g.add_op("Cast", [d.results[1]], {"to": 6}).result
    mx = g.add_op("Max", [cast, g.add_constant("z", np.int32([0, 0, 0]))]).result
    for v in (s, w, k, gl, d.results[0]):
        assert v.type == TensorType(("batch", 3), DType.float32)
    assert d.results[1].type == TensorType(("batch", 3), DType.bool)
    assert mx.type == TensorType(("batch", 3), DType.int32)
    g.set_outputs([d.results[0], mx])

    xa, ya, ca = fl(5, 3), fl(3), bools(5, 1)
    out = interpret(g, {"x": xa, "y": ya, "c": ca})
    expected = np.minimum(np.where(ca, xa + ya, ya), 1.0)
    assert out[d.results[0].name].shape == (5, 3)
    (gelu_ref,) = model_reference("Gelu", [expected.astype(np.float32)],
                                  {"approximate": "tanh"}, 1)
    np.testing.assert_allclose(out[d.results[0].name], gelu_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[mx.name], np.ones((5, 3), np.int32))


# --------------------------------------------------------------------------------------------
# conformance with the ONNX schemas: dtypes accepted and attributes with their defaults

OURS = {f"tensor({n})": d for n, d in [
    ("double", DType.float64), ("float", DType.float32), ("float16", DType.float16),
    ("bfloat16", DType.bfloat16), ("int64", DType.int64), ("int32", DType.int32),
    ("int16", DType.int16), ("int8", DType.int8), ("int4", DType.int4),
    ("uint8", DType.uint8), ("bool", DType.bool)]}


def _allowed(schema: Any) -> dict[str, set]:
    return {tc.type_param_str: {OURS[t] for t in tc.allowed_type_strs if t in OURS}
            for tc in schema.type_constraints}


def _default_dtype(allowed: set) -> DType:
    for d in (DType.float32, DType.bool, DType.int64):
        if d in allowed:
            return d
    return sorted(allowed, key=lambda d: d.value)[0]


@pytest.mark.parametrize("op", ELEMENTWISE_OPS)
def test_accepted_dtypes_are_exactly_onnx_type_constraints(op: str) -> None:
    schema = defs.get_schema(op)
    allowed = _allowed(schema)
    params = [i.type_str for i in schema.inputs]
    if schema.inputs[-1].option == defs.OpSchema.FormalParameterOption.Variadic:
        params = params * 2  # two operands of a variadic op
    attrs_ = {"to": 1} if op == "Cast" else {}
    out_param = schema.outputs[0].type_str
    for param in dict.fromkeys(params):
        for dtype in DType:
            chosen = {p: (dtype if p == param else _default_dtype(allowed[p])) for p in params}
            types = [T([], chosen[p]) for p in params]
            try:
                o = add(op, types, attrs_)
            except ShapeError:
                assert dtype not in allowed[param], f"{op} refuses {param}={dtype}"
                continue
            assert dtype in allowed[param], f"{op} accepts {param}={dtype}, ONNX does not"
            if out_param in chosen:
                assert o.results[0].type.dtype is chosen[out_param]
            elif len(allowed[out_param]) == 1:
                assert o.results[0].type.dtype in allowed[out_param]


def _onnx_default(a: Any) -> Any:
    v = a.default_value
    if v.type == onnx.AttributeProto.UNDEFINED:
        return None
    value = helper.get_attribute_value(v)
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize("op", ELEMENTWISE_OPS)
def test_attributes_and_defaults_are_onnx_s(op: str) -> None:
    schema = defs.get_schema(op)
    ours = dict(get_op_def(op).attributes)
    if op == "Dropout":
        del ours["num_outputs"]  # tensorir's result-count attribute, documented in the module
    assert set(ours) == set(schema.attributes)
    for name, a in schema.attributes.items():
        want = _onnx_default(a)
        if a.required:
            assert ours[name] is not None and _onnx_default(a) is None
            continue
        if isinstance(want, float):
            assert ours[name] == pytest.approx(want, rel=1e-7), name  # ONNX stores f32
        else:
            assert ours[name] == want, name


def test_arity_is_onnx_s() -> None:
    for op in ELEMENTWISE_OPS:
        schema, d = defs.get_schema(op), get_op_def(op)
        assert (d.min_inputs, d.max_inputs) == (schema.min_input, schema.max_input), op


def _sample(dtype: DType, shape: tuple) -> np.ndarray:
    """Values every op accepts (positive, small, exact in int4); bools alternate, and a rank-0
    bool is False (Dropout's training_mode)."""
    n = int(np.prod(shape))
    if dtype is DType.bool:
        return (np.arange(n) % 2 == 1 if shape == () else np.arange(n) % 2 == 0).reshape(shape)
    v = np.linspace(0.5, 3.0, n).reshape(shape)
    if dtype.is_float:
        return v.astype(dtype.numpy)
    return np.round(v).astype(np.int64).astype(dtype.numpy)


_TOL = {DType.bfloat16: 2e-2, DType.float16: 2e-3}


def _assert_like_reference(ours: list, ref: list) -> None:
    for o, r in zip(ours, ref):
        r = np.asarray(r)
        assert o.dtype == r.dtype and o.shape == r.shape
        tol = _TOL.get(DType.from_numpy(o.dtype), 1e-5)
        np.testing.assert_allclose(comparable(o).astype(np.float64),
                                   comparable(r).astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ELEMENTWISE_OPS)
def test_every_accepted_dtype_evaluates_like_onnx_reference(op: str) -> None:
    schema = defs.get_schema(op)
    allowed = _allowed(schema)
    params = [i.type_str for i in schema.inputs]
    if schema.inputs[-1].option == defs.OpSchema.FormalParameterOption.Variadic:
        params = params * 2
    attrs_ = {"to": 1} if op == "Cast" else {}
    for param in dict.fromkeys(params):
        for dtype in sorted(allowed[param], key=lambda d: d.value):
            chosen = {p: (dtype if p == param else _default_dtype(allowed[p])) for p in params}
            arrays = [_sample(chosen[p], (4,) if i == 0 else ()) for i, p in enumerate(params)]
            ours = run_op(op, arrays, attrs_)
            ref = (model_reference(op, arrays, attrs_, 1) if op == "Gelu"
                   else onnx_reference(op, arrays, attrs_, opset=NEWEST))
            _assert_like_reference(ours, ref)


def test_cast_between_every_pair_of_dtypes_like_onnx_reference() -> None:
    codes = {DType.from_numpy(helper.tensor_dtype_to_np_dtype(c)): c
             for c in (1, 2, 3, 5, 6, 7, 9, 10, 11, 16, 22)}
    assert set(codes) == set(DType)
    for src in DType:
        for dst, code in codes.items():
            x = _sample(src, (4,))
            (ours,) = run_op("Cast", [x], {"to": code})
            assert ours.dtype == dst.numpy
            _assert_like_reference([ours], onnx_reference("Cast", [x], {"to": code},
                                                          opset=NEWEST))


# --------------------------------------------------------------------------------------------
# CastLike: Cast with the target dtype taken from an operand

def test_cast_like_takes_dtype_from_operand_1_and_shape_from_operand_0() -> None:
    g = Graph("castlike")
    x = g.add_input("x", TensorType(("batch", 3), DType.float32))
    for target_shape, dtype in [((), DType.float16), ((7, 2, 5), DType.int32),
                                (("n",), DType.bool), ((3,), DType.float32),
                                (("batch", 3), DType.int4), ((1,), DType.bfloat16)]:
        t = g.add_input(g.unique_name("t"), TensorType(target_shape, dtype))
        assert g.add_op("CastLike", [x, t]).result.type == TensorType(("batch", 3), dtype)
    scalar = g.add_input("s", TensorType((), DType.int64))
    target = g.add_input("tt", TensorType((4, 4), DType.float64))
    assert g.add_op("CastLike", [scalar, target]).result.type == TensorType((), DType.float64)


def test_cast_like_evaluates_as_cast_to_the_target_dtype() -> None:
    """One implementation: CastLike(x, t) is Cast(x, to=dtype(t)) for every pair of dtypes,
    and both are onnx.reference's CastLike."""
    codes = {DType.from_numpy(helper.tensor_dtype_to_np_dtype(c)): c
             for c in (1, 2, 3, 5, 6, 7, 9, 10, 11, 16, 22)}
    for src in DType:
        for dst, code in codes.items():
            x, target = _sample(src, (2, 3)), _sample(dst, (1,))
            (ours,) = run_op("CastLike", [x, target])
            (cast,) = run_op("Cast", [x], {"to": code})
            assert ours.dtype == dst.numpy and ours.shape == (2, 3)
            np.testing.assert_array_equal(comparable(ours), comparable(cast))
            _assert_like_reference([ours], onnx_reference("CastLike", [x, target],
                                                          opset=NEWEST))


def test_cast_like_ignores_the_target_values() -> None:
    x = fl(2, 3)
    (a,) = run_op("CastLike", [x, np.float16([np.nan, 1e4])])
    (b,) = run_op("CastLike", [x, np.zeros((4, 5, 6), np.float16)])
    np.testing.assert_array_equal(a, b)
