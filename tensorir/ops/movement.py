"""Data movement: Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Concat, Split, Slice, Gather,
GatherElements, Expand, Pad, Tile (newest ONNX opsets; 0 FLOPs each).

Semantics follow the newest ONNX opset of each op (Split 18, Pad 21, Reshape/Squeeze/Unsqueeze
21, the rest 13): what older opsets took as attributes (Split ``split``, Pad ``pads``,
Squeeze/Unsqueeze ``axes``, Slice ``starts``/``ends``...) are int64 operands here. Operands that
decide the result shape must be constants: the type rule raises ``OpContext.const``'s
ShapeError otherwise (the ONNX frontend constant-folds shape chains before building ops).

Symbolic dims (``batch``, ``196*batch``) are kept exactly where the result is a product of
operand dims (Reshape with -1 or 0, Flatten, Transpose, Squeeze, Unsqueeze, Tile, Expand) and
where a Concat/Pad size is a sum of like terms (``batch + batch = 2*batch``). Anything else
that depends on a symbol's value (slicing a symbolic dim at fixed indices, padding it) raises
:class:`~tensorir.errors.UnboundDimError`. Slice assumes a symbolic dim is below 2**31 so that
``[0:INT32_MAX or larger]`` is the whole dim. Squeeze without ``axes`` drops only dims that are
statically 1 (a symbolic dim is never assumed to be 1).

Slice clamps as the ONNX spec says, which differs from NumPy (and onnx.reference) in one
corner: a start below -dim with a negative step is clamped to 0, so element 0 is included.

Pad with negative pads crops first, then pads (what onnxruntime does; the reference
implementation rejects them).

Evaluation returns fresh arrays (never views of the operands), so a later in-place update of an
operand cannot change a result.

Iteration domains (loops over the RESULT dims unless said otherwise; shape-like operands such
as ``shape``, ``pads``, ``starts`` have the map None):

- Transpose: result dim j is operand dim ``perm[j]``, so operand dim k reads loop ``inv_perm[k]``.
- Reshape, Flatten: the operand map is None: the index translation is a div/mod of the
  linearized index, not affine. (A reshape of a contiguous tensor is a copy-free view.)
- Squeeze: squeezed operand dims are read at the constant 0; Unsqueeze: inserted result dims
  are not read by the operand map.
- Concat: operand i reads ``d_axis - start_i`` on the concat axis (bounded: only the points
  inside operand i read it). A symbolic start makes that operand's map None.
- Split: one domain per op, so the domain is over the OPERAND dims (all parallel, identity
  read) and result k is written at ``d_axis - offset_k`` (bounded, like Concat in reverse).
  Symbolic offsets give no domain (None).
- Slice: operand index ``start + step * d`` on each sliced axis (affine, step may be negative).
- Gather: data map None (indirect through the indices), indices read at the loops of the
  result dims they produce; GatherElements: data None, indices identity.
- Expand: broadcast like an elementwise op (size-1 operand dims read at 0).
- Pad: mode ``constant`` reads ``d - pad_begin`` (bounded: out of range reads the pad value);
  reflect/edge/wrap reads are not affine (None); the scalar ``constant_value`` has an empty map.
- Tile: operand index is ``d mod size``: not affine, map None.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .. import dims as _dims
from ..dims import Dim
from ..errors import InvalidOpError, UnboundDimError
from ..types import TensorType
from .common import INT_DTYPES, broadcast_pair, const_ints, normalize_axis, same_dtype
from .domain import AffineExpr, AffineMap, IterationDomain, LoopDim, elementwise_domain
from .registry import REQUIRED, Category, OpContext, OpDef, register

MAX_VARIADIC = 2 ** 31 - 1
# a Slice bound at or beyond this means "to the end" even for a symbolic dim
_SYMBOLIC_END = 2 ** 31 - 1


# ---------------------------------------------------------------- shared helpers


def sum_dims(values: Sequence[Dim]) -> Dim:
    """The sum of dims by :func:`tensorir.dims.add` (exact for like symbolic terms)."""
    out: Dim = 0
    for v in values:
        out = _dims.add(out, v)
    return out


def _shape_str(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _result_domain(out_shape: Sequence[Dim],
                   inputs: Sequence[AffineMap | None]) -> IterationDomain:
    """Parallel loops over the result dims, identity result map, the given operand maps."""
    n = len(out_shape)
    return IterationDomain(tuple(LoopDim(f"d{i}", out_shape[i]) for i in range(n)), inputs,
                           (AffineMap.identity(n),))


def _scalar_map(rank: int, ndims: int) -> AffineMap:
    """A small operand read at index 0 everywhere (a scalar's map is empty)."""
    return AffineMap.select([None] * rank, ndims)


# ---------------------------------------------------------------- Transpose


def _perm(ctx: OpContext) -> list[int]:
    rank = ctx.type(0).rank
    perm = ctx.attr("perm")
    if perm is None:
        return list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise ctx.fail(f"perm {perm} is not a permutation of the {rank} dims of "
                       f"{_shape_str(ctx.shape(0))}", operand=0)
    return perm


def _transpose_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    return [t.with_shape([t.shape[p] for p in _perm(ctx)])]


def _transpose_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    return [np.transpose(inputs[0], _perm(ctx)).copy()]


def _transpose_domain(ctx: OpContext) -> IterationDomain:
    perm = _perm(ctx)
    inv = [0] * len(perm)
    for j, p in enumerate(perm):
        inv[p] = j
    return _result_domain(ctx.result_type(0).shape, (AffineMap.select(inv, len(perm)),))


register(OpDef("Transpose", Category.DATA_MOVEMENT, _transpose_infer, _transpose_eval,
               _transpose_domain, tileable=True, attributes={"perm": None},
               doc="permute dims; perm defaults to reversing them"))


# ---------------------------------------------------------------- Reshape


def reshape_target(ctx: OpContext, in_shape: Sequence[Dim], spec: Sequence[int],
                   allowzero: bool) -> tuple[Dim, ...]:
    """The result shape of Reshape(in_shape, spec): 0 copies, -1 infers (exact with symbols)."""
    total = _dims.prod(in_shape)
    what = f"{_shape_str(in_shape)} ({total} elements) to {list(spec)}"
    if spec.count(-1) > 1:
        raise ctx.fail(f"cannot reshape {what}: more than one -1", operand=1)
    if allowzero and 0 in spec and -1 in spec:
        raise ctx.fail(f"cannot reshape {what}: with allowzero=1 a 0 and a -1 together are "
                       f"ambiguous", operand=1)
    out: list[Dim | None] = []
    for j, s in enumerate(spec):
        if s == 0 and not allowzero:
            if j >= len(in_shape):
                raise ctx.fail(f"cannot reshape {what}: entry {j} is 0 (copy the input dim) "
                               f"but the input has rank {len(in_shape)}", operand=1)
            out.append(in_shape[j])
        elif s == -1:
            out.append(None)
        elif s < 0:
            raise ctx.fail(f"cannot reshape {what}: negative size {s}", operand=1)
        else:
            out.append(s)
    known = _dims.prod(d for d in out if d is not None)
    if None in out:
        if known == 0:
            raise ctx.fail(f"cannot reshape {what}: -1 is undetermined when the other sizes "
                           f"multiply to 0", operand=1)
        try:
            inferred = _dims.div(total, known)
        except UnboundDimError as exc:
            raise UnboundDimError(f"{ctx.label}: cannot infer the -1 of reshaping {what}: "
                                  f"{exc}") from None
        except _dims.ShapeError:
            raise ctx.fail(f"cannot reshape {what}: {total} elements are not a multiple of "
                           f"{known}", operand=1) from None
        out[out.index(None)] = inferred
    elif known != total:
        raise ctx.fail(f"cannot reshape {_shape_str(in_shape)} ({total} elements) to "
                       f"{_shape_str(out)} ({known} elements)", operand=1)
    return tuple(out)


def _reshape_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    spec = const_ints(ctx, 1, "shape")
    if ctx.type(1).rank != 1:
        raise ctx.fail(f"shape must be 1-D, got {ctx.type(1)}", operand=1)
    return [t.with_shape(reshape_target(ctx, t.shape, spec, bool(ctx.attr("allowzero"))))]


def _reshape_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    spec = [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
    shape = reshape_target(ctx, x.shape, spec, bool(ctx.attr("allowzero")))
    return [x.reshape(shape).copy()]


def _opaque_domain(ctx: OpContext) -> IterationDomain:
    return _result_domain(ctx.result_type(0).shape, (None,) * ctx.num_operands)


def refinement_groups(fine: Sequence[int], coarse: Sequence[int]) -> list[list[int]] | None:
    """Consecutive dims of ``fine`` whose products are the dims of ``coarse`` (a size-1 coarse
    dim may take none), or None when ``fine`` does not refine ``coarse``."""
    groups: list[list[int]] = []
    i = 0
    for c in coarse:
        group, product = [], 1
        while i < len(fine) and product < c:
            group.append(i)
            product *= fine[i]
            i += 1
        if product != c:
            return None
        groups.append(group)
    if any(fine[k] != 1 for k in range(i, len(fine))):
        return None
    if groups and i < len(fine):
        groups[-1] += list(range(i, len(fine)))
    return groups


def _linearized(groups: list[list[int]], fine: Sequence[int]) -> AffineMap:
    """Each coarse dim as the row-major offset of its group of fine dims."""
    from .domain import AffineExpr
    n = len(fine)
    exprs = []
    for group in groups:
        coeffs = [0] * n
        stride = 1
        for k in reversed(group):
            coeffs[k] = stride
            stride *= fine[k]
        exprs.append(AffineExpr(tuple(coeffs), 0))
    return AffineMap(tuple(exprs))


def reshape_domain(ctx: OpContext) -> IterationDomain:
    """A reshape keeps the row-major order of the elements. When one shape refines the other
    (``[1, 128, 768] <-> [1, 128, 12, 64]``) the loops run over the finer shape and the coarser
    side is read or written at row-major offsets (``c = 64*h + d``); otherwise it is opaque."""
    src, dst = ctx.type(0).shape, ctx.result_type(0).shape
    if not all(isinstance(d, int) for d in tuple(src) + tuple(dst)):
        return _opaque_domain(ctx)
    rest = (None,) * (ctx.num_operands - 1)
    split = refinement_groups(dst, src)
    if split is not None:
        return _result_domain(dst, (_linearized(split, dst),) + rest)
    merge = refinement_groups(src, dst)
    if merge is not None:
        n = len(src)
        return IterationDomain(tuple(LoopDim(f"d{i}", src[i]) for i in range(n)),
                               (AffineMap.identity(n),) + rest,
                               (_linearized(merge, src),))
    return _opaque_domain(ctx)


def reshape_tile(ctx: OpContext, inputs: list, result_shapes) -> list[np.ndarray]:
    """A tile of a reshape is its operand's tile in the result tile's shape (the kernel keeps
    the minor dims of a split whole, so the tile is contiguous in row-major order)."""
    x = np.asarray(inputs[0])
    if x.size != math.prod(result_shapes[0]):
        raise InvalidOpError(f"{ctx.label}: an operand tile of {list(x.shape)} cannot form the "
                             f"result tile {list(result_shapes[0])}: the reshape neither "
                             f"splits nor merges dims, so it is not tileable")
    return [x.reshape(result_shapes[0]).copy()]


register(OpDef("Reshape", Category.DATA_MOVEMENT, _reshape_infer, _reshape_eval, reshape_domain,
               tileable=True, tile_evaluate=reshape_tile,
               attributes={"allowzero": 0}, min_inputs=2, max_inputs=2,
               doc="new shape from constant operand 1 (0 copies a dim, -1 is inferred)"))


# ---------------------------------------------------------------- Flatten


def _flatten_axis(ctx: OpContext) -> int:
    rank = ctx.type(0).rank
    axis = int(ctx.attr("axis"))
    if not -rank <= axis <= rank:  # Flatten accepts axis == rank (the [N, 1] case)
        raise ctx.fail(f"axis {axis} is out of range [-{rank}, {rank}] for "
                       f"{_shape_str(ctx.shape(0))}", operand=0)
    return axis + rank if axis < 0 else axis


def _flatten_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    axis = _flatten_axis(ctx)
    return [t.with_shape((_dims.prod(t.shape[:axis]), _dims.prod(t.shape[axis:])))]


def _flatten_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    axis = _flatten_axis(ctx)
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])).copy()]


