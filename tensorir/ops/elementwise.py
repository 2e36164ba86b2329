"""Elementwise ops: arithmetic, activations, comparisons, logic, Cast, CastLike, Identity, Where,
Dropout.

Every op here follows the newest ONNX opset's semantics (attribute names and defaults as ONNX),
broadcasts NumPy-style where ONNX says "multidirectional broadcasting", and accepts exactly the
element types ONNX's type constraints allow among tensorir's dtypes (checked against the onnx
schemas by the tests). Evaluations are vectorised NumPy with IEEE semantics (inf and NaN results
are values, not warnings); half-precision inputs (f16, bf16) are computed in f32 and rounded back.

FLOP convention (per output element). A primitive arithmetic operation (+ - * /, pow, mod,
neg, abs, floor, ceil, round, sign, reciprocal, min, max, a compare, a logical op, a select)
counts 1; a transcendental function (exp, log, sqrt, erf, tanh, sin, cos) also counts 1, as in
fvcore and onnx-tool. Composite activations count every operation of their ONNX defining
formula once, constants folded (so ``x / sqrt(2)`` is one division):

    Sigmoid     1 / (1 + exp(-x))                                   neg exp add div       = 4
    Softplus    log(exp(x) + 1)                                     exp add log           = 3
    Mish        x * tanh(softplus(x))                               3 + tanh + mul        = 5
    LeakyRelu   x < 0 ? alpha * x : x                               select mul            = 2
    PRelu       x < 0 ? slope * x : x                               select mul            = 2
    Elu         x < 0 ? alpha * (exp(x) - 1) : x                    select exp sub mul    = 4
    Selu        gamma * (x <= 0 ? alpha * (exp(x) - 1) : x)         Elu + mul             = 5
    HardSigmoid max(0, min(1, alpha * x + beta))                    mul add min max       = 4
    HardSwish   x * HardSigmoid(x; 1/6, 1/2)                        4 + mul               = 5
    Gelu none   0.5 * x * (1 + erf(x / sqrt(2)))                    div erf add mul mul   = 5
    Gelu tanh   0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
                x^3 (2 mul), mul, add, mul, tanh, add, mul, mul                           = 9
    Clip        min(max(x, lo), hi)                                 1 per bound given     = 0..2
    Max/Min/Sum of n operands                                       n - 1
    Mean of n operands                                              n - 1 adds + 1 div    = n

Cast, CastLike, Identity and Dropout (inference) compute nothing: 0 FLOPs. They keep the
ELEMENTWISE category because their iteration domain is the elementwise one (output point i reads
input point i through an identity map; CastLike's target_type, whose dtype alone matters, has no
map), so fusion and tiling passes can treat them like any other elementwise op; DATA_MOVEMENT is
for ops whose maps permute or gather (Transpose, Concat).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..dtypes import ONNX_CODES, ONNX_UNSUPPORTED_NAMES, DType
from ..errors import InterpreterError
from ..types import TensorType
from .common import as_dtype, broadcast_shapes, elementwise_op_domain, same_dtype
from .domain import AffineExpr, AffineMap, IterationDomain, elementwise_domain
from .registry import REQUIRED, Category, OpContext, OpDef, register

# ---------------------------------------------------------------------------------------------
# dtype classes, named after ONNX's type constraints restricted to tensorir's dtypes

FLOATS = frozenset({DType.float64, DType.float32, DType.float16, DType.bfloat16})
SIGNED_INTS = frozenset({DType.int64, DType.int32, DType.int16, DType.int8})
SIGNED = FLOATS | SIGNED_INTS                        # Neg, Relu
NUMERIC = SIGNED | {DType.uint8}                     # Add, Max, Clip, Greater ...
NUMERIC_OR_BOOL = NUMERIC | {DType.bool}             # Equal, Where's X and Y
BOOL = frozenset({DType.bool})
ALL = NUMERIC_OR_BOOL | {DType.int4}                 # Cast, CastLike, Identity
POW_BASE = FLOATS | {DType.int32, DType.int64}       # Pow's T (its exponent T1 is NUMERIC)
PRELU = FLOATS | {DType.int32, DType.int64}

MANY = 2**31 - 1  # ONNX's bound for variadic operands


_HALF = (np.dtype(np.float16), DType.bfloat16.numpy)


def _names(allowed: Iterable[DType]) -> str:
    allowed = set(allowed)
    return ", ".join(d.short for d in DType if d in allowed)


def _check_dtype(ctx: OpContext, i: int, allowed: frozenset, what: str = "") -> DType:
    """Operand ``i``'s dtype, which must be one ONNX allows for this operand."""
    dtype = ctx.type(i).dtype
    if dtype not in allowed:
        subject = f"{what} dtype" if what else "dtype"
        raise ctx.fail(f"{subject} {dtype} is not supported; expected one of {_names(allowed)}",
                       operand=i)
    return dtype


