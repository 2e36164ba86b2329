"""Building blocks shared by the op definitions: broadcasting, axes, constant int operands,
and dtypes to compute in."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..dtypes import DType
from .domain import IterationDomain, elementwise_domain
from .registry import OpContext


INT_DTYPES = (DType.int64, DType.int32)


def const_ints(ctx: OpContext, i: int, what: str) -> list[int]:
    """The integer data of constant operand ``i`` as Python ints (flattened).

    A ShapeError if the operand is not an integer tensor or not a constant.
    """
    t = ctx.type(i)
    if t.dtype not in INT_DTYPES:
        raise ctx.fail(f"{what} must be an int64 tensor, got {t}", operand=i)
    return [int(v) for v in np.asarray(ctx.const(i, what)).reshape(-1)]


def broadcast_shapes(ctx: OpContext, operands: Sequence[int]) -> tuple[Dim, ...]:
    """NumPy broadcasting over the given operands; a ShapeError naming the clashing operand."""
    present = [i for i in operands if ctx.has(i)]
    rank = max(len(ctx.shape(i)) for i in present)
    out: list[Dim] = [1] * rank
    for i in present:
        shape = ctx.shape(i)
        offset = rank - len(shape)
        for j, d in enumerate(shape):
            b = _dims.broadcast(out[offset + j], d)
            if b is None:
                raise ctx.fail(f"shape {list(shape)} does not broadcast with "
                               f"{list(out)} (dim {offset + j}: {out[offset + j]} vs {d})",
                               operand=i)
            out[offset + j] = b
    return tuple(out)


def broadcast_pair(a: Sequence[Dim], b: Sequence[Dim],
                   clash: Callable[[int, Dim, Dim], Exception]) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes (right-aligned, the shorter padded with 1s); where dim
    ``j`` of the result has sizes ``x`` and ``y`` that do not broadcast, raises
    ``clash(j, x, y)``."""
    rank = max(len(a), len(b))
    a = [1] * (rank - len(a)) + list(a)
    b = [1] * (rank - len(b)) + list(b)
    out = []
    for j, (x, y) in enumerate(zip(a, b)):
        d = _dims.broadcast(x, y)
        if d is None:
            raise clash(j, x, y)
        out.append(d)
    return tuple(out)


def normalize_axis(ctx: OpContext, axis: int, rank: int, what: str = "axis") -> int:
    """An axis in [-rank, rank) made non-negative; a ShapeError otherwise."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ctx.fail(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank


def same_dtype(ctx: OpContext, operands: Sequence[int]) -> DType:
    present = [i for i in operands if ctx.has(i)]
    dtype = ctx.type(present[0]).dtype
    for i in present[1:]:
        if ctx.type(i).dtype != dtype:
            raise ctx.fail(f"dtype {ctx.type(i).dtype} differs from operand {present[0]}'s "
                           f"{dtype}", operand=i)
    return dtype


def elementwise_op_domain(ctx: OpContext) -> IterationDomain:
    out = ctx.result_type(0).shape
    return elementwise_domain(out, [t.shape if t is not None else None for t in ctx.types])


def as_dtype(array: np.ndarray, dtype: DType) -> np.ndarray:
    """Cast a NumPy result back to the op's declared dtype (NumPy promotes scalars)."""
    return np.asarray(array).astype(dtype.numpy, copy=False)


def compute_dtype(dtype: DType) -> np.dtype:
    """The NumPy type to accumulate in: float64 stays, other floats use float32, ints stay."""
    if dtype is DType.float64:
        return np.dtype(np.float64)
    if dtype.is_float:
        return np.dtype(np.float32)
    return dtype.numpy