register(OpDef("Flatten", Category.DATA_MOVEMENT, _flatten_infer, _flatten_eval, reshape_domain,
               tileable=True, tile_evaluate=reshape_tile, attributes={"axis": 1}, doc="2-D [prod(dims[:axis]), prod(dims[axis:])]"))


# ---------------------------------------------------------------- Squeeze / Unsqueeze


def _axes_list(ctx: OpContext, raw: list[int], rank: int) -> list[int]:
    axes = [normalize_axis(ctx, a, rank) for a in raw]
    if len(set(axes)) != len(axes):
        raise ctx.fail(f"axes {raw} name a dim twice (rank {rank})", operand=1)
    return sorted(axes)


def _squeeze_axes(ctx: OpContext) -> list[int]:
    shape = ctx.shape(0)
    if not ctx.has(1):
        return [i for i, d in enumerate(shape) if d == 1]
    axes = _axes_list(ctx, const_ints(ctx, 1, "axes"), len(shape))
    for a in axes:
        if shape[a] != 1:
            raise ctx.fail(f"cannot squeeze dim {a} of {_shape_str(shape)}: its size is "
                           f"{shape[a]}, not 1", operand=0)
    return axes


def _squeeze_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    axes = _squeeze_axes(ctx)
    return [t.with_shape([d for i, d in enumerate(t.shape) if i not in axes])]


