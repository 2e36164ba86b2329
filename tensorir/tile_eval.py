"""Evaluate one op on one tile of its iteration domain, generically from the op registry.

    tile(op, box) = op.evaluate(ctx_tile, [X_j[clip(map_j(box))] ...]) = op(X)[map_out(box)]

A tile is a box of the op's loop nest: a ``(start, stop)`` per loop dim. Each operand with an
affine map is read on the box its map reaches from the loop box (:func:`operand_box`), clipped
to the tensor (:func:`clip_box`); what the clip cuts off is padding, which the tile's own
attributes must supply. The tile is then computed by the op's own NumPy evaluation under a
context whose operand types are the tile shapes and whose attributes the op adjusts through its
``tile_attrs`` hook (for window ops the cut becomes explicit ``pads``); the result is the
whole result on the box of each output map.

What the registry says about tiling (:class:`~tensorir.ops.registry.OpDef`):

- ``tileable`` (by category unless an op says): data movement, shape and fused ops refuse,
  because their attributes or operands name absolute positions or whole shapes;
- ``full_dims``: loop dims a tile must cover whole (LRN's channel);
- ``combiner``: without one, reduction dims must be whole; with "add", "max" or "min" a tile
  may split them and returns the partial result, and the partials of all reduction tiles,
  merged with the combiner starting from its identity (:func:`combiner_identity`,
  :func:`combine`), give the result. **Additive terms:** with "add", an affine operand whose
  map uses no reduction dim (Gemm's C, Conv's bias) is part of the result once, not once per
  reduction tile: it is passed as given on the tile where ``first_reduction_tile`` is True and
  as zeros on every other reduction tile;
- ``tile_attrs``: attribute changes for one tile, or why that tile cannot be evaluated.

:func:`tile_is_legal` says why a tile cannot be evaluated (None when it can);
:func:`evaluate_tile` raises :class:`~tensorir.errors.InvalidOpError` with that reason.
Everything is vectorised: loops run over dims and operands, never over elements.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
import numpy as np

from .errors import InvalidOpError
from .ops.domain import AffineMap, IterationDomain
from .ops.registry import Box, OpContext, OpDef, OpTile, get_op_def, op_context
from .types import TensorType

__all__ = ["Box", "TilePlan", "box_shape", "box_slices", "clip_box", "combine",
           "combiner_identity", "evaluate_tile", "operand_box", "plan_tile", "slice_operands",
           "tile_is_legal"]


# ----------------------------------------------------------------------------- boxes

def operand_box(amap: AffineMap, loop_box: Box) -> Box:
    """The box of tensor elements ``amap`` reaches from ``loop_box``, not clipped to the tensor.

    Per tensor dim the expression ``sum(c_i * d_i) + const`` is smallest with each ``d_i`` at
    its start where ``c_i > 0`` and at its last index where ``c_i < 0`` (and largest the other
    way round): the same rule as :func:`tensorir.traffic._box_sizes`. The box spans every
    index from the smallest to the largest value (a strided window reads a subset of it).
    """
    box = []
    for expr in amap.exprs:
        lo = hi = expr.const
        for c, (start, stop) in zip(expr.coeffs, loop_box):
            if c > 0:
                lo += c * start
                hi += c * (stop - 1)
            elif c < 0:
                lo += c * (stop - 1)
                hi += c * start
        box.append((lo, hi + 1))
    return tuple(box)


def clip_box(box: Box, shape: Sequence[int]
             ) -> tuple[Box, tuple[int, ...], tuple[int, ...]]:
    """The part of ``box`` inside a tensor of ``shape``, and per dim how many of the box's
    positions fall below 0 and past the end (the padding): ``below + inside + above`` is the
    box's extent. A box wholly outside clips to an empty range at the nearer edge."""
    inside, below, above = [], [], []
    for (lo, stop), n in zip(box, shape):
        start = min(max(lo, 0), n)
        end = max(min(stop, n), start)
        inside.append((start, end))
        below.append(max(0, min(stop, 0) - lo))
        above.append(max(0, stop - max(lo, n)))
    return tuple(inside), tuple(below), tuple(above)


def box_shape(box: Box) -> tuple[int, ...]:
    """Extents of a box."""
    return tuple(stop - start for start, stop in box)


def box_slices(box: Box) -> tuple[slice, ...]:
    """The NumPy index of a box (clip it first: negative starts would wrap around)."""
    return tuple(slice(start, stop) for start, stop in box)


# ----------------------------------------------------------------------------- combiners

def combiner_identity(combiner: str, dtype: Any) -> Any:
    """The identity of a combiner over ``dtype``: 0 for add, the lowest value for max (-inf,
    the integer minimum, False) and the highest for min."""
    dtype = np.dtype(dtype)
    if combiner == "add":
        return dtype.type(0)
    lowest = combiner == "max"
    if dtype == np.bool_:
        return np.bool_(not lowest)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return dtype.type(info.min if lowest else info.max)
    return dtype.type(-np.inf if lowest else np.inf)


