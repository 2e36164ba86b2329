"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool and LRN (newest ONNX).

Semantics
---------
- ``MaxPool`` (opset 22): max over each window of ``X[N, C, *S]``; attributes ``auto_pad``,
  ``ceil_mode``, ``dilations``, ``kernel_shape`` (required), ``pads``, ``storage_order``,
  ``strides``. Padding never wins the max (it is -inf, or the dtype's minimum for integers).
  Only the first output ``Y`` is produced: the optional ``Indices`` output is not supported
  (a frontend must reject a MaxPool whose Indices output is used); ``storage_order`` only
  affects Indices, so it is accepted and ignored.
- ``AveragePool`` (opset 22): mean over each window; ``count_include_pad=0`` divides by the
  number of real input elements in the window, ``count_include_pad=1`` by the number of window
  positions inside the explicitly padded input (positions that only ceil_mode adds never count,
  as in onnxruntime and PyTorch).
- Output sizes follow ONNX's formulas (see :func:`~tensorir.ops.window.window_geometry`):
  with ceil_mode a last window that would start in the end padding is dropped.
- ``GlobalAveragePool`` / ``GlobalMaxPool``: mean / max over all spatial dims, kept as size 1.
- ``LRN`` (opset 13): ``Y = X / (bias + alpha/size * square_sum)^beta`` where ``square_sum``
  sums ``X^2`` over channels ``c - floor((size-1)/2) .. c + ceil((size-1)/2)`` (clipped).

FLOP convention
---------------
- Window pools: 1 FLOP (a compare or an add) per point of the ``n, c, o_spatial | k_spatial``
  domain, padded positions included; AveragePool adds 1 per output for the division.
- Global pools: 1 per input element (compare or add); GlobalAveragePool adds 1 per output.
- LRN: 2 per point of its ``n, c, spatial | i`` domain (square, accumulate; ``i`` runs over
  the ``size`` channel window) plus 4 per output element (scale by alpha/size, add bias,
  power, divide).

Tiling facts (:mod:`tensorir.tile_eval`)
----------------------------------------
A MaxPool or AveragePool tile evaluates with explicit ``pads`` for the part of its input box
outside X and without ceil_mode (:func:`~tensorir.ops.window.tile_pads`); windows stay whole
(no combiner). AveragePool with ``count_include_pad`` counts the explicit padding but not what
only ceil_mode's last window reaches, so its tile (:func:`_avgpool_tile`) pads X with zeros
for the explicit part, which then count as elements, and pads the rest uncounted. LRN's
channel loop must stay whole: its window reads the neighbouring channels.

Evaluation is vectorised: a loop over kernel taps (never over pixels) combines strided slices
of the padded input with ``np.maximum`` / ``+``; float16 sums accumulate in float32.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..types import TensorType
from .common import as_dtype, compute_dtype
from .domain import AffineExpr, AffineMap, IterationDomain, IterKind, LoopDim
from .registry import REQUIRED, Category, OpContext, OpDef, OpTile, get_op_def, register
from .window import (WindowGeometry, explicit_pads, int_list_attr, spatial_names,
                     static_spatial, tile_pads, window_geometry, window_input_exprs)


# ----------------------------------------------------------------------------- helpers

def _check_input(ctx: OpContext, float_only: bool) -> None:
    t = ctx.type(0)
    if t.rank < 3:
        raise ctx.fail(f"expects X of rank >= 3 ([N, C, spatial...]), got {t}", operand=0)
    if float_only and not t.dtype.is_float:
        raise ctx.fail(f"expects a floating-point operand, got {t.dtype}", operand=0)
    if not (t.dtype.is_float or t.dtype.is_integer):
        raise ctx.fail(f"expects a numeric operand, got {t.dtype}", operand=0)


def _pool_geometry(ctx: OpContext, in_spatial: Sequence[int]) -> WindowGeometry:
    kernel = tuple(int(k) for k in ctx.attr("kernel_shape"))
    if len(kernel) != len(in_spatial):
        raise ctx.fail(f"kernel_shape {list(kernel)} has {len(kernel)} entries but X has "
                       f"{len(in_spatial)} spatial dims", operand=0)
    return window_geometry(ctx, in_spatial, kernel, ceil_mode=bool(ctx.attr("ceil_mode")))


def _pool_infer_for(float_only: bool):
    def infer(ctx: OpContext) -> list[TensorType]:
        _check_input(ctx, float_only)
        geo = _pool_geometry(ctx, static_spatial(ctx, 0))
        t = ctx.type(0)
        return [TensorType(t.shape[:2] + geo.out, t.dtype)]
    return infer


def _padded(x: np.ndarray, geo: WindowGeometry, value: float | int) -> np.ndarray:
    """X padded by the geometry's pads plus what ceil_mode's last window needs."""
    extra = geo.extra_end_padding(x.shape[2:])
    widths = [(0, 0), (0, 0)] + [(b, e + x_) for b, e, x_ in
                                 zip(geo.pads_begin, geo.pads_end, extra)]
    if not any(b or e for b, e in widths):
        return x
    return np.pad(x, widths, constant_values=value)


def _tap_slices(geo: WindowGeometry) -> list[tuple[slice, ...]]:
    """For each kernel tap, the strided slice of the padded input it reads for all outputs."""
    out = []
    for tap in itertools.product(*(range(k) for k in geo.kernel)):
        out.append((Ellipsis,) + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, geo.dilations, geo.out, geo.strides)))
    return out