def _squeeze_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    # the axes come from the operand TYPE so the result matches it even when a symbolic dim
    # happens to be 1 at run time
    return [np.squeeze(inputs[0], axis=tuple(_squeeze_axes(ctx))).copy()]


def _squeeze_domain(ctx: OpContext) -> IterationDomain:
    axes = _squeeze_axes(ctx)
    rank = ctx.type(0).rank
    n = rank - len(axes)
    select, k = [], 0
    for i in range(rank):
        if i in axes:
            select.append(None)
        else:
            select.append(k)
            k += 1
    return _result_domain(ctx.result_type(0).shape,
                          (AffineMap.select(select, n),) + (None,) * (ctx.num_operands - 1))


register(OpDef("Squeeze", Category.DATA_MOVEMENT, _squeeze_infer, _squeeze_eval, _squeeze_domain,
               tileable=True, tile_evaluate=reshape_tile, min_inputs=1, max_inputs=2,
               doc="drop size-1 dims (axes operand 1, or every static size-1 dim)"))


def _unsqueeze_axes(ctx: OpContext) -> list[int]:
    raw = const_ints(ctx, 1, "axes")
    return _axes_list(ctx, raw, ctx.type(0).rank + len(raw))


def _unsqueeze_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    axes = _unsqueeze_axes(ctx)
    rest = iter(t.shape)
    return [t.with_shape([1 if i in axes else next(rest) for i in range(t.rank + len(axes))])]