def _c(x: np.ndarray) -> np.ndarray:
    """The array to compute on: f16 and bf16 in f32 (NumPy and ml_dtypes lack some half
    kernels, and one rounding at the end is what the ONNX reference gets for single ops)."""
    return x.astype(np.float32) if x.dtype in _HALF else x


def _scalar_map(shape: Sequence[Dim], ndims: int) -> AffineMap:
    """The map of a one-element operand (Clip's bounds, Dropout's ratio): always index 0."""
    return AffineMap(tuple(AffineExpr.constant(0, ndims) for _ in shape))


def _require_one_element(ctx: OpContext, i: int, what: str) -> None:
    """ONNX scalars: rank 0, or (as exporters often write them) every dim 1."""
    shape = ctx.shape(i)
    if any(d != 1 for d in shape):
        raise ctx.fail(f"{what} must be a scalar (one element), got shape {list(shape)}",
                       operand=i)


def _scalar_value(array: Any) -> Any:
    return np.asarray(array).reshape(()).item()


# ---------------------------------------------------------------------------------------------
# a vectorised erf (W. J. Cody, "Rational Chebyshev approximations for the error function",
# Math. Comp. 23 (1969); the coefficients of netlib's SPECFUN CALERF). Max error in float64
# about 1e-16; tested against math.erf on a dense grid.

_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_RSQRTPI = 0.56418958354775628695