def _window_counts(in_spatial: Sequence[int], geo: WindowGeometry,
                   include_pad: bool) -> np.ndarray:
    """Number of counted positions in each output window (a box, so a product per dim)."""
    counts = np.ones((), dtype=np.int64)
    for j, n_in in enumerate(in_spatial):
        lo, hi = (-geo.pads_begin[j], n_in + geo.pads_end[j]) if include_pad else (0, n_in)
        start = np.arange(geo.out[j]) * geo.strides[j] - geo.pads_begin[j]
        pos = start[:, None] + np.arange(geo.kernel[j])[None, :] * geo.dilations[j]
        c = ((pos >= lo) & (pos < hi)).sum(axis=1)
        counts = np.multiply.outer(counts, c)
    return counts


def _pool_domain(ctx: OpContext) -> IterationDomain:
    """Loops ``n, c, o_spatial... | k_spatial...``; X read at ``o*stride + k*dil - pad``."""
    shape = ctx.shape(0)
    geo = _pool_geometry(ctx, static_spatial(ctx, 0))
    r = len(geo.out)
    dims = [LoopDim("n", shape[0]), LoopDim("c", shape[1])]
    o_sp = list(range(2, 2 + r))
    dims += [LoopDim(nm, e) for nm, e in zip(spatial_names("o", r), geo.out)]
    k_sp = list(range(2 + r, 2 + 2 * r))
    dims += [LoopDim(nm, e, IterKind.REDUCTION)
             for nm, e in zip(spatial_names("k", r), geo.kernel)]
    nd = len(dims)
    x_map = AffineMap([AffineExpr.dim(0, nd), AffineExpr.dim(1, nd)]
                      + window_input_exprs(nd, o_sp, k_sp, geo))
    y_map = AffineMap.select([0, 1] + o_sp, nd)
    return IterationDomain(dims, (x_map,), (y_map,))


def _pool_tile_attrs(ctx: OpContext, tile: OpTile) -> dict:
    """A pooling tile: the part of its input box outside X as explicit pads, no ceil_mode.
    With count_include_pad only the explicit padding's part (:func:`_avgpool_tile` adds the
    rest)."""
    in_spatial = static_spatial(ctx, 0)
    pads = tile_pads(_pool_geometry(ctx, in_spatial), in_spatial, tile.operand_boxes[0][2:])
    counted = ctx.op_type == "AveragePool" and bool(ctx.attr("count_include_pad"))
    return {**pads.attrs(with_extra=not counted), "ceil_mode": 0}


def _outputs(ctx: OpContext) -> Dim:
    return _dims.prod(ctx.result_type(0).shape)


# ----------------------------------------------------------------------------- MaxPool

