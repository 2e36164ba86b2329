"""Normalizations: BatchNormalization, LayerNormalization, RMSNormalization,
InstanceNormalization, Softmax and LogSoftmax (newest ONNX semantics).

Semantics
---------
- ``BatchNormalization`` (opset 15, inference form): operands X, scale, B, input_mean,
  input_var, one output ``Y = (X - mean) / sqrt(var + epsilon) * scale + B`` per channel (dim 1;
  a rank-1 X is one channel). ``momentum`` is accepted and unused; ``training_mode=1`` (which
  has running-statistics outputs) is rejected.
- ``LayerNormalization`` (opset 17): normalise over dims ``axis..rank-1``;
  ``Y = (X - mean) / sqrt(var + epsilon) * Scale (+ B)``; Scale and B broadcast
  unidirectionally to X. Only output ``Y`` is produced: the training outputs Mean and
  InvStdDev are not exposed (a frontend must reject a node that uses them).
- ``RMSNormalization`` (opset 23): ``Y = X / sqrt(mean(X^2 over axis..rank-1) + epsilon) *
  scale``. For both Layer- and RMSNormalization, ``stash_type`` (an ONNX element type: 1 float,
  11 double, 10 float16, 16 bfloat16) is the precision of the normalisation stage; the result is
  cast to X's type and then scaled (and shifted) in float32 or float64.
- ``InstanceNormalization`` (opset 22): per (n, c) over the spatial dims, then
  ``* scale[c] + B[c]``.
- ``Softmax`` / ``LogSoftmax`` (opset 13): along one ``axis`` (default -1), max-subtracted.

FLOP convention (per element of X, per-row/per-channel scalar work ignored)
---------------------------------------------------------------------------
- BatchNormalization: 2 (the per-channel scale-and-shift every inference engine folds to).
- LayerNormalization: 7 with B, 6 without (mean sum, subtract, square, variance sum,
  multiply by 1/std, multiply by Scale, add B).
- RMSNormalization: 4 (square, sum, multiply by 1/rms, multiply by scale).
- InstanceNormalization: 7 (as LayerNormalization with B).
- Softmax: 5 (max, subtract, exp, sum, divide); LogSoftmax: 5 (max, subtract, exp, sum,
  subtract the log-sum).

Domains run over X's elements with the normalised axes marked REDUCTION; per-channel and
broadcast parameters are read through select maps (constant 0 on broadcast dims).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..dtypes import DType
from ..types import TensorType
from .common import as_dtype, compute_dtype, normalize_axis
from .domain import AffineMap, IterationDomain, IterKind, LoopDim
from .registry import Category, OpContext, OpDef, register

# ONNX TensorProto element types allowed as stash_type
_STASH_TYPES = {1: DType.float32, 11: DType.float64, 10: DType.float16, 16: DType.bfloat16}


def _float_input(ctx: OpContext, i: int = 0) -> TensorType:
    t = ctx.type(i)
    if not t.dtype.is_float:
        raise ctx.fail(f"expects a floating-point operand, got {t.dtype}", operand=i)
    return t


def _stash_dtype(ctx: OpContext) -> np.dtype:
    stash = int(ctx.attr("stash_type"))
    if stash not in _STASH_TYPES:
        raise ctx.fail(f"stash_type must be one of {sorted(_STASH_TYPES)} (float, double, "
                       f"float16, bfloat16), got {stash}")
    return _STASH_TYPES[stash].numpy


def _check_channel_params(ctx: OpContext, x: TensorType, c: Dim,
                          params: Sequence[tuple[int, str]]) -> None:
    """Each operand ``i`` of ``params`` must be a float vector of X's ``c`` channels."""
    for i, what in params:
        _float_input(ctx, i)
        if tuple(ctx.shape(i)) != (c,):
            raise ctx.fail(f"{what} of shape {list(ctx.shape(i))} must be [{c}] (X's channels, "
                           f"X is {x})", operand=i)


def _check_unidirectional(ctx: OpContext, i: int, target: Sequence[Dim], what: str) -> None:
    """Operand ``i`` must broadcast to ``target`` without growing it (ONNX unidirectional)."""
    s = ctx.shape(i)
    ok = len(s) <= len(target) and all(
        d == 1 or d == t for d, t in zip(s, target[len(target) - len(s):]))
    if not ok:
        raise ctx.fail(f"{what} of shape {list(s)} does not broadcast to X's shape "
                       f"{list(target)}", operand=i)


def _broadcast_map(shape: Sequence[Dim], target: Sequence[Dim]) -> AffineMap:
    """Right-aligned NumPy broadcast of ``shape`` onto loops over ``target``."""
    n = len(target)
    off = n - len(shape)
    return AffineMap.select([None if (d == 1 and target[off + j] != 1) else off + j
                             for j, d in enumerate(shape)], n)