def _erfc_tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875 (Cody's second and third intervals)."""
    mid = y <= 4.0
    r = np.empty_like(y)
    ym = y[mid]
    num, den = _ERF_C[8] * ym, ym
    for i in range(7):
        num, den = (num + _ERF_C[i]) * ym, (den + _ERF_D[i]) * ym
    r[mid] = (num + _ERF_C[7]) / (den + _ERF_D[7])
    # beyond 27 erfc underflows to 0; clipping keeps inf out of the rational function
    yb = np.minimum(y[~mid], 27.0)
    z = 1.0 / (yb * yb)
    num, den = _ERF_P[5] * z, z
    for i in range(4):
        num, den = (num + _ERF_P[i]) * z, (den + _ERF_Q[i]) * z
    rb = z * (num + _ERF_P[4]) / (den + _ERF_Q[4])
    r[~mid] = (_RSQRTPI - rb) / yb
    # exp(-y^2) split as exp(-ys^2) * exp(-(y - ys)(y + ys)) with ys = y rounded to 1/16, so
    # that y^2 is not rounded before the exponential (Cody's trick; keeps relative accuracy)
    yc = np.minimum(y, 27.0)
    ys = np.trunc(yc * 16.0) / 16.0
    return np.exp(-ys * ys) * np.exp(-(yc - ys) * (yc + ys)) * r


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of a float array, computed in float64 (NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = x.copy()  # NaN where y is NaN (no mask below selects it)
    small = y <= 0.46875
    ys = y[small]
    z = ys * ys
    num, den = _ERF_A[4] * z, z
    for i in range(3):
        num, den = (num + _ERF_A[i]) * z, (den + _ERF_B[i]) * z
    out[small] = ys * (num + _ERF_A[3]) / (den + _ERF_B[3])
    large = y > 0.46875
    out[large] = 1.0 - _erfc_tail(y[large])
    return np.copysign(out, x)


# ---------------------------------------------------------------------------------------------
# registration helpers: each elementwise op declares the dtypes ONNX allows it

def _ieee(fn: Callable[[OpContext, list], list]) -> Callable[[OpContext, list], list]:
    """Evaluate with IEEE semantics: 1/0 = inf and log(-1) = NaN are ONNX's answers, and the
    integer wrap-around ONNX specifies for Cast is not an error either, so NumPy's warnings
    about them are noise."""

    @functools.wraps(fn)
    def evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            return fn(ctx, inputs)

    return evaluate


def _register(name: str, infer: Callable, evaluate: Callable, *, flops: int = 0,
              flops_fn: Callable[[OpContext], Dim] | None = None,
              attributes: dict | None = None, min_inputs: int = 1, max_inputs: int = 1,
              commutative: bool = False,
              domain: Callable[[OpContext], IterationDomain] = elementwise_op_domain,
              special: int = 0, doc: str = "") -> OpDef:
    return register(OpDef(name, Category.ELEMENTWISE, infer, _ieee(evaluate), domain,
                          flops_per_point=flops, flops_fn=flops_fn,
                          attributes=attributes or {}, min_inputs=min_inputs,
                          max_inputs=max_inputs, commutative=commutative,
                          special_functions=special, doc=doc))


def _per_point(count: Callable[[OpContext], int]) -> Callable[[OpContext], Dim]:
    """A FLOP count of ``count(ctx)`` per point of the elementwise domain."""

    def flops(ctx: OpContext) -> Dim:
        return _dims.mul(elementwise_op_domain(ctx).size, count(ctx))

    return flops


def _unary(name: str, fn: Callable[[np.ndarray, OpContext], np.ndarray], allowed: frozenset,
           *, flops: int = 1, result_dtype: DType | None = None,
           attributes: dict | None = None,
           check_attrs: Callable[[OpContext], None] | None = None,
           flops_fn: Callable[[OpContext], Dim] | None = None, special: int = 0,
           doc: str = "") -> OpDef:
    """One operand, result of its shape (and dtype unless ``result_dtype``); ``special``:
    special-function evaluations per element (exp, log, tanh ...)."""

    def infer(ctx: OpContext) -> list[TensorType]:
        dtype = _check_dtype(ctx, 0, allowed)
        if check_attrs is not None:
            check_attrs(ctx)
        return [TensorType(ctx.shape(0), result_dtype or dtype)]

    def evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
        return [as_dtype(fn(inputs[0], ctx), ctx.result_type(0).dtype)]

    return _register(name, infer, evaluate, flops=flops, flops_fn=flops_fn,
                     attributes=attributes, special=special, doc=doc)


def _nary(name: str, fn: Callable[[list, OpContext], np.ndarray], allowed: frozenset, *,
          flops: int = 1, min_inputs: int = 2, max_inputs: int = 2,
          result_dtype: DType | None = None, commutative: bool = False,
          attributes: dict | None = None,
          check_attrs: Callable[[OpContext], None] | None = None,
          flops_fn: Callable[[OpContext], Dim] | None = None, doc: str = "") -> OpDef:
    """Operands of one dtype broadcast NumPy-style (multidirectionally)."""

    def infer(ctx: OpContext) -> list[TensorType]:
        operands = range(ctx.num_operands)
        for i in operands:
            _check_dtype(ctx, i, allowed)
        dtype = same_dtype(ctx, operands)
        if check_attrs is not None:
            check_attrs(ctx)
        return [TensorType(broadcast_shapes(ctx, operands), result_dtype or dtype)]

    def evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
        return [as_dtype(fn(list(inputs), ctx), ctx.result_type(0).dtype)]

    return _register(name, infer, evaluate, flops=flops, flops_fn=flops_fn,
                     attributes=attributes, min_inputs=min_inputs, max_inputs=max_inputs,
                     commutative=commutative, doc=doc)


def _binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], allowed: frozenset,
            *, half_in_f32: bool = True, **kw: Any) -> OpDef:
    if half_in_f32:
        return _nary(name, lambda xs, ctx: fn(_c(xs[0]), _c(xs[1])), allowed, **kw)
    return _nary(name, lambda xs, ctx: fn(xs[0], xs[1]), allowed, **kw)


def _float_unary(name: str, fn: Callable[[np.ndarray], np.ndarray], *, flops: int = 1,
                 special: int = 0, doc: str = "") -> OpDef:
    return _unary(name, lambda x, ctx: fn(_c(x)), FLOATS, flops=flops, special=special,
                  doc=doc)


def _check_choice(key: str, choices: Sequence[Any]) -> Callable[[OpContext], None]:
    def check(ctx: OpContext) -> None:
        value = ctx.attr(key)
        if isinstance(value, bytes):
            value = value.decode()
        if value not in choices or isinstance(value, bool):
            raise ctx.fail(f"attribute {key}={value!r} is not one of "
                           f"{', '.join(repr(c) for c in choices)}")

    return check


