"""Shape and constant ops: Shape, Size, Constant, ConstantOfShape, Range (Category.SHAPE, 0 FLOPs).

Semantics follow the newest ONNX opsets (Shape 21 with ``start``/``end``, ConstantOfShape 21,
Range 27, Constant 21):

- ``Shape(data)``: int64 vector of the dims ``data.shape[start:end]`` (Python slice clamping;
  ``end`` defaults to the rank). The result type ``i64[n]`` is static even when the dims are
  symbolic: only its values depend on the symbols.
- ``Size(data)``: int64 scalar, the number of elements.
- ``Constant``: no operands; exactly one of ``value`` (a NumPy array), ``value_float`` (f32
  scalar), ``value_int`` (i64 scalar), ``value_floats`` (f32 vector), ``value_ints`` (i64
  vector). String and sparse constants are not supported (no such dtype here).
- ``ConstantOfShape(shape)``: a tensor of the constant int64 ``shape`` operand filled with the
  one element of the ``value`` attribute (a 1-element array; default float32 0).
- ``Range(start, limit, delta)``: scalars of one dtype (f32, f64, i16, i32, i64, and since
  opset 27 f16 and bf16); ``max(ceil((limit - start) / delta), 0)`` elements
  ``start + i*delta``, computed like ``np.arange`` in float64 or int64 (the reference does the
  same) and cast to the dtype. The length depends on the values, so all three must be
  constants for the type rule.

Domains: loops over the result dims; the data operand of Shape/Size is not read elementwise (map
None); the scalar operands of Range are read everywhere at the empty index.
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import DType
from ..errors import TensorIRError
from ..types import TensorType
from .common import const_ints
from .domain import AffineMap, IterationDomain, LoopDim
from .registry import Category, OpContext, OpDef, register


def _result_domain(ctx: OpContext, inputs: tuple) -> IterationDomain:
    out = ctx.result_type(0).shape
    n = len(out)
    return IterationDomain(tuple(LoopDim(f"d{i}", out[i]) for i in range(n)), inputs,
                           (AffineMap.identity(n),))


def _opaque_domain(ctx: OpContext) -> IterationDomain:
    return _result_domain(ctx, (None,) * ctx.num_operands)


# ---------------------------------------------------------------- Shape / Size


def _shape_range(ctx: OpContext, rank: int) -> range:
    """The dims Shape reports: ``range(rank)[start:end]`` (negative counts from the end)."""
    start, end = int(ctx.attr("start")), ctx.attr("end")
    return range(rank)[start:None if end is None else int(end)]


def _shape_infer(ctx: OpContext) -> list[TensorType]:
    return [TensorType((len(_shape_range(ctx, ctx.type(0).rank)),), DType.int64)]


def _shape_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    shape = np.shape(inputs[0])
    return [np.array([shape[i] for i in _shape_range(ctx, len(shape))], dtype=np.int64)]


register(OpDef("Shape", Category.SHAPE, _shape_infer, _shape_eval, _opaque_domain,
               attributes={"start": 0, "end": None},
               doc="int64 vector of the operand dims [start:end]"))


def _size_infer(ctx: OpContext) -> list[TensorType]:
    ctx.type(0)
    return [TensorType((), DType.int64)]


def _size_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    return [np.array(np.size(inputs[0]), dtype=np.int64)]


register(OpDef("Size", Category.SHAPE, _size_infer, _size_eval, _opaque_domain,
               doc="int64 scalar: number of elements of the operand"))


# ---------------------------------------------------------------- Constant

_CONSTANT_ATTRS = ("value", "value_float", "value_int", "value_floats", "value_ints")


def constant_value(ctx: OpContext) -> np.ndarray:
    """The array a Constant op holds (from whichever single value attribute it has)."""
    given = [k for k in _CONSTANT_ATTRS if ctx.attr(k) is not None]
    if len(given) != 1:
        raise ctx.fail(f"needs exactly one of the attributes {', '.join(_CONSTANT_ATTRS)}, "
                       f"got {', '.join(given) or 'none'}")
    key = given[0]
    v = ctx.attr(key)
    if key == "value":
        if not isinstance(v, np.ndarray):
            raise ctx.fail(f"attribute value must be a NumPy array, got {type(v).__name__}")
        return v
    if key == "value_float":
        return np.array(v, dtype=np.float32)
    if key == "value_int":
        return np.array(v, dtype=np.int64)
    if key == "value_floats":
        return np.array(v, dtype=np.float32).reshape(-1)
    return np.array(v, dtype=np.int64).reshape(-1)


def _dtype_of(ctx: OpContext, array: np.ndarray, what: str) -> DType:
    try:
        return DType.from_numpy(array.dtype)
    except TensorIRError:
        raise ctx.fail(f"{what} has the unsupported dtype {array.dtype}") from None


def _constant_infer(ctx: OpContext) -> list[TensorType]:
    v = constant_value(ctx)
    return [TensorType(v.shape, _dtype_of(ctx, v, "value"))]


def _constant_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    return [constant_value(ctx).copy()]  # the attribute must not be mutated through the result


register(OpDef("Constant", Category.SHAPE, _constant_infer, _constant_eval, _opaque_domain,
               attributes={k: None for k in _CONSTANT_ATTRS}, min_inputs=0, max_inputs=0,
               doc="a tensor held in an attribute"))


# ---------------------------------------------------------------- ConstantOfShape


def _fill_value(ctx: OpContext) -> np.ndarray:
    v = ctx.attr("value")
    if v is None:
        return np.zeros((), dtype=np.float32)
    if not isinstance(v, np.ndarray) or v.size != 1:
        raise ctx.fail(f"attribute value must be a 1-element NumPy array, got {v!r}")
    return v.reshape(())


def _shape_values(ctx: OpContext, shape: list[int]) -> list[int]:
    if any(s < 0 for s in shape):
        raise ctx.fail(f"shape {shape} has a negative size", operand=0)
    return shape


def _cos_infer(ctx: OpContext) -> list[TensorType]:
    if ctx.type(0).rank != 1:
        raise ctx.fail(f"shape must be 1-D, got {ctx.type(0)}", operand=0)
    shape = _shape_values(ctx, const_ints(ctx, 0, "shape"))
    value = _fill_value(ctx)
    return [TensorType(shape, _dtype_of(ctx, value, "value"))]


def _cos_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    shape = _shape_values(ctx, [int(s) for s in np.asarray(inputs[0]).reshape(-1)])
    value = _fill_value(ctx)
    return [np.full(shape, value, dtype=value.dtype)]


register(OpDef("ConstantOfShape", Category.SHAPE, _cos_infer, _cos_eval, _opaque_domain,
               attributes={"value": None},
               doc="tensor of the shape operand filled with value (default f32 0)"))


# ---------------------------------------------------------------- Range

_RANGE_DTYPES = (DType.float32, DType.float64, DType.float16, DType.bfloat16, DType.int16,
                 DType.int32, DType.int64)


def range_length(start: float | int, limit: float | int, delta: float | int) -> int:
    """``max(ceil((limit - start) / delta), 0)``, as np.arange computes it (exact for ints)."""
    if isinstance(start, int) and isinstance(limit, int) and isinstance(delta, int):
        return max(-((start - limit) // delta), 0)
    return max(math.ceil((limit - start) / delta), 0)


def _range_scalars(ctx: OpContext, arrays: list) -> tuple:
    return tuple(np.asarray(a).reshape(-1)[0].item() for a in arrays)


def _range_infer(ctx: OpContext) -> list[TensorType]:
    dtype = ctx.type(0).dtype
    for i, what in enumerate(("start", "limit", "delta")):
        t = ctx.type(i)
        if t.dtype != dtype:
            raise ctx.fail(f"{what} is {t} but start is {ctx.type(0)}; all three must have "
                           f"one dtype", operand=i)
        if t.shape not in ((), (1,)):
            raise ctx.fail(f"{what} must be a scalar, got {t}", operand=i)
    if dtype not in _RANGE_DTYPES:
        raise ctx.fail(f"dtype {dtype} is not supported; expected one of "
                       f"{', '.join(d.short for d in _RANGE_DTYPES)}", operand=0)
    start, limit, delta = _range_scalars(
        ctx, [ctx.const(i, what) for i, what in enumerate(("start", "limit", "delta"))])
    if delta == 0:
        raise ctx.fail("delta is 0", operand=2)
    return [TensorType((range_length(start, limit, delta),), dtype)]


def _range_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    start, limit, delta = _range_scalars(ctx, inputs)
    if delta == 0:
        raise ctx.fail("delta is 0", operand=2)
    dtype = ctx.result_type(0).dtype.numpy
    return [np.arange(start, limit, delta).astype(dtype)]


def _range_domain(ctx: OpContext) -> IterationDomain:
    return _result_domain(ctx, tuple(AffineMap.select([None] * ctx.type(i).rank, 1)
                                     for i in range(3)))


register(OpDef("Range", Category.SHAPE, _range_infer, _range_eval, _range_domain,
               min_inputs=3, max_inputs=3,
               doc="start, start + delta, ... up to (excluding) limit"))
