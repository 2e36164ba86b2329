"""Reductions: ReduceSum/Mean/Max/Min/Prod/SumSquare/L2 and ArgMax/ArgMin (newest ONNX opsets).

Semantics follow ONNX opset 18+ (ReduceSum 13, ReduceMax/ReduceMin 20):

- ``axes`` is an optional int64 operand 1 and must be a constant (the result type depends on it).
  Negative axes count from the end; repeated axes are an error.
- ``keepdims`` (default 1) keeps reduced dims as size 1; ``0`` drops them.
- ``noop_with_empty_axes`` (default 0): when ``axes`` is absent or empty the op reduces over all
  axes, or, with 1, over none. A reduction over no axes is the identity for the accumulation
  step only: ReduceSumSquare then squares every element and ReduceL2 returns ``|x|``.
- Reducing an empty set gives 0 (Sum, SumSquare, L2), 1 (Prod), NaN (Mean), and the lowest value
  of the dtype (Max: -inf or the integer minimum, False for bool) or the highest (Min).
- The result keeps the operand dtype. float16/bfloat16 accumulate in float32 and are rounded
  once at the end, which is what accelerators do and is at least as accurate as the reference.

ArgMax/ArgMin (opset 13) take ``axis`` (default 0), ``keepdims`` (1) and ``select_last_index``
(0: the first occurrence of the extreme value wins, 1: the last); the result is int64.

Iteration domain: one loop per operand dim, the reduced ones REDUCTION. The operand map is the
identity; the result map drops the reduced loops (keepdims=0) or reads them at the constant 0
(keepdims=1). A no-op reduction is an all-parallel identity domain.

Tiling (:mod:`tensorir.tile_eval`): ReduceSum, ReduceMax and ReduceMin declare the combiner
(add, max, min) that merges the partial results of tiles splitting the reduced dims; the
others (Mean, Prod, SumSquare, L2, ArgMax, ArgMin) keep their reduced dims whole in a tile.

FLOPs (documented convention; 1 FLOP per arithmetic operation, like fvcore and onnx-tool):

========================  ==============================================================
ReduceSum/Max/Min/Prod    1 per operand element (one accumulate each)
ReduceMean                1 per operand element + 1 divide per result element
ReduceSumSquare           2 per operand element (square + accumulate)
ReduceL2                  2 per operand element + 1 square root per result element
ArgMax/ArgMin             1 per operand element (one compare each)
no-op (empty axes, noop)  0, except SumSquare 1 per element (square), L2 2 (square, sqrt)
========================  ==============================================================
"""

from __future__ import annotations

from typing import Callable

import attrs
import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..dtypes import DType
from ..types import TensorType
from .common import as_dtype, normalize_axis
from .domain import AffineMap, IterationDomain, IterKind, LoopDim
from .registry import Category, OpContext, OpDef, register

_INT_DTYPES = (DType.int64, DType.int32)
_LOW_PRECISION = (DType.float16, DType.bfloat16)


@attrs.frozen
class ReductionPlan:
    """What one reduction does: the reduced axes (sorted, non-negative), whether a no-op."""

    axes: tuple[int, ...]
    keepdims: bool
    noop: bool


def reduction_plan(ctx: OpContext) -> ReductionPlan:
    """Resolve the ``axes`` operand and the attributes of a Reduce* op against the operand rank."""
    rank = ctx.type(0).rank
    keepdims = bool(ctx.attr("keepdims"))
    if ctx.has(1):
        t = ctx.type(1)
        if t.dtype not in _INT_DTYPES:
            raise ctx.fail(f"axes must be int64, got {t}", operand=1)
        raw = np.asarray(ctx.const(1, "axes")).reshape(-1)
        axes_in = [int(a) for a in raw]
    else:
        axes_in = []
    if not axes_in:
        if ctx.attr("noop_with_empty_axes"):
            return ReductionPlan((), keepdims, True)
        return ReductionPlan(tuple(range(rank)), keepdims, False)
    axes = [normalize_axis(ctx, a, rank, "reduction axis") for a in axes_in]
    if len(set(axes)) != len(axes):
        raise ctx.fail(f"axes {axes_in} name a dim twice (rank {rank})", operand=1)
    return ReductionPlan(tuple(sorted(axes)), keepdims, False)