# ---------------------------------------------------------------------------------------------
# arithmetic

def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        # ONNX integer division truncates toward zero (C semantics); exact in integers, where a
        # float division would lose digits of large int64 values
        q = np.floor_divide(a, b)
        adjust = (np.remainder(a, b) != 0) & ((a < 0) ^ (b < 0))
        return q + adjust.astype(q.dtype)
    return np.divide(a, b)


def _pow(xs: list, ctx: OpContext) -> np.ndarray:
    x, y = xs
    if x.dtype.kind in "iu":
        if y.dtype.kind in "iu":
            # NumPy refuses negative integer exponents; the truncated real result is 0 unless
            # |x| == 1 (0 ** -k is undefined in ONNX; it gives 0 here)
            negative = y < 0
            out = np.power(x, np.where(negative, 0, y))
            if np.any(negative):
                odd = (y % 2) != 0
                inverse = np.where(x == 1, 1, np.where(x == -1, np.where(odd, -1, 1), 0))
                out = np.where(negative, inverse, out)
            return out
        # an integer base with a float exponent: real power, truncated by the cast to x's dtype
        return np.power(x.astype(np.float64), y.astype(np.float64))
    xc = _c(x)
    return np.power(xc, y.astype(xc.dtype))


def _infer_pow(ctx: OpContext) -> list[TensorType]:
    dtype = _check_dtype(ctx, 0, POW_BASE)
    _check_dtype(ctx, 1, NUMERIC, "exponent")
    return [TensorType(broadcast_shapes(ctx, (0, 1)), dtype)]


def _mod(xs: list, ctx: OpContext) -> np.ndarray:
    a, b = _c(xs[0]), _c(xs[1])
    # fmod=1: sign of the dividend (C fmod); fmod=0: sign of the divisor (Python %)
    return np.fmod(a, b) if ctx.attr("fmod") else np.mod(a, b)


_binary("Add", np.add, NUMERIC, commutative=True, doc="A + B, broadcasting. 1 FLOP/element.")
_binary("Sub", np.subtract, NUMERIC, doc="A - B, broadcasting. 1 FLOP/element.")
_binary("Mul", np.multiply, NUMERIC, commutative=True,
        doc="A * B, broadcasting. 1 FLOP/element.")
_binary("Div", _div, NUMERIC,
        doc="A / B, broadcasting; integer division truncates toward zero. 1 FLOP/element.")
_register("Pow", _infer_pow, lambda ctx, xs: [as_dtype(_pow(xs, ctx), ctx.result_type(0).dtype)],
          flops=1, min_inputs=2, max_inputs=2, special=2,
          doc="X ** Y, broadcasting; Y may have another numeric dtype, the result has X's. "
              "1 FLOP/element.")
_nary("Mod", _mod, NUMERIC, attributes={"fmod": 0}, check_attrs=_check_choice("fmod", (0, 1)),
      doc="A mod B, broadcasting; fmod=0: floor (sign of B), fmod=1: truncation (sign of A). "
          "1 FLOP/element.")

_unary("Neg", lambda x, ctx: np.negative(x), SIGNED, doc="-x. 1 FLOP/element.")
_unary("Abs", lambda x, ctx: np.abs(x), NUMERIC, doc="|x|. 1 FLOP/element.")
_unary("Sign", lambda x, ctx: np.sign(_c(x)), NUMERIC, doc="-1, 0 or 1. 1 FLOP/element.")
_float_unary("Reciprocal", lambda x: np.reciprocal(x), special=1, doc="1 / x. 1 FLOP/element.")
_float_unary("Floor", np.floor, doc="floor(x). 1 FLOP/element.")
_float_unary("Ceil", np.ceil, doc="ceil(x). 1 FLOP/element.")
_float_unary("Round", np.rint, doc="round half to even. 1 FLOP/element.")

# ---------------------------------------------------------------------------------------------
# transcendental functions: 1 FLOP each

_float_unary("Exp", np.exp, special=1, doc="exp(x). 1 FLOP/element (transcendental).")
_float_unary("Log", np.log, special=1, doc="log(x). 1 FLOP/element (transcendental).")
_float_unary("Sqrt", np.sqrt, special=1, doc="sqrt(x). 1 FLOP/element (transcendental).")
_float_unary("Erf", erf, special=1, doc="erf(x), Cody's rational approximation in f64. 1 FLOP/element.")
_float_unary("Tanh", np.tanh, special=1, doc="tanh(x). 1 FLOP/element (transcendental).")
_float_unary("Sin", np.sin, special=1, doc="sin(x). 1 FLOP/element (transcendental).")
_float_unary("Cos", np.cos, special=1, doc="cos(x). 1 FLOP/element (transcendental).")