def _maxpool_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    geo = _pool_geometry(ctx, x.shape[2:])
    # padding must never win the max
    low = -np.inf if ctx.type(0).dtype.is_float else np.iinfo(x.dtype).min
    xp = _padded(x, geo, low)
    taps = _tap_slices(geo)
    y = xp[taps[0]].copy()
    for sl in taps[1:]:
        np.maximum(y, xp[sl], out=y)
    return [as_dtype(y, ctx.result_type(0).dtype)]


register(OpDef(
    "MaxPool", Category.POOLING, _pool_infer_for(False), _maxpool_eval, _pool_domain,
    flops_per_point=1, tile_attrs=_pool_tile_attrs,
    attributes={"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None,
                "kernel_shape": REQUIRED, "pads": None, "storage_order": 0, "strides": None},
    doc="max over sliding windows (output Y only; Indices unsupported); 1 FLOP per point"))


# ----------------------------------------------------------------------------- AveragePool

def _avgpool_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    x = np.asarray(inputs[0]).astype(compute_dtype(dtype), copy=False)
    geo = _pool_geometry(ctx, x.shape[2:])
    xp = _padded(x, geo, 0)
    taps = _tap_slices(geo)
    y = xp[taps[0]].copy()
    for sl in taps[1:]:
        y += xp[sl]
    counts = _window_counts(x.shape[2:], geo, bool(ctx.attr("count_include_pad")))
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-padding window is NaN
        y /= counts.astype(y.dtype)
    return [as_dtype(y, dtype)]


def _avgpool_tile(ctx: OpContext, inputs: list, shapes: Sequence[tuple[int, ...]]
                  ) -> list[np.ndarray]:
    """One AveragePool tile (``tile_evaluate``), its context from :func:`_pool_tile_attrs`.

    With count_include_pad the explicit padding counts and ceil_mode's extra positions do not:
    ``AveragePool(x, pads, count_include_pad=1) = AveragePool(zero_pad(x, pads), extra,
    count_include_pad=0)``; the extra padding is what the tile's result shape needs beyond
    the padded X.
    """
    if not ctx.attr("count_include_pad"):
        return _avgpool_eval(ctx, inputs)
    x = np.asarray(inputs[0])
    r = x.ndim - 2
    begin, end = explicit_pads(ctx, r)
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end)))
    strides = int_list_attr(ctx, "strides", r, 1)
    dilations = int_list_attr(ctx, "dilations", r, 1)
    extra = tuple(max(0, (o - 1) * s + (int(k) - 1) * d + 1 - n) for o, s, k, d, n in
                  zip(shapes[0][2:], strides, ctx.attr("kernel_shape"), dilations,
                      xp.shape[2:]))
    padded = OpContext(get_op_def(ctx.op_type),
                       {**ctx.attrs, "pads": (0,) * r + extra, "count_include_pad": 0},
                       [TensorType(xp.shape, ctx.type(0).dtype)], [None], name=ctx.name)
    return _avgpool_eval(padded, [xp])


def _avgpool_flops(ctx: OpContext) -> Dim:
    geo = _pool_geometry(ctx, static_spatial(ctx, 0))
    return _dims.mul(_outputs(ctx), math.prod(geo.kernel) + 1)  # adds + the division


register(OpDef(
    "AveragePool", Category.POOLING, _pool_infer_for(True), _avgpool_eval, _pool_domain,
    flops_per_point=1, flops_fn=_avgpool_flops, tile_attrs=_pool_tile_attrs,
    tile_evaluate=_avgpool_tile,
    attributes={"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0,
                "dilations": None, "kernel_shape": REQUIRED, "pads": None, "strides": None},
    doc="mean over sliding windows; 1 FLOP per point plus 1 per output"))


# ----------------------------------------------------------------------------- global pools

def _global_infer_for(float_only: bool):
    def infer(ctx: OpContext) -> list[TensorType]:
        _check_input(ctx, float_only)
        t = ctx.type(0)
        return [TensorType(t.shape[:2] + (1,) * (t.rank - 2), t.dtype)]
    return infer