_COMBINE = {"add": np.add, "max": np.maximum, "min": np.minimum}


def combine(combiner: str, acc: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """Merge the partial result of one more reduction tile into ``acc`` (same dtype)."""
    return _COMBINE[combiner](acc, partial).astype(acc.dtype, copy=False)


# ----------------------------------------------------------------------------- the plan

@attrs.frozen
class TilePlan:
    """Everything :func:`evaluate_tile` needs about one legal tile of one op.

    ``operand_boxes`` are unclipped (None: no map or absent), ``clipped`` the parts inside the
    operands (what the caller slices out); ``result_boxes`` are the boxes of the result each
    output map covers; ``additive`` lists the operands added once per reduction (combiner
    "add", map free of reduction dims); ``attrs`` are the tile's attributes.
    """

    ctx: OpContext
    opdef: OpDef
    domain: IterationDomain
    loop_box: Box
    operand_boxes: tuple[Box | None, ...]
    clipped: tuple[Box | None, ...]
    result_boxes: tuple[Box, ...]
    additive: tuple[int, ...]
    attrs: dict

    @property
    def splits_reduction(self) -> bool:
        """Whether the tile covers only part of some reduction dim (a partial result)."""
        return any(self.loop_box[i] != (0, int(self.domain.dims[i].extent))
                   for i in self.domain.reduction_dims())


class _Illegal(Exception):
    """A tile that cannot be evaluated; the message is the reason."""


def _context(ctx_or_op: Any) -> OpContext:
    return ctx_or_op if isinstance(ctx_or_op, OpContext) else op_context(ctx_or_op)


def _static(shape: Sequence[Any], what: str) -> tuple[int, ...]:
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        raise _Illegal(f"{what} has symbolic dims {list(shape)}; tile evaluation needs concrete "
                       f"shapes (bind the graph first)")
    return tuple(int(d) for d in shape)


def _check_loop_box(domain: IterationDomain, extents: Sequence[int], loop_box: Any) -> Box:
    names = domain.names
    try:
        box = tuple((int(a), int(b)) for a, b in loop_box)
    except (TypeError, ValueError):
        raise _Illegal(f"the loop box must be a (start, stop) pair per loop dim "
                       f"({', '.join(names)}), got {loop_box!r}") from None
    if len(box) != len(extents):
        raise _Illegal(f"the loop box has {len(box)} ranges but the domain has "
                       f"{len(extents)} loop dims ({', '.join(names)})")
    for name, (start, stop), extent in zip(names, box, extents):
        if not 0 <= start < stop <= extent:
            raise _Illegal(f"loop dim {name} range {start}..{stop} is empty or outside "
                           f"0..{extent}")
    return box


def _plan(ctx: OpContext, loop_box: Any) -> TilePlan:
    opdef = get_op_def(ctx.op_type)
    refusal = opdef.tiling_refusal()
    if refusal:
        raise _Illegal(refusal)
    domain = opdef.domain(ctx)
    if domain is None:
        raise _Illegal("it has no iteration domain; not tileable")
    unmapped = [i for i, m in enumerate(domain.outputs) if m is None]
    if unmapped:
        raise _Illegal(f"result(s) {unmapped} have no affine output map; not tileable")
    extents = _static(domain.extents, "the iteration domain")
    box = _check_loop_box(domain, extents, loop_box)
    for name in opdef.full_dims:
        i = domain.names.index(name)
        if box[i] != (0, extents[i]):
            raise _Illegal(f"loop dim {name} must stay whole (0..{extents[i]}), got "
                           f"{box[i][0]}..{box[i][1]}")
    reductions = domain.reduction_dims()
    if opdef.combiner is None:
        for i in reductions:
            if box[i] != (0, extents[i]):
                raise _Illegal(f"reduction dim {domain.names[i]} must be whole "
                               f"(0..{extents[i]}), got {box[i][0]}..{box[i][1]}: the op "
                               f"declares no combiner for partial reductions")
    operand_boxes: list[Box | None] = []
    clipped: list[Box | None] = []
    additive = []
    for j in range(ctx.num_operands):  # a domain may leave out trailing absent operands
        amap = domain.inputs[j] if j < len(domain.inputs) else None
        if amap is None or not ctx.has(j):
            operand_boxes.append(None)
            clipped.append(None)
            continue
        ob = operand_box(amap, box)
        operand_boxes.append(ob)
        clipped.append(clip_box(ob, _static(ctx.shape(j), f"operand {j}"))[0])
        if opdef.combiner == "add" and not any(e.coeffs[i] for e in amap.exprs
                                               for i in reductions):
            additive.append(j)
    result_boxes = []
    for i, amap in enumerate(domain.outputs):
        rb = operand_box(amap, box)
        shape = _static(ctx.result_type(i).shape, f"result {i}")
        inside, below, above = clip_box(rb, shape)
        if any(below) or any(above):
            raise _Illegal(f"result {i}'s box {list(rb)} leaves the result {list(shape)}; "
                           f"not tileable")
        result_boxes.append(inside)
    attrs_ = dict(ctx.attrs)
    if opdef.tile_attrs is not None:
        change = opdef.tile_attrs(ctx, OpTile(domain, box, tuple(operand_boxes)))
        if isinstance(change, str):
            raise _Illegal(change)
        attrs_.update(change)
    return TilePlan(ctx, opdef, domain, box, tuple(operand_boxes), tuple(clipped),
                    tuple(result_boxes), tuple(additive), attrs_)


def plan_tile(ctx_or_op: Any, loop_box: Box) -> TilePlan:
    """The :class:`TilePlan` of one tile; InvalidOpError (with the reason) if it is illegal."""
    ctx = _context(ctx_or_op)
    try:
        return _plan(ctx, loop_box)
    except _Illegal as exc:
        raise InvalidOpError(f"{ctx.label}: {exc}") from None


def tile_is_legal(ctx_or_op: Any, loop_box: Box) -> str | None:
    """None if the tile can be evaluated, else why not (``"Slice: data movement ..."``).

    ``ctx_or_op`` is an :class:`~tensorir.ir.Op` or its :class:`OpContext`."""
    ctx = _context(ctx_or_op)
    try:
        _plan(ctx, loop_box)
    except _Illegal as exc:
        return f"{ctx.label}: {exc}"
    return None


# ----------------------------------------------------------------------------- evaluation

def slice_operands(ctx_or_op: Any, loop_box: Box,
                   operands: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """The operands :func:`evaluate_tile` takes, cut from the whole operands: each affine
    operand's clipped box, the whole of an operand without a map, None for an absent one."""
    plan = plan_tile(ctx_or_op, loop_box)
    return [None if a is None else a if box is None else np.asarray(a)[box_slices(box)]
            for a, box in zip(operands, plan.clipped)]


def evaluate_tile(op: Any, loop_box: Box, operands: Sequence[np.ndarray | None], *,
                  first_reduction_tile: bool = True) -> list[np.ndarray]:
    """The results of ``op`` on the boxes its output maps cover from ``loop_box``.

    ``op`` is an :class:`~tensorir.ir.Op` (or its :class:`OpContext`) with concrete shapes;
    ``loop_box`` a ``(start, stop)`` per loop dim of its domain. ``operands[j]`` is, for an
    operand with an affine map, its clipped box (:func:`operand_box`, then :func:`clip_box`
    against its shape; :func:`slice_operands` cuts them), for an operand without a map the
    whole operand, and None for an absent optional operand. Returns, per result,
    ``full_result[box_slices(result box)]``; when the tile splits the reduction dims of an op
    with a combiner, the partial result instead (see the module docstring: with "add", the
    additive operands count only where ``first_reduction_tile`` is True). Raises
    InvalidOpError with the reason when the tile is illegal (:func:`tile_is_legal`).
    """
    plan = plan_tile(op, loop_box)
    ctx = plan.ctx
    if len(operands) != ctx.num_operands:
        raise InvalidOpError(f"{ctx.label}: evaluate_tile got {len(operands)} operands, the op "
                             f"has {ctx.num_operands}")
    inputs: list[np.ndarray | None] = []
    types: list[TensorType | None] = []
    consts: list[np.ndarray | None] = []
    for j, (a, box) in enumerate(zip(operands, plan.clipped)):
        if not ctx.has(j):
            if a is not None:
                raise InvalidOpError(f"{ctx.label}: operand {j} is absent but evaluate_tile "
                                     f"got an array for it")
            inputs.append(None)
            types.append(None)
            consts.append(None)
            continue
        if a is None:
            raise InvalidOpError(f"{ctx.label}: operand {j} ({ctx.type(j)}) is missing")
        a = np.asarray(a)
        want = box_shape(box) if box is not None else tuple(ctx.shape(j))
        if a.shape != want:
            what = f"its clipped box {list(box)}" if box is not None else "the whole operand"
            raise InvalidOpError(f"{ctx.label}: operand {j} has shape {list(a.shape)}, "
                                 f"expected {list(want)} ({what})")
        if j in plan.additive and not first_reduction_tile:
            a = np.zeros_like(a)
        inputs.append(a)
        types.append(TensorType(a.shape, ctx.type(j).dtype))
        consts.append(a if ctx.const_or_none(j) is not None else None)
    tile_ctx = OpContext(plan.opdef, plan.attrs, types, consts, name=ctx.name)
    if plan.opdef.tile_evaluate is not None:
        results = plan.opdef.tile_evaluate(tile_ctx, inputs,
                                           [box_shape(b) for b in plan.result_boxes])
    else:
        results = plan.opdef.evaluate(tile_ctx, inputs)
    for i, (r, box) in enumerate(zip(results, plan.result_boxes)):
        if tuple(np.shape(r)) != box_shape(box):
            raise InvalidOpError(f"{ctx.label}: the tile evaluation of result {i} has shape "
                                 f"{list(np.shape(r))}, but its box {list(box)} has "
                                 f"{list(box_shape(box))}: the op's tiling facts are wrong")
    return [np.asarray(r) for r in results]