# ---------------------------------------------------------------------------------------------
# activations


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| only, so that no intermediate overflows for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x)  # log(1 + exp(x)) without overflow


def _hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(alpha * x + beta, 0, 1)


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    # expm1 of min(x, 0): accurate near 0 and never overflows on the branch not taken
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _gelu(x: np.ndarray, ctx: OpContext) -> np.ndarray:
    x = x.astype(np.float64) if ctx.attr("approximate") in ("none", b"none") else _c(x)
    if ctx.attr("approximate") in ("tanh", b"tanh"):
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + np.tanh(inner))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _gelu_flops(ctx: OpContext) -> int:
    return 9 if ctx.attr("approximate") in ("tanh", b"tanh") else 5


_unary("Relu", lambda x, ctx: np.maximum(x, x.dtype.type(0)), SIGNED,
       doc="max(x, 0). 1 FLOP/element.")
_float_unary("Sigmoid", _sigmoid, flops=4, special=1,
             doc="1 / (1 + exp(-x)). 4 FLOPs/element (neg, exp, add, div).")
_float_unary("Softplus", _softplus, flops=3, special=2,
             doc="log(exp(x) + 1). 3 FLOPs/element (exp, add, log).")
_float_unary("Mish", lambda x: x * np.tanh(_softplus(x)), flops=5, special=3,
             doc="x * tanh(softplus(x)). 5 FLOPs/element (softplus 3, tanh, mul).")
_float_unary("HardSwish", lambda x: x * _hard_sigmoid(x, 1 / 6, 0.5), flops=5,
             doc="x * max(0, min(1, x / 6 + 1 / 2)). 5 FLOPs/element (mul add min max, mul).")
_unary("HardSigmoid",
       lambda x, ctx: _hard_sigmoid(_c(x), ctx.attr("alpha"), ctx.attr("beta")), FLOATS,
       flops=4, attributes={"alpha": 0.2, "beta": 0.5},
       doc="max(0, min(1, alpha * x + beta)). 4 FLOPs/element (mul, add, min, max).")
_unary("LeakyRelu",
       lambda x, ctx: np.where(_c(x) >= 0, _c(x), ctx.attr("alpha") * _c(x)), FLOATS,
       flops=2, attributes={"alpha": 0.01},
       doc="x < 0 ? alpha * x : x. 2 FLOPs/element (select, mul).")
_unary("Elu", lambda x, ctx: _elu(_c(x), ctx.attr("alpha")), FLOATS, flops=4, special=1,
       attributes={"alpha": 1.0},
       doc="x < 0 ? alpha * (exp(x) - 1) : x. 4 FLOPs/element (select, exp, sub, mul).")