def _global_domain(ctx: OpContext) -> IterationDomain:
    """Loops ``n, c | spatial...``; the output is written at ``[n, c, 0, ...]``."""
    shape = ctx.shape(0)
    r = len(shape) - 2
    dims = [LoopDim("n", shape[0]), LoopDim("c", shape[1])]
    dims += [LoopDim(nm, e, IterKind.REDUCTION)
             for nm, e in zip(spatial_names("", r), shape[2:])]
    nd = len(dims)
    return IterationDomain(dims, (AffineMap.identity(nd),),
                           (AffineMap.select([0, 1] + [None] * r, nd),))


def _global_avg_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    x = np.asarray(inputs[0])
    axes = tuple(range(2, x.ndim))
    return [as_dtype(x.mean(axis=axes, keepdims=True, dtype=compute_dtype(dtype)), dtype)]


def _global_max_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    return [as_dtype(x.max(axis=tuple(range(2, x.ndim)), keepdims=True),
                     ctx.result_type(0).dtype)]


def _global_avg_flops(ctx: OpContext) -> Dim:
    shape = ctx.shape(0)
    return _dims.mul(_dims.prod(shape[:2]), _dims.require_static(
        _dims.prod(shape[2:]), f"{ctx.label}: spatial size") + 1)


register(OpDef(
    "GlobalAveragePool", Category.POOLING, _global_infer_for(True), _global_avg_eval,
    _global_domain, flops_per_point=1, flops_fn=_global_avg_flops,
    doc="mean over all spatial dims; 1 FLOP per input element plus 1 per output"))

register(OpDef(
    "GlobalMaxPool", Category.POOLING, _global_infer_for(False), _global_max_eval,
    _global_domain, flops_per_point=1, doc="max over all spatial dims; 1 FLOP per input element"))


# ----------------------------------------------------------------------------- LRN

def _lrn_size(ctx: OpContext) -> int:
    size = int(ctx.attr("size"))
    if size < 1:
        raise ctx.fail(f"size must be >= 1, got {size}")
    return size


def _lrn_infer(ctx: OpContext) -> list[TensorType]:
    _check_input(ctx, True)
    _lrn_size(ctx)
    return [ctx.type(0)]


def _lrn_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    x = np.asarray(inputs[0]).astype(compute_dtype(dtype), copy=False)
    size = _lrn_size(ctx)
    before, after = (size - 1) // 2, -(-(size - 1) // 2)
    sq = np.pad(x * x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    acc = sq[:, 0:c].copy()
    for i in range(1, size):  # a loop over the channel window, not over elements
        acc += sq[:, i:i + c]
    alpha, beta, bias = (ctx.attr(k) for k in ("alpha", "beta", "bias"))
    scale = acc * np.asarray(alpha / size, acc.dtype) + np.asarray(bias, acc.dtype)
    return [as_dtype(x / scale ** np.asarray(beta, acc.dtype), dtype)]


def _lrn_domain(ctx: OpContext) -> IterationDomain:
    """Loops ``n, c, spatial... | i`` with X read at ``[n, c + i - floor((size-1)/2), ...]``."""
    shape = ctx.shape(0)
    size = _lrn_size(ctx)
    r = len(shape) - 2
    dims = [LoopDim("n", shape[0]), LoopDim("c", shape[1])]
    dims += [LoopDim(nm, e) for nm, e in zip(spatial_names("", r), shape[2:])]
    dims.append(LoopDim("i", size, IterKind.REDUCTION))
    nd = len(dims)
    chan = AffineExpr.dim(1, nd) + AffineExpr.dim(nd - 1, nd, 1, -((size - 1) // 2))
    x_map = AffineMap([AffineExpr.dim(0, nd), chan]
                      + [AffineExpr.dim(2 + j, nd) for j in range(r)])
    return IterationDomain(dims, (x_map,), (AffineMap.select(range(nd - 1), nd),))


def _lrn_flops(ctx: OpContext) -> Dim:
    return _dims.mul(_dims.prod(ctx.shape(0)), 2 * _lrn_size(ctx) + 4)


register(OpDef(
    "LRN", Category.POOLING, _lrn_infer, _lrn_eval, _lrn_domain, flops_per_point=2,
    flops_fn=_lrn_flops, full_dims=("c",),
    attributes={"alpha": 0.0001, "beta": 0.75, "bias": 1.0, "size": REQUIRED},
    doc="local response normalization across channels; 2*size + 4 FLOPs per element"))