def _norm_domain(shape: Sequence[Dim], reduced: Sequence[int],
                 params: Sequence[AffineMap | None]) -> IterationDomain:
    """Loops over X's dims, ``reduced`` ones REDUCTION; X and Y identity, params as given."""
    n = len(shape)
    dims = tuple(LoopDim(f"d{i}", shape[i],
                         IterKind.REDUCTION if i in reduced else IterKind.PARALLEL)
                 for i in range(n))
    ident = AffineMap.identity(n)
    return IterationDomain(dims, (ident,) + tuple(params), (ident,))


# ----------------------------------------------------------------------------- BatchNormalization

def _bn_infer(ctx: OpContext) -> list[TensorType]:
    t = _float_input(ctx)
    if ctx.attr("training_mode"):
        raise ctx.fail("training_mode=1 (batch statistics, running-mean outputs) is not "
                       "supported; only the inference form is")
    if t.rank < 1:
        raise ctx.fail(f"expects X of rank >= 1, got {t}", operand=0)
    c = t.shape[1] if t.rank >= 2 else 1
    _check_channel_params(ctx, t, c, ((1, "scale"), (2, "B"), (3, "input_mean"),
                                      (4, "input_var")))
    return [t]


def _bn_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    cd = compute_dtype(dtype)
    x = np.asarray(inputs[0]).astype(cd, copy=False)
    scale, b, mean, var = (np.asarray(a).astype(cd, copy=False) for a in inputs[1:5])
    # fold into one per-channel multiply and add
    a = scale / np.sqrt(var + cd.type(ctx.attr("epsilon")))
    shift = b - mean * a
    bshape = (-1,) + (1,) * (x.ndim - 2) if x.ndim >= 2 else (1,)
    return [as_dtype(x * a.reshape(bshape) + shift.reshape(bshape), dtype)]


def _bn_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    n = len(shape)
    chan = AffineMap.select([1] if n >= 2 else [None], n)
    return _norm_domain(shape, (), [chan] * 4)