_unary("Selu", lambda x, ctx: ctx.attr("gamma") * _elu(_c(x), ctx.attr("alpha")), FLOATS,
       flops=5, special=1,
       attributes={"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
       doc="gamma * (x <= 0 ? alpha * (exp(x) - 1) : x). 5 FLOPs/element (Elu's 4, mul).")
_unary("Gelu", _gelu, FLOATS, attributes={"approximate": "none"}, special=1,
       check_attrs=_check_choice("approximate", ("none", "tanh")),
       flops_fn=_per_point(_gelu_flops),
       doc="0.5 x (1 + erf(x / sqrt 2)): 5 FLOPs/element (div erf add mul mul); approximate="
           "'tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): 9 FLOPs/element.")


# PRelu: the slope broadcasts unidirectionally to X (X's shape is the result's)

def _infer_prelu(ctx: OpContext) -> list[TensorType]:
    _check_dtype(ctx, 0, PRELU)
    _check_dtype(ctx, 1, PRELU, "slope")
    same_dtype(ctx, (0, 1))
    x, slope = ctx.shape(0), ctx.shape(1)
    offset = len(x) - len(slope)
    if offset < 0:
        raise ctx.fail(f"slope shape {list(slope)} has more dims than input shape {list(x)}; "
                       f"it must broadcast unidirectionally to the input", operand=1)
    for j, d in enumerate(slope):
        if d != 1 and d != x[offset + j]:
            raise ctx.fail(f"slope shape {list(slope)} does not broadcast unidirectionally to "
                           f"input shape {list(x)} (dim {offset + j}: {x[offset + j]} vs {d})",
                           operand=1)
    return [ctx.type(0)]


def _eval_prelu(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x, slope = _c(inputs[0]), _c(inputs[1])
    return [as_dtype(np.where(x < 0, slope * x, x), ctx.result_type(0).dtype)]


_register("PRelu", _infer_prelu, _eval_prelu, flops=2, min_inputs=2, max_inputs=2,
          doc="x < 0 ? slope * x : x; slope broadcasts unidirectionally to x. "
              "2 FLOPs/element (select, mul).")


# Clip (opset 13): min and max are optional scalar operands 1 and 2

def _infer_clip(ctx: OpContext) -> list[TensorType]:
    dtype = _check_dtype(ctx, 0, NUMERIC)
    for i, what in ((1, "min"), (2, "max")):
        if ctx.has(i):
            if ctx.type(i).dtype != dtype:
                raise ctx.fail(f"{what} has dtype {ctx.type(i).dtype}, the input {dtype}",
                               operand=i)
            _require_one_element(ctx, i, what)
    return [ctx.type(0)]


def _eval_clip(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = inputs[0]
    # bounds reshaped to rank 0 so that a [1, 1] bound cannot raise the result's rank
    if len(inputs) > 1 and inputs[1] is not None:
        x = np.maximum(x, np.asarray(inputs[1]).reshape(()))
    if len(inputs) > 2 and inputs[2] is not None:
        x = np.minimum(x, np.asarray(inputs[2]).reshape(()))
    return [as_dtype(x, ctx.result_type(0).dtype)]


def _clip_domain(ctx: OpContext) -> IterationDomain:
    out = ctx.result_type(0).shape
    base = elementwise_domain(out, [ctx.shape(0)])
    bounds = [_scalar_map(ctx.shape(i), len(out)) if ctx.has(i) else None
              for i in range(1, ctx.num_operands)]
    return IterationDomain(base.dims, [base.inputs[0], *bounds], base.outputs)


_register("Clip", _infer_clip, _eval_clip, min_inputs=1, max_inputs=3, domain=_clip_domain,
          flops_fn=_per_point(lambda ctx: sum(ctx.has(i) for i in (1, 2))),
          doc="min(max(x, min), max) with optional scalar operands min and max (all values "
              "become max when min > max). 1 FLOP/element per bound given.")


# ---------------------------------------------------------------------------------------------
# variadic Max, Min, Sum, Mean (broadcasting)

def _reduce(ufunc: np.ufunc) -> Callable[[list, OpContext], np.ndarray]:
    return lambda xs, ctx: functools.reduce(ufunc, [_c(x) for x in xs])


def _mean(xs: list, ctx: OpContext) -> np.ndarray:
    return functools.reduce(np.add, [_c(x) for x in xs]) / len(xs)


_variadic = dict(min_inputs=1, max_inputs=MANY, commutative=True)
_nary("Max", _reduce(np.maximum), NUMERIC, **_variadic,
      flops_fn=_per_point(lambda ctx: ctx.num_operands - 1),
      doc="Elementwise max of n broadcasting operands (NaN propagates). n - 1 FLOPs/element.")
_nary("Min", _reduce(np.minimum), NUMERIC, **_variadic,
      flops_fn=_per_point(lambda ctx: ctx.num_operands - 1),
      doc="Elementwise min of n broadcasting operands (NaN propagates). n - 1 FLOPs/element.")
_nary("Sum", _reduce(np.add), FLOATS, **_variadic,
      flops_fn=_per_point(lambda ctx: ctx.num_operands - 1),
      doc="Elementwise sum of n broadcasting operands. n - 1 FLOPs/element.")
_nary("Mean", _mean, FLOATS, **_variadic, flops_fn=_per_point(lambda ctx: ctx.num_operands),
      doc="Elementwise mean of n broadcasting operands. n FLOPs/element (n - 1 adds, 1 div).")

# ---------------------------------------------------------------------------------------------
# comparisons and logic: bool results, 1 FLOP/element

_binary("Equal", np.equal, NUMERIC_OR_BOOL, half_in_f32=False, result_dtype=DType.bool,
        commutative=True, doc="A == B, broadcasting. 1 FLOP/element.")
_binary("Greater", np.greater, NUMERIC, half_in_f32=False, result_dtype=DType.bool,
        doc="A > B, broadcasting. 1 FLOP/element.")
_binary("Less", np.less, NUMERIC, half_in_f32=False, result_dtype=DType.bool,
        doc="A < B, broadcasting. 1 FLOP/element.")
_binary("GreaterOrEqual", np.greater_equal, NUMERIC, half_in_f32=False,
        result_dtype=DType.bool, doc="A >= B, broadcasting. 1 FLOP/element.")
_binary("LessOrEqual", np.less_equal, NUMERIC, half_in_f32=False, result_dtype=DType.bool,
        doc="A <= B, broadcasting. 1 FLOP/element.")
_unary("Not", lambda x, ctx: np.logical_not(x), BOOL, doc="logical not. 1 FLOP/element.")
_binary("And", np.logical_and, BOOL, half_in_f32=False, commutative=True,
        doc="logical and, broadcasting. 1 FLOP/element.")
_binary("Or", np.logical_or, BOOL, half_in_f32=False, commutative=True,
        doc="logical or, broadcasting. 1 FLOP/element.")
_binary("Xor", np.logical_xor, BOOL, half_in_f32=False, commutative=True,
        doc="logical xor, broadcasting. 1 FLOP/element.")
_unary("IsNaN", lambda x, ctx: np.isnan(_c(x)), FLOATS, result_dtype=DType.bool,
       doc="x is NaN (bool result). 1 FLOP/element.")


# Where(cond, X, Y): three-way broadcasting

def _infer_where(ctx: OpContext) -> list[TensorType]:
    _check_dtype(ctx, 0, BOOL, "condition")
    _check_dtype(ctx, 1, NUMERIC_OR_BOOL)
    _check_dtype(ctx, 2, NUMERIC_OR_BOOL)
    dtype = same_dtype(ctx, (1, 2))
    return [TensorType(broadcast_shapes(ctx, (0, 1, 2)), dtype)]


_register("Where", _infer_where,
          lambda ctx, xs: [as_dtype(np.where(xs[0], xs[1], xs[2]), ctx.result_type(0).dtype)],
          flops=1, min_inputs=3, max_inputs=3,
          doc="cond ? X : Y, all three broadcasting. 1 FLOP/element (a select).")


# ---------------------------------------------------------------------------------------------
# Cast, CastLike, Identity, Dropout: 0 FLOPs

def cast_target(ctx: OpContext) -> DType:
    """The DType of Cast's ``to`` (an ONNX TensorProto code); ShapeError if unsupported."""
    to = ctx.attr("to")
    if isinstance(to, bool) or not isinstance(to, (int, np.integer)):
        raise ctx.fail(f"attribute to={to!r} must be an ONNX TensorProto data type code "
                       f"(an int, e.g. 1 for float)")
    dtype = ONNX_CODES.get(int(to))
    if dtype is None:
        name = ONNX_UNSUPPORTED_NAMES.get(int(to), "unknown")
        supported = ", ".join(f"{c} ({d.short})" for c, d in sorted(ONNX_CODES.items()))
        raise ctx.fail(f"attribute to={to} ({name}) is not a dtype tensorir supports; "
                       f"supported codes: {supported}")
    return dtype


def _cast_type(ctx: OpContext, target: DType) -> list[TensorType]:
    """The result type of Cast and CastLike: operand 0's shape, ``target``'s dtype."""
    _check_dtype(ctx, 0, ALL)
    # saturate and round_mode only concern float8 targets, which tensorir has none of: they are
    # validated and otherwise have no effect
    _check_choice("saturate", (0, 1))(ctx)
    _check_choice("round_mode", ("up", "down", "nearest"))(ctx)
    return [TensorType(ctx.shape(0), target)]


def _eval_cast(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    """Cast and CastLike: operand 0 converted to the result dtype (CastLike's operand 1 only
    supplied that dtype; its values are not read)."""
    return [np.asarray(inputs[0]).astype(ctx.result_type(0).dtype.numpy)]


_CAST_ATTRIBUTES = {"saturate": 1, "round_mode": "up"}
_CAST_RULES = ("float to int truncates, int to narrower int wraps, nonzero to bool is true. "
               "0 FLOPs.")

_register("Cast", lambda ctx: _cast_type(ctx, cast_target(ctx)), _eval_cast,
          attributes={"to": REQUIRED, **_CAST_ATTRIBUTES},
          doc="Converts the element type to `to` (an ONNX TensorProto code, e.g. 1 = f32); "
              + _CAST_RULES)


# CastLike (opset 21+): Cast whose target dtype is operand 1's (target_type); only its dtype
# matters, so the domain gives operand 1 no map: no element of it is read

def _infer_cast_like(ctx: OpContext) -> list[TensorType]:
    return _cast_type(ctx, _check_dtype(ctx, 1, ALL, "target_type"))


def _cast_like_domain(ctx: OpContext) -> IterationDomain:
    return elementwise_domain(ctx.result_type(0).shape, [ctx.shape(0), None])


_register("CastLike", _infer_cast_like, _eval_cast, min_inputs=2, max_inputs=2,
          domain=_cast_like_domain, attributes=dict(_CAST_ATTRIBUTES),
          doc="Converts input's element type to target_type's (only its dtype is used; it is "
              "not read, so its domain map is none); the result has input's shape. "
              + _CAST_RULES)
_unary("Identity", lambda x, ctx: x, ALL, flops=0, doc="y = x. 0 FLOPs.")


# Dropout (opset 22) in inference: the identity. ``num_outputs`` is a tensorir attribute (not
# ONNX's): ONNX decides Dropout's result count by how many outputs the node names, which a type
# rule cannot see, so the frontend sets num_outputs=2 when the node's mask output is used (and
# an exporter drops the attribute). The mask is then all true, as ONNX gives in inference.

def _dropout_ratio(ctx: OpContext) -> float | None:
    """The ratio if known before run time (0.5 when absent), else None."""
    if not ctx.has(1):
        return 0.5
    data = ctx.const_or_none(1)
    return None if data is None else float(_scalar_value(data))


def _infer_dropout(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    _check_dtype(ctx, 0, FLOATS)
    if ctx.has(1):
        _check_dtype(ctx, 1, FLOATS, "ratio")
        _require_one_element(ctx, 1, "ratio")
        ratio = _dropout_ratio(ctx)
        if ratio is not None and not 0 <= ratio < 1:
            raise ctx.fail(f"ratio {ratio} is outside [0, 1)", operand=1)
    if ctx.has(2):
        _check_dtype(ctx, 2, BOOL, "training_mode")
        _require_one_element(ctx, 2, "training_mode")
        training = ctx.const_or_none(2)
        if training is not None and bool(_scalar_value(training)) and _dropout_ratio(ctx) != 0:
            raise ctx.fail("training_mode is true: training-mode dropout is random and "
                           "tensorir evaluates inference graphs only", operand=2)
    n = ctx.attr("num_outputs")
    if n not in (1, 2) or isinstance(n, bool):
        raise ctx.fail(f"attribute num_outputs={n!r} must be 1 (output) or 2 (output, mask)")
    return [t] if n == 1 else [t, TensorType(t.shape, DType.bool)]


def _eval_dropout(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = inputs[0]
    training = inputs[2] if len(inputs) > 2 else None
    ratio = inputs[1] if len(inputs) > 1 and inputs[1] is not None else 0.5
    if training is not None and bool(_scalar_value(training)) and _scalar_value(ratio) != 0:
        raise InterpreterError(f"{ctx.label}: training_mode is true at run time; training-mode "
                               f"dropout is random and tensorir evaluates inference only")
    out = [x]
    if ctx.attr("num_outputs") == 2:
        out.append(np.ones(x.shape, dtype=np.bool_))
    return out


def _dropout_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    base = elementwise_domain(shape, [shape])
    scalars = [_scalar_map(ctx.shape(i), len(shape)) if ctx.has(i) else None
               for i in range(1, ctx.num_operands)]
    return IterationDomain(base.dims, [base.inputs[0], *scalars],
                           base.outputs * ctx.attr("num_outputs"))


_register("Dropout", _infer_dropout, _eval_dropout, min_inputs=1, max_inputs=3,
          domain=_dropout_domain, attributes={"seed": None, "num_outputs": 1},
          doc="Inference dropout: y = x (and, with num_outputs=2, an all-true bool mask). "
              "Optional operands ratio (default 0.5) and training_mode; a true training_mode "
              "with a nonzero ratio is an error. 0 FLOPs.")