def reduced_shape(shape: tuple[Dim, ...], axes: tuple[int, ...],
                  keepdims: bool) -> tuple[Dim, ...]:
    """The shape after reducing ``axes``: size-1 dims with keepdims, dropped without."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reduction_domain(shape: tuple[Dim, ...], axes: tuple[int, ...],
                     keepdims: bool) -> IterationDomain:
    """Loops over the operand dims (``axes`` REDUCTION); the result map drops or zeroes them."""
    n = len(shape)
    loops = tuple(LoopDim(f"d{i}", shape[i], IterKind.REDUCTION if i in axes
                          else IterKind.PARALLEL) for i in range(n))
    if keepdims:
        out = AffineMap.select([None if i in axes else i for i in range(n)], n)
    else:
        out = AffineMap.select([i for i in range(n) if i not in axes], n)
    return IterationDomain(loops, (AffineMap.identity(n),), (out,))


def _count_flops(ctx: OpContext, numel: Dim, out_numel: Dim, reduced: Dim, per_elem: int,
                 per_out: int) -> Dim:
    """``per_elem * numel + per_out * out_numel`` as one product so symbolic dims stay exact.

    numel = out_numel * reduced, so the sum factors as ``out_numel * (per_elem*reduced +
    per_out)``; that needs a static reduced count when ``per_out`` is nonzero.
    """
    if not per_out:
        return _dims.mul(numel, per_elem)
    red = _dims.require_static(reduced, f"{ctx.label}: FLOPs of a reduction over a symbolic dim")
    return _dims.mul(out_numel, per_elem * red + per_out)


def _accumulation_dtype(x: np.ndarray, dtype: DType) -> np.ndarray:
    # accumulate half precision in float32 (rounded once at the end)
    return x.astype(np.float32) if dtype in _LOW_PRECISION else x


def _extreme(dtype: np.dtype, lowest: bool) -> object:
    """The identity of max (lowest=True) or min over the dtype, for empty reductions."""
    if dtype == np.bool_:
        return not lowest
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return info.min if lowest else info.max
    return -np.inf if lowest else np.inf


def _register_reduce(name: str, *, reduce: Callable[[np.ndarray, tuple, bool], np.ndarray],
                     pre: Callable[[np.ndarray], np.ndarray] | None = None,
                     post: Callable[[np.ndarray], np.ndarray] | None = None,
                     per_elem: int, per_out: int, noop_per_elem: int,
                     allow_bool: bool = False, combiner: str | None = None,
                     doc: str = "") -> OpDef:
    """A Reduce* op: ``post(reduce(pre(x), axes, keepdims))``; the no-op skips ``reduce``.
    ``combiner`` merges partial reductions of tiles (see OpDef.combiner)."""

    def infer(ctx: OpContext) -> list[TensorType]:
        t = ctx.type(0)
        if t.dtype is DType.bool and not allow_bool:
            raise ctx.fail(f"expects a numeric operand, got {t}", operand=0)
        plan = reduction_plan(ctx)
        if plan.noop:
            return [t]
        return [t.with_shape(reduced_shape(t.shape, plan.axes, plan.keepdims))]

    def evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
        dtype = ctx.result_type(0).dtype
        plan = reduction_plan(ctx)
        x = _accumulation_dtype(np.asarray(inputs[0]), dtype)
        if pre is not None:
            x = pre(x)
        with np.errstate(invalid="ignore", divide="ignore"):  # Mean of an empty set is NaN
            y = np.array(x, copy=True) if plan.noop else reduce(x, plan.axes, plan.keepdims)
            if post is not None:
                y = post(y)
        return [as_dtype(np.asarray(y), dtype)]

    def domain(ctx: OpContext) -> IterationDomain:
        shape = ctx.type(0).shape
        plan = reduction_plan(ctx)
        if plan.noop:
            n = len(shape)
            return IterationDomain(tuple(LoopDim(f"d{i}", shape[i]) for i in range(n)),
                                   (AffineMap.identity(n),), (AffineMap.identity(n),))
        return reduction_domain(shape, plan.axes, plan.keepdims)

    def flops(ctx: OpContext) -> Dim:
        shape = ctx.type(0).shape
        plan = reduction_plan(ctx)
        numel = _dims.prod(shape)
        if plan.noop:
            return _dims.mul(numel, noop_per_elem)
        return _count_flops(ctx, numel, _dims.prod(reduced_shape(shape, plan.axes, False)),
                            _dims.prod(shape[a] for a in plan.axes), per_elem, per_out)

    return register(OpDef(name, Category.REDUCTION, infer, evaluate, domain, flops_fn=flops,
                          attributes={"keepdims": 1, "noop_with_empty_axes": 0},
                          min_inputs=1, max_inputs=2, combiner=combiner, doc=doc))


def _max(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.max(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=True))


def _min(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.min(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=False))


def _sum(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=keepdims)


_register_reduce("ReduceSum", reduce=_sum, per_elem=1, per_out=0, noop_per_elem=0,
                 combiner="add", doc="sum over axes")
def _mean(x: np.ndarray, axes: tuple, keepdims: bool) -> np.ndarray:
    # sum / count rather than np.mean: an empty set gives NaN without a "mean of empty slice"
    # warning (errstate in evaluate silences the 0/0)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return np.sum(x, axis=axes, keepdims=keepdims) / count


_register_reduce("ReduceMean", reduce=_mean,
                 per_elem=1, per_out=1, noop_per_elem=0, doc="mean over axes")
_register_reduce("ReduceMax", reduce=_max, per_elem=1, per_out=0, noop_per_elem=0,
                 allow_bool=True, combiner="max",
                 doc="maximum over axes (-inf / dtype minimum when empty)")
_register_reduce("ReduceMin", reduce=_min, per_elem=1, per_out=0, noop_per_elem=0,
                 allow_bool=True, combiner="min",
                 doc="minimum over axes (+inf / dtype maximum when empty)")
_register_reduce("ReduceProd",
                 reduce=lambda x, a, k: np.prod(x, axis=a, keepdims=k),
                 per_elem=1, per_out=0, noop_per_elem=0, doc="product over axes")
_register_reduce("ReduceSumSquare", reduce=_sum, pre=np.square, per_elem=2, per_out=0,
                 noop_per_elem=1, doc="sum of squares over axes")
_register_reduce("ReduceL2", reduce=_sum, pre=np.square, post=np.sqrt, per_elem=2, per_out=1,
                 noop_per_elem=2, doc="sqrt(sum of squares) over axes")


# ---------------------------------------------------------------- ArgMax / ArgMin


def _register_arg(name: str, fn: Callable[..., np.ndarray]) -> OpDef:
    def axis_of(ctx: OpContext) -> int:
        return normalize_axis(ctx, ctx.attr("axis"), ctx.type(0).rank)

    def infer(ctx: OpContext) -> list[TensorType]:
        t = ctx.type(0)
        if t.dtype is DType.bool:
            raise ctx.fail(f"expects a numeric operand, got {t}", operand=0)
        if t.rank == 0:
            raise ctx.fail("needs an operand of rank >= 1, got a scalar", operand=0)
        axis = axis_of(ctx)
        if t.shape[axis] == 0:
            raise ctx.fail(f"cannot take {name} over the empty dim {axis} of "
                           f"{list(t.shape)}", operand=0)
        shape = reduced_shape(t.shape, (axis,), bool(ctx.attr("keepdims")))
        return [TensorType(shape, DType.int64)]

    def evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        axis = axis_of(ctx)
        if ctx.attr("select_last_index"):
            # the first extreme of the reversed axis is the last one of the original
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        if ctx.attr("keepdims"):
            idx = np.expand_dims(idx, axis)
        return [np.asarray(idx, dtype=np.int64)]

    def domain(ctx: OpContext) -> IterationDomain:
        return reduction_domain(ctx.type(0).shape, (axis_of(ctx),), bool(ctx.attr("keepdims")))

    return register(OpDef(name, Category.REDUCTION, infer, evaluate, domain, flops_per_point=1,
                          attributes={"axis": 0, "keepdims": 1, "select_last_index": 0},
                          doc=f"int64 index of the {name[3:].lower()}imum along axis"))


_register_arg("ArgMax", np.argmax)
_register_arg("ArgMin", np.argmin)