def _unsqueeze_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    return [np.expand_dims(inputs[0], tuple(_unsqueeze_axes(ctx))).copy()]


def _unsqueeze_domain(ctx: OpContext) -> IterationDomain:
    axes = _unsqueeze_axes(ctx)
    n = ctx.type(0).rank + len(axes)
    kept = [i for i in range(n) if i not in axes]
    return _result_domain(ctx.result_type(0).shape, (AffineMap.select(kept, n), None))


register(OpDef("Unsqueeze", Category.DATA_MOVEMENT, _unsqueeze_infer, _unsqueeze_eval,
               _unsqueeze_domain, tileable=True, tile_evaluate=reshape_tile,
               min_inputs=2, max_inputs=2,
               doc="insert size-1 dims at axes (operand 1, positions in the result)"))


# ---------------------------------------------------------------- Concat


def _concat_axis(ctx: OpContext) -> int:
    return normalize_axis(ctx, ctx.attr("axis"), ctx.type(0).rank)


def _concat_infer(ctx: OpContext) -> list[TensorType]:
    operands = list(range(ctx.num_operands))
    dtype = same_dtype(ctx, operands)
    first = ctx.shape(0)
    if not first:
        raise ctx.fail("cannot concatenate scalars", operand=0)
    axis = _concat_axis(ctx)
    for i in operands[1:]:
        shape = ctx.shape(i)
        if len(shape) != len(first):
            raise ctx.fail(f"rank {len(shape)} of {_shape_str(shape)} differs from operand 0's "
                           f"rank {len(first)} ({_shape_str(first)})", operand=i)
        for j, (a, b) in enumerate(zip(first, shape)):
            if j != axis and a != b:
                raise ctx.fail(f"shape {_shape_str(shape)} differs from operand 0's "
                               f"{_shape_str(first)} in dim {j} ({b} vs {a}); only the concat "
                               f"axis {axis} may differ", operand=i)
    total = sum_dims([ctx.shape(i)[axis] for i in operands])
    return [TensorType(first[:axis] + (total,) + first[axis + 1:], dtype)]


def _concat_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    return [np.concatenate([np.asarray(a) for a in inputs], axis=_concat_axis(ctx))]


def _concat_domain(ctx: OpContext) -> IterationDomain:
    axis = _concat_axis(ctx)
    out = ctx.result_type(0).shape
    n = len(out)
    maps: list[AffineMap | None] = []
    start: Dim = 0
    for i in range(ctx.num_operands):
        if isinstance(start, int):
            exprs = [AffineExpr.dim(j, n, const=-start if j == axis else 0) for j in range(n)]
            maps.append(AffineMap(exprs))
        else:  # an offset after a symbolic size is not an integer constant
            maps.append(None)
        start = _dims.add(start, ctx.shape(i)[axis])
    return _result_domain(out, maps)


register(OpDef("Concat", Category.DATA_MOVEMENT, _concat_infer, _concat_eval, _concat_domain,
               attributes={"axis": REQUIRED}, min_inputs=1, max_inputs=MAX_VARIADIC,
               doc="join operands along axis (required attribute)"))


# ---------------------------------------------------------------- Split