register(OpDef(
    "BatchNormalization", Category.NORMALIZATION, _bn_infer, _bn_eval, _bn_domain,
    flops_per_point=2, attributes={"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0},
    min_inputs=5, max_inputs=5,
    doc="inference batch norm: per-channel scale and shift; 2 FLOPs per element"))


# ----------------------------------------------------------------------------- Layer / RMS

def _lastaxes_infer(ctx: OpContext, params: Sequence[tuple[int, str]]) -> list[TensorType]:
    t = _float_input(ctx)
    if t.rank < 1:
        raise ctx.fail(f"expects X of rank >= 1, got {t}", operand=0)
    normalize_axis(ctx, ctx.attr("axis"), t.rank)
    _stash_dtype(ctx)
    for i, what in params:
        if ctx.has(i):
            _float_input(ctx, i)
            _check_unidirectional(ctx, i, t.shape, what)
    return [t]


def _normalized_axes(ctx: OpContext, rank: int) -> tuple[int, ...]:
    return tuple(range(normalize_axis(ctx, ctx.attr("axis"), rank), rank))


def _layernorm_infer(ctx: OpContext) -> list[TensorType]:
    return _lastaxes_infer(ctx, ((1, "Scale"), (2, "B")))


def _layernorm_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    x = np.asarray(inputs[0])
    axes = _normalized_axes(ctx, x.ndim)
    xs = x.astype(_stash_dtype(ctx), copy=False)
    mean = xs.mean(axis=axes, keepdims=True)
    d = xs - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    normed = as_dtype(d / np.sqrt(var + np.asarray(ctx.attr("epsilon"), xs.dtype)), dtype)
    cd = compute_dtype(dtype)
    y = normed.astype(cd, copy=False) * np.asarray(inputs[1]).astype(cd, copy=False)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + np.asarray(inputs[2]).astype(cd, copy=False)
    return [as_dtype(y, dtype)]


def _lastaxes_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    params = [_broadcast_map(ctx.shape(i), shape) if ctx.has(i) else None
              for i in range(1, ctx.num_operands)]
    return _norm_domain(shape, _normalized_axes(ctx, len(shape)), params)


def _layernorm_flops(ctx: OpContext) -> Dim:
    return _dims.mul(_dims.prod(ctx.shape(0)), 7 if ctx.has(2) else 6)


register(OpDef(
    "LayerNormalization", Category.NORMALIZATION, _layernorm_infer, _layernorm_eval,
    _lastaxes_domain, flops_per_point=7, flops_fn=_layernorm_flops,
    attributes={"axis": -1, "epsilon": 1e-5, "stash_type": 1}, min_inputs=2, max_inputs=3,
    doc="layer norm over axis..rank-1 (output Y only); 7 FLOPs per element (6 without B)"))


def _rmsnorm_infer(ctx: OpContext) -> list[TensorType]:
    return _lastaxes_infer(ctx, ((1, "scale"),))


def _rmsnorm_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    x = np.asarray(inputs[0])
    axes = _normalized_axes(ctx, x.ndim)
    xs = x.astype(_stash_dtype(ctx), copy=False)
    ms = (xs * xs).mean(axis=axes, keepdims=True)
    normed = as_dtype(xs / np.sqrt(ms + np.asarray(ctx.attr("epsilon"), xs.dtype)), dtype)
    cd = compute_dtype(dtype)
    y = normed.astype(cd, copy=False) * np.asarray(inputs[1]).astype(cd, copy=False)
    return [as_dtype(y, dtype)]


register(OpDef(
    "RMSNormalization", Category.NORMALIZATION, _rmsnorm_infer, _rmsnorm_eval,
    _lastaxes_domain, flops_per_point=4,
    attributes={"axis": -1, "epsilon": 1e-5, "stash_type": 1}, min_inputs=2, max_inputs=2,
    doc="RMS norm over axis..rank-1 (ONNX opset 23); 4 FLOPs per element"))


# ----------------------------------------------------------------------------- InstanceNormalization

def _instnorm_infer(ctx: OpContext) -> list[TensorType]:
    t = _float_input(ctx)
    if t.rank < 3:
        raise ctx.fail(f"expects X of rank >= 3 ([N, C, spatial...]), got {t}", operand=0)
    _check_channel_params(ctx, t, t.shape[1], ((1, "scale"), (2, "B")))
    return [t]


def _instnorm_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    dtype = ctx.result_type(0).dtype
    cd = compute_dtype(dtype)
    x = np.asarray(inputs[0]).astype(cd, copy=False)
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    bshape = (-1,) + (1,) * (x.ndim - 2)
    scale = np.asarray(inputs[1]).astype(cd, copy=False).reshape(bshape)
    b = np.asarray(inputs[2]).astype(cd, copy=False).reshape(bshape)
    y = d * (scale / np.sqrt(var + cd.type(ctx.attr("epsilon")))) + b
    return [as_dtype(y, dtype)]


def _instnorm_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    n = len(shape)
    chan = AffineMap.select([1], n)
    return _norm_domain(shape, tuple(range(2, n)), [chan, chan])


register(OpDef(
    "InstanceNormalization", Category.NORMALIZATION, _instnorm_infer, _instnorm_eval,
    _instnorm_domain, flops_per_point=7, attributes={"epsilon": 1e-5},
    min_inputs=3, max_inputs=3,
    doc="per-(n, c) normalisation over spatial dims; 7 FLOPs per element"))


# ----------------------------------------------------------------------------- Softmax

def _softmax_infer(ctx: OpContext) -> list[TensorType]:
    t = _float_input(ctx)
    if t.rank < 1:
        raise ctx.fail(f"expects X of rank >= 1, got {t}", operand=0)
    normalize_axis(ctx, ctx.attr("axis"), t.rank)
    return [t]


def _softmax_parts(ctx: OpContext, inputs: list) -> tuple[np.ndarray, int]:
    """(x - max along the axis, the axis), in the compute dtype."""
    x = np.asarray(inputs[0]).astype(compute_dtype(ctx.result_type(0).dtype), copy=False)
    axis = normalize_axis(ctx, ctx.attr("axis"), x.ndim)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted, axis


def _softmax_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    shifted, axis = _softmax_parts(ctx, inputs)
    e = np.exp(shifted)
    e /= e.sum(axis=axis, keepdims=True)
    return [as_dtype(e, ctx.result_type(0).dtype)]


def _logsoftmax_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    shifted, axis = _softmax_parts(ctx, inputs)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return [as_dtype(y, ctx.result_type(0).dtype)]


def _softmax_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    return _norm_domain(shape, (normalize_axis(ctx, ctx.attr("axis"), len(shape)),), ())


register(OpDef(
    "Softmax", Category.NORMALIZATION, _softmax_infer, _softmax_eval, _softmax_domain,
    flops_per_point=5, special_functions=1, attributes={"axis": -1},
    doc="softmax along one axis (opset 13); 5 FLOPs per element"))

register(OpDef(
    "LogSoftmax", Category.NORMALIZATION, _softmax_infer, _logsoftmax_eval, _softmax_domain,
    flops_per_point=5, special_functions=1, attributes={"axis": -1},
    doc="log-softmax along one axis (opset 13); 5 FLOPs per element"))