def _split_axis(ctx: OpContext) -> int:
    return normalize_axis(ctx, ctx.attr("axis"), ctx.type(0).rank)


def split_sizes(ctx: OpContext, dim: Dim, sizes: list[int] | None) -> list[Dim]:
    """Chunk sizes of Split along a dim of size ``dim`` (``sizes``: the split operand)."""
    num_outputs = ctx.attr("num_outputs")
    if sizes is not None:
        if num_outputs is not None:
            raise ctx.fail("give either the split operand or num_outputs, not both", operand=1)
        if any(s < 0 for s in sizes):
            raise ctx.fail(f"split sizes {sizes} must be >= 0", operand=1)
        if sum(sizes) != dim:
            raise ctx.fail(f"split sizes {sizes} add up to {sum(sizes)}, not to the size "
                           f"{dim} of axis {_split_axis(ctx)}", operand=1)
        return list(sizes)
    if num_outputs is None:
        raise ctx.fail("needs the split operand or the num_outputs attribute to know how many "
                       "results to make")
    n = int(num_outputs)
    if n < 1:
        raise ctx.fail(f"num_outputs must be >= 1, got {n}")
    if not isinstance(dim, int):
        try:
            return [_dims.div(dim, n)] * n
        except _dims.ShapeError as exc:
            raise UnboundDimError(f"{ctx.label}: cannot split the symbolic dim {dim!r} into "
                                  f"{n} equal parts: {exc}") from None
    # ONNX: chunks of ceil(dim / n), the last one smaller
    chunk = -(-dim // n)
    last = dim - chunk * (n - 1)
    if last < 0:
        raise ctx.fail(f"cannot split a dim of size {dim} into {n} outputs of size {chunk} "
                       f"(the last would be {last})", operand=0)
    return [chunk] * (n - 1) + [last]


def _split_operand(ctx: OpContext) -> list[int] | None:
    return const_ints(ctx, 1, "split") if ctx.has(1) else None


def _split_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    axis = _split_axis(ctx)
    sizes = split_sizes(ctx, t.shape[axis], _split_operand(ctx))
    return [t.with_shape(t.shape[:axis] + (s,) + t.shape[axis + 1:]) for s in sizes]


def _split_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    axis = _split_axis(ctx)
    sizes = split_sizes(ctx, x.shape[axis], _split_operand(ctx))
    bounds = np.cumsum(sizes)[:-1]
    return [part.copy() for part in np.split(x, bounds, axis=axis)]


def _split_domain(ctx: OpContext) -> IterationDomain | None:
    shape = ctx.shape(0)
    axis = _split_axis(ctx)
    sizes = split_sizes(ctx, shape[axis], _split_operand(ctx))
    if not all(isinstance(s, int) for s in sizes):
        return None  # offsets k*(dim/n) of a symbolic dim are not integer constants
    n = len(shape)
    outs, offset = [], 0
    for s in sizes:
        outs.append(AffineMap([AffineExpr.dim(j, n, const=-offset if j == axis else 0)
                               for j in range(n)]))
        offset += s
    return IterationDomain(tuple(LoopDim(f"d{i}", shape[i]) for i in range(n)),
                           (AffineMap.identity(n),) + (None,) * (ctx.num_operands - 1), outs)


register(OpDef("Split", Category.DATA_MOVEMENT, _split_infer, _split_eval, _split_domain,
               attributes={"axis": 0, "num_outputs": None}, min_inputs=1, max_inputs=2,
               doc="cut along axis by the split operand or into num_outputs chunks"))


# ---------------------------------------------------------------- Slice


def _slice_spec(ctx: OpContext, rank: int, operands: Sequence[Sequence[int] | None],
                ) -> dict[int, tuple[int, int, int]]:
    """``{axis: (start, end, step)}`` from the starts/ends/axes/steps operand values."""
    starts, ends, axes, steps = operands
    if len(starts) != len(ends):
        raise ctx.fail(f"starts {list(starts)} and ends {list(ends)} differ in length",
                       operand=2)
    if axes is None:
        axes = list(range(len(starts)))
    elif len(axes) != len(starts):
        raise ctx.fail(f"axes {list(axes)} and starts {list(starts)} differ in length",
                       operand=3)
    if steps is None:
        steps = [1] * len(starts)
    elif len(steps) != len(starts):
        raise ctx.fail(f"steps {list(steps)} and starts {list(starts)} differ in length",
                       operand=4)
    spec: dict[int, tuple[int, int, int]] = {}
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = normalize_axis(ctx, a, rank, "slice axis")
        if a in spec:
            raise ctx.fail(f"axes {list(axes)} name dim {a} twice", operand=3)
        if st == 0:
            raise ctx.fail(f"step of axis {a} is 0", operand=4)
        spec[a] = (int(s), int(e), int(st))
    return spec


def _clamped(dim: int, start: int, end: int, step: int) -> tuple[int, int, int, int]:
    """ONNX Slice clamping: (first index, stop, step, count); stop may be -1 (before index 0).

    Negative bounds count from the end; then start is clamped to [0, dim] (step > 0) or
    [0, dim - 1] (step < 0) and end to [0, dim] or [-1, dim - 1]. This is NumPy's rule except
    for a start below -dim with a negative step: ONNX (and onnxruntime) clamp it to 0, so the
    element 0 is taken, where NumPy (and onnx.reference) take nothing.
    """
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    count = max(0, -((start - end) // step))  # ceil((end - start) / step)
    return start, end, step, count


def _slice_symbolic(ctx: OpContext, axis: int, dim: Dim, start: int, end: int, step: int
                    ) -> bool:
    """Whether a slice of a symbolic dim is the whole dim (forwards) or its reversal."""
    if step == 1 and (start == 0 or start <= -_SYMBOLIC_END) and end >= _SYMBOLIC_END:
        return True
    if step == -1 and (start == -1 or start >= _SYMBOLIC_END) and end <= -_SYMBOLIC_END:
        return True
    raise UnboundDimError(f"{ctx.label}: slicing dim {axis} of size {dim!r} by "
                          f"[{start}:{end}:{step}] needs a concrete size; bind {dim!r} first")


def _slice_operands(ctx: OpContext) -> list[list[int] | None]:
    names = ("starts", "ends", "axes", "steps")
    return [const_ints(ctx, i, names[i - 1]) if ctx.has(i) else None for i in range(1, 5)]


def _slice_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    spec = _slice_spec(ctx, t.rank, _slice_operands(ctx))
    shape = list(t.shape)
    for a, (s, e, st) in spec.items():
        if isinstance(shape[a], int):
            shape[a] = _clamped(shape[a], s, e, st)[3]
        else:
            _slice_symbolic(ctx, a, shape[a], s, e, st)  # whole dim: keeps the symbol
    return [t.with_shape(shape)]


def _slice_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    ops = [None if a is None else [int(v) for v in np.asarray(a).reshape(-1)]
           for a in (list(inputs[1:]) + [None] * 4)[:4]]
    index = [slice(None)] * x.ndim
    for a, (s, e, st) in _slice_spec(ctx, x.ndim, ops).items():
        first, stop, step, count = _clamped(x.shape[a], s, e, st)
        # a stop of -1 means "before index 0", which NumPy would read as the last index
        index[a] = slice(0, 0) if count == 0 else slice(first, None if stop < 0 else stop, step)
    return [x[tuple(index)].copy()]


def _slice_domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.shape(0)
    n = len(shape)
    spec = _slice_spec(ctx, n, _slice_operands(ctx))
    exprs: list[AffineExpr] | None = []
    for j in range(n):
        if j not in spec:
            exprs.append(AffineExpr.dim(j, n))
            continue
        s, e, st = spec[j]
        if isinstance(shape[j], int):
            first, _, step, _ = _clamped(shape[j], s, e, st)
            exprs.append(AffineExpr.dim(j, n, scale=step, const=first))
        elif st == 1:
            exprs.append(AffineExpr.dim(j, n))
        else:  # reversal of a symbolic dim starts at the symbolic index dim-1
            exprs = None
            break
    data_map = None if exprs is None else AffineMap(exprs)
    return _result_domain(ctx.result_type(0).shape,
                          (data_map,) + (None,) * (ctx.num_operands - 1))


register(OpDef("Slice", Category.DATA_MOVEMENT, _slice_infer, _slice_eval, _slice_domain,
               min_inputs=3, max_inputs=5,
               doc="data[starts:ends:steps] on axes (int64 operands 1-4), NumPy clamping"))


# ---------------------------------------------------------------- Gather / GatherElements


def _index_dtype(ctx: OpContext) -> None:
    t = ctx.type(1)
    if t.dtype not in INT_DTYPES:
        raise ctx.fail(f"indices must be int32 or int64, got {t}", operand=1)


def _gather_axis(ctx: OpContext) -> int:
    rank = ctx.type(0).rank
    if rank == 0:
        raise ctx.fail("cannot gather from a scalar", operand=0)
    return normalize_axis(ctx, ctx.attr("axis"), rank)


def _gather_infer(ctx: OpContext) -> list[TensorType]:
    _index_dtype(ctx)
    data = ctx.type(0)
    axis = _gather_axis(ctx)
    return [data.with_shape(data.shape[:axis] + ctx.shape(1) + data.shape[axis + 1:])]


def _gather_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    # np.take accepts negative indices in [-dim, dim) and raises outside
    return [np.take(np.asarray(inputs[0]), np.asarray(inputs[1]), axis=_gather_axis(ctx))]


def _gather_domain(ctx: OpContext) -> IterationDomain:
    axis = _gather_axis(ctx)
    out = ctx.result_type(0).shape
    q = ctx.type(1).rank
    return _result_domain(out, (None, AffineMap.select(range(axis, axis + q), len(out))))


register(OpDef("Gather", Category.DATA_MOVEMENT, _gather_infer, _gather_eval, _gather_domain,
               attributes={"axis": 0}, min_inputs=2, max_inputs=2,
               doc="take(data, indices, axis); negative indices count from the end"))


def _gather_elements_infer(ctx: OpContext) -> list[TensorType]:
    _index_dtype(ctx)
    data, idx = ctx.type(0), ctx.type(1)
    axis = _gather_axis(ctx)
    if idx.rank != data.rank:
        raise ctx.fail(f"indices {_shape_str(idx.shape)} must have the rank of data "
                       f"{_shape_str(data.shape)}", operand=1)
    for j, (d, i) in enumerate(zip(data.shape, idx.shape)):
        if j != axis and isinstance(d, int) and isinstance(i, int) and i > d:
            raise ctx.fail(f"indices {_shape_str(idx.shape)} exceed data "
                           f"{_shape_str(data.shape)} in dim {j}", operand=1)
    return [data.with_shape(idx.shape)]


def _gather_elements_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    data, idx = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
    axis = _gather_axis(ctx)
    size = data.shape[axis]
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise IndexError(f"an index is out of range [-{size}, {size}) for axis {axis}")
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = np.where(idx < 0, idx + size, idx)
    return [data[tuple(grid)]]


def _gather_elements_domain(ctx: OpContext) -> IterationDomain:
    out = ctx.result_type(0).shape
    return _result_domain(out, (None, AffineMap.identity(len(out))))


register(OpDef("GatherElements", Category.DATA_MOVEMENT, _gather_elements_infer,
               _gather_elements_eval, _gather_elements_domain, attributes={"axis": 0},
               min_inputs=2, max_inputs=2,
               doc="out[i][j] = data[indices[i][j]][j] (axis 0), like take_along_axis"))


# ---------------------------------------------------------------- Expand


def _expand_shape(ctx: OpContext, shape: Sequence[Dim], target: Sequence[int]) -> tuple[Dim, ...]:
    """Bidirectional broadcast of the data shape with the requested shape."""
    if any(s < 0 for s in target):
        raise ctx.fail(f"shape {list(target)} has a negative size", operand=1)
    return broadcast_pair(shape, target, lambda j, x, y: ctx.fail(
        f"cannot expand {_shape_str(shape)} to {list(target)}: dim {j} is {x} vs {y}",
        operand=1))


def _expand_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    if ctx.type(1).rank != 1:
        raise ctx.fail(f"shape must be 1-D, got {ctx.type(1)}", operand=1)
    return [t.with_shape(_expand_shape(ctx, t.shape, const_ints(ctx, 1, "shape")))]


def _expand_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    shape = _expand_shape(ctx, x.shape, [int(s) for s in np.asarray(inputs[1]).reshape(-1)])
    return [np.broadcast_to(x, shape).copy()]


def _expand_domain(ctx: OpContext) -> IterationDomain:
    return elementwise_domain(ctx.result_type(0).shape, [ctx.shape(0), None])


register(OpDef("Expand", Category.DATA_MOVEMENT, _expand_infer, _expand_eval, _expand_domain,
               min_inputs=2, max_inputs=2,
               doc="broadcast to the shape operand (bidirectional, like NumPy)"))


# ---------------------------------------------------------------- Pad

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_mode(ctx: OpContext) -> str:
    mode = ctx.attr("mode")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in _PAD_MODES:
        raise ctx.fail(f"unknown mode {mode!r}; expected one of {', '.join(_PAD_MODES)}")
    return mode


def _pad_widths(ctx: OpContext, rank: int, pads: list[int], axes: list[int] | None
                ) -> list[tuple[int, int]]:
    """(begin, end) per dim from the pads operand ([begins..., ends...] over axes)."""
    axes_n = list(range(rank)) if axes is None else [
        normalize_axis(ctx, a, rank, "pad axis") for a in axes]
    if len(set(axes_n)) != len(axes_n):
        raise ctx.fail(f"axes {axes} name a dim twice", operand=3)
    if len(pads) != 2 * len(axes_n):
        raise ctx.fail(f"pads {pads} must have 2 * {len(axes_n)} entries (begins then ends "
                       f"of the {len(axes_n)} padded axes)", operand=1)
    widths = [(0, 0)] * rank
    for k, a in enumerate(axes_n):
        widths[a] = (pads[k], pads[len(axes_n) + k])
    return widths


def _pad_operands(ctx: OpContext) -> tuple[list[int], list[int] | None]:
    return (const_ints(ctx, 1, "pads"),
            const_ints(ctx, 3, "axes") if ctx.has(3) else None)


def _pad_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    _pad_mode(ctx)
    if ctx.has(2):
        c = ctx.type(2)
        if c.dtype != t.dtype:
            raise ctx.fail(f"constant_value {c} must have the data dtype {t.dtype}", operand=2)
        if c.rank > 1 or (c.rank == 1 and c.shape[0] != 1):
            raise ctx.fail(f"constant_value must be a scalar, got {c}", operand=2)
    widths = _pad_widths(ctx, t.rank, *_pad_operands(ctx))
    shape = []
    for j, (d, (b, e)) in enumerate(zip(t.shape, widths)):
        if not isinstance(d, int):
            if b + e:
                raise UnboundDimError(f"{ctx.label}: padding dim {j} of {_shape_str(t.shape)} "
                                      f"by ({b}, {e}) gives {d} + {b + e}, which is not a "
                                      f"product of symbols; bind {d!r} first")
            shape.append(d)
            continue
        size = d + b + e
        if size < 0:
            raise ctx.fail(f"pads ({b}, {e}) crop dim {j} of {_shape_str(t.shape)} below 0",
                           operand=1)
        shape.append(size)
    return [t.with_shape(shape)]


def _pad_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    pads = [int(p) for p in np.asarray(inputs[1]).reshape(-1)]
    axes = None if len(inputs) < 4 or inputs[3] is None else [
        int(a) for a in np.asarray(inputs[3]).reshape(-1)]
    widths = _pad_widths(ctx, x.ndim, pads, axes)
    # negative pads crop first
    crop = tuple(slice(max(0, -b), x.shape[j] - max(0, -e)) for j, (b, e) in enumerate(widths))
    x = x[crop]
    grow = [(max(0, b), max(0, e)) for b, e in widths]
    mode = _pad_mode(ctx)
    if mode == "constant":
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else 0
        out = np.pad(x, grow, mode="constant", constant_values=np.asarray(value).reshape(()))
    else:
        out = np.pad(x, grow, mode=mode)
    return [out.astype(x.dtype, copy=False)]  # np.pad always returns a new array


def _pad_domain(ctx: OpContext) -> IterationDomain:
    out = ctx.result_type(0).shape
    n = len(out)
    maps: list[AffineMap | None] = [None] * ctx.num_operands
    if _pad_mode(ctx) == "constant":
        widths = _pad_widths(ctx, n, *_pad_operands(ctx))
        maps[0] = AffineMap([AffineExpr.dim(j, n, const=-b) for j, (b, _) in enumerate(widths)])
    if ctx.has(2):
        maps[2] = _scalar_map(ctx.type(2).rank, n)
    return _result_domain(out, maps)


register(OpDef("Pad", Category.DATA_MOVEMENT, _pad_infer, _pad_eval, _pad_domain,
               attributes={"mode": "constant"}, min_inputs=2, max_inputs=4,
               doc="pad (or crop, negative) by the pads operand; constant/reflect/edge/wrap"))


# ---------------------------------------------------------------- Tile


def _tile_repeats(ctx: OpContext, rank: int, repeats: list[int]) -> list[int]:
    if len(repeats) != rank:
        raise ctx.fail(f"repeats {repeats} must have one entry per dim of "
                       f"{_shape_str(ctx.shape(0))} (rank {rank})", operand=1)
    if any(r < 0 for r in repeats):
        raise ctx.fail(f"repeats {repeats} must be >= 0", operand=1)
    return repeats


def _tile_infer(ctx: OpContext) -> list[TensorType]:
    t = ctx.type(0)
    reps = _tile_repeats(ctx, t.rank, const_ints(ctx, 1, "repeats"))
    return [t.with_shape([_dims.mul(d, r) for d, r in zip(t.shape, reps)])]


def _tile_eval(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    x = np.asarray(inputs[0])
    reps = _tile_repeats(ctx, x.ndim, [int(r) for r in np.asarray(inputs[1]).reshape(-1)])
    return [np.tile(x, reps).copy() if reps else x.copy()]


register(OpDef("Tile", Category.DATA_MOVEMENT, _tile_infer, _tile_eval, _opaque_domain,
               min_inputs=2, max_inputs=2, doc="repeat the operand repeats[i] times on dim i"))
