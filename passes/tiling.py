"""Tile selection: for a kernel's iteration domain and one memory level, the tiling that moves
the fewest bytes into the level while every operand's tile fits in it.

    minimise  sum_X bytes(X) * traffic(X, tiling)       (tensorir.traffic, exact)
    subject to sum_X bytes(X) * footprint(X, tiling) <= usable_bytes(level)

A heuristic, fast and deterministic: for each loop order in a small candidate set (each loop
dim in turn innermost, the others in domain order), grow tiles greedily from 1 by doubling the
dim whose doubling saves the most traffic per extra byte of footprint, while the tiles fit;
keep the best (tiling, order). Tile sizes the user fixes are never changed.

:func:`choose_kernel_tiling` applies it level by level for multi-level blocking: the outermost
on-chip level tiles the whole domain, each inner level tiles one tile of the level outside it.
Loop orders keep the split reduction dims innermost (the accumulator stays in place while they
run) and dims that must stay whole are fixed at their extent.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from typing import Mapping, Sequence

import attrs

from tensorir.errors import TensorIRError
from tensorir.ops.domain import IterationDomain
from tensorir.target import MemoryLevel
from tensorir.traffic import Tiling, domain_traffic


@attrs.frozen
class TilingChoice:
    level: str
    tiling: Tiling
    traffic_bytes: int      # bytes moved into the level over the loop nest
    footprint_bytes: int    # bytes of one set of tiles (per buffer; x2 is reserved if double buffered)


def _cost(domain: IterationDomain, tiling: Tiling, shapes_in, shapes_out,
          sizes_in: Sequence[float], sizes_out: Sequence[float],
          extents: Sequence[int] | None = None) -> tuple[int, int]:
    traffic = domain_traffic(domain, tiling, shapes_in, shapes_out, extents)
    moved = footprint = 0.0
    for t in traffic:
        size = sizes_out[t.index] if t.is_result else sizes_in[t.index]
        moved += size * (t.elements + t.partial_reloads)
        footprint += size * t.footprint
    return math.ceil(moved), math.ceil(footprint)


def _approx_cost_fn(domain: IterationDomain, shapes_in, shapes_out,
                    sizes_in: Sequence[float], sizes_out: Sequence[float]):
    """The traffic model with every tile counted full size (edge tiles as big as the others),
    compiled once per search into plain arithmetic over each map's nonzero terms; the chosen
    tiling's exact traffic comes from :mod:`tensorir.traffic`.

    A map's box depends on the tile alone, so it is computed once per tile for every loop
    order tried. Its reload count is the product of the trip counts of the loops down to its
    innermost relevant loop that moves (more than one trip): a prefix product of the order."""
    maps = [(m, sh, sz) for m, sh, sz in zip(domain.inputs, shapes_in, sizes_in)
            if m is not None and sh is not None]
    maps += [(m, sh, sz) for m, sh, sz in zip(domain.outputs, shapes_out, sizes_out)
             if m is not None]
    prepared = []
    for amap, shape, _ in maps:
        prepared.append([(int(bound), [(abs(c), i) for i, c in enumerate(e.coeffs) if c])
                         for e, bound in zip(amap.exprs, shape)])
    sizes = [float(size) for _, _, size in maps]
    relevant = [{i for _, terms in exprs for _, i in terms} for exprs in prepared]
    boxes_of_tile: dict[tuple[int, ...], list[int]] = {}
    relevant_of_order: dict[tuple[int, ...], list[list[tuple[int, int]]]] = {}

    def boxes(tile: tuple[int, ...]) -> list[int]:
        found = boxes_of_tile.get(tile)
        if found is None:
            found = []
            for exprs in prepared:
                box = 1
                for bound, terms in exprs:
                    span = 1
                    for c, i in terms:
                        span += c * (tile[i] - 1)
                    box *= span if span < bound else bound
                found.append(box)
            boxes_of_tile[tile] = found
        return found

    def innermost_first(order: tuple[int, ...]) -> list[list[tuple[int, int]]]:
        """Per map, its relevant dims' (position in ``order``, dim), innermost first."""
        found = relevant_of_order.get(order)
        if found is None:
            found = [sorted(((k, d) for k, d in enumerate(order) if d in rel), reverse=True)
                     for rel in relevant]
            relevant_of_order[order] = found
        return found

    def cost(tile: Sequence[int], order: Sequence[int], ext: Sequence[int]) -> tuple[int, int]:
        trips = [-(-e // t) for e, t in zip(ext, tile)]
        outer_product = list(itertools.accumulate([trips[d] for d in order], operator.mul))
        moved = footprint = 0.0
        for box, size, positions in zip(boxes(tuple(tile)), sizes, innermost_first(tuple(order))):
            mult = 1
            for k, d in positions:
                if trips[d] > 1:
                    mult = outer_product[k]
                    break
            moved += size * box * mult
            footprint += size * box
        return math.ceil(moved), math.ceil(footprint)

    return cost


def choose_tiling(domain: IterationDomain, operand_shapes: Sequence[Sequence[int] | None],
                  result_shapes: Sequence[Sequence[int]], operand_itemsizes: Sequence[float],
                  result_itemsizes: Sequence[float], level: MemoryLevel,
                  fixed: Mapping[int, int] | None = None, *,
                  extents: Sequence[int] | None = None,
                  orders: Sequence[tuple[int, ...]] | None = None,
                  approximate: bool = False) -> TilingChoice:
    """The tiling of ``domain`` for ``level`` (see the module docstring).

    ``fixed`` maps loop dim index -> tile size the user chose; ``extents`` overrides the
    domain's (an inner level tiles one outer tile); ``orders`` overrides the candidate loop
    orders; ``approximate`` searches with :func:`_approx_cost_fn` (fast, edge tiles counted
    full) instead of the exact traffic. Raises TensorIRError when even the smallest tiles (1,
    or the fixed sizes) do not fit the level.
    """
    if approximate:
        cost = _approx_cost_fn(domain, operand_shapes, result_shapes, operand_itemsizes,
                               result_itemsizes)
    else:
        def cost(tile, order, ext):
            return _cost(domain, Tiling(tile, order), operand_shapes, result_shapes,
                         operand_itemsizes, result_itemsizes, ext)
    extents = [int(e) for e in (extents if extents is not None else domain.extents)]
    fixed = dict(fixed or {})
    for d, size in fixed.items():
        if not 0 <= d < len(extents) or size < 1:
            raise TensorIRError(f"fixed tile {d}={size} is not a loop dim with a positive size")
    capacity = level.usable_bytes
    n = len(extents)
    if orders is None:
        orders = [tuple([d for d in range(n) if d != inner] + [inner]) for inner in range(n)] or [()]
    # a dim that cannot move (extent 1, or pinned to its extent) does not make orders differ
    still = {d for d in range(n) if extents[d] == 1 or fixed.get(d) == extents[d]}
    distinct = {}
    for order in orders:
        distinct.setdefault(tuple(d for d in order if d not in still), order)
    best: TilingChoice | None = None
    for order in distinct.values():
        found = _grow(cost, order, extents, fixed, capacity, GRANULE if approximate else 1)
        if found is None:
            continue
        tile, moved, foot = found
        choice = TilingChoice(level.name, Tiling(tuple(tile), order), moved, foot)
        if best is None or (choice.traffic_bytes, choice.footprint_bytes) < \
                (best.traffic_bytes, best.footprint_bytes):
            best = choice
    if best is None:
        raise TensorIRError(f"no tiling fits level {level.name!r} ({capacity} usable bytes): "
                            f"even the smallest tiles need more")
    return best


GRANULE = 16
"""The tile edge the approximate search starts from: the side of a 16x16 systolic array, the
fp32 lanes of an AVX-512 vector, a tensor-core fragment. Starting there keeps tiles
compute-shaped (a 1 x 16 x 256 tile would feed one row of an array) and saves the doubling
steps below it."""


def _grow(cost, order, extents, fixed, capacity, granule):
    """Grow tiles by doubling the dim that saves the most traffic per extra byte of footprint,
    starting from ``granule`` along every free dim (halved together until the start fits).
    None when even the smallest tiles do not fit."""
    n = len(extents)
    while True:
        tile = [min(fixed.get(d, granule), extents[d]) for d in range(n)]
        moved, foot = cost(tile, order, extents)
        if foot <= capacity:
            break
        if granule == 1:
            return None
        granule //= 2
    while True:
        step = None
        for d in range(n):
            if d in fixed or tile[d] >= extents[d]:
                continue
            trial = list(tile)
            trial[d] = min(extents[d], tile[d] * 2)
            t_moved, t_foot = cost(trial, order, extents)
            if t_foot > capacity:
                continue
            # traffic saved per extra byte of footprint; ties go to growing more
            key = ((moved - t_moved) / max(1, t_foot - foot), -d)
            if step is None or key > step[0]:
                step = (key, trial, t_moved, t_foot)
        if step is None or step[0][0] < 0:
            return tile, moved, foot
        _, tile, moved, foot = step


def kernel_orders(n: int, split_reductions: Sequence[int]) -> list[tuple[int, ...]]:
    """Candidate loop orders: split reduction dims innermost (in domain order), and among the
    other dims each one in turn innermost of them."""
    red = [d for d in range(n) if d in set(split_reductions)]
    par = [d for d in range(n) if d not in set(split_reductions)]
    if not par:
        return [tuple(red)]
    return [tuple([d for d in par if d != inner] + [inner] + red) for inner in par]


def choose_kernel_tiling(kd, operand_types, result_type, levels: Sequence[MemoryLevel],
                         fixed: Mapping[int, int] | None = None, *, strict: bool = False):
    """A :class:`~tensorir.schedule.LevelTiling` per on-chip level (``levels`` outermost
    first) for a kernel domain (:mod:`tensorir.kernel`).

    Each level tiles one tile of the level outside it. Dims that must stay whole keep their
    extent. A scratchpad that cannot hold even the smallest tiles is an error naming the
    kernel's needs; a cache that cannot is blocked for as if it could, and simply misses
    (with ``strict``, that is an error too: the lowering then unfuses a fused kernel).
    """
    from tensorir.ops.domain import IterationDomain
    from tensorir.schedule import LevelTiling, _acc_dtype
    extents = list(kd.extents)
    shapes = [operand_types[a.operand].shape if a.map is not None else None
              for a in kd.accesses]
    sizes = [float(operand_types[a.operand].dtype.itemsize) for a in kd.accesses]
    # the result tile, and the accumulator (the anchor's result tile, a different box when
    # the anchor is not the root) when a kernel has an anchor and an epilogue
    outputs = [kd.result_map]
    out_shapes = [tuple(result_type.shape)]
    out_sizes = [float(result_type.dtype.itemsize)]
    if kd.anchor is not None:
        anchor_type = kd.steps[kd.anchor].op.results[0].type
        acc = (kd.accumulator_map, tuple(anchor_type.shape),
               float(_acc_dtype(anchor_type.dtype).itemsize))
        if any(st.stage == "epilogue" for st in kd.steps):
            outputs.append(acc[0])
            out_shapes.append(acc[1])
            out_sizes.append(acc[2])
        else:  # the accumulator is the result tile
            outputs, out_shapes, out_sizes = [acc[0]], [acc[1]], [acc[2]]
    domain = IterationDomain(kd.dims, tuple(a.map for a in kd.accesses), tuple(outputs))
    orders = kernel_orders(len(extents), kd.split_reductions())
    user = dict(fixed or {})
    tilings = []
    parent = extents
    for level in levels:
        pinned = {d: min(t, parent[d]) for d, t in user.items()}
        pinned.update({d: parent[d] for d in kd.whole})
        # allocation aligns every buffer (both copies) to a line: keep that slack free
        slack = 2 * level.line_bytes * (len(kd.accesses) + len(outputs))
        room = attrs.evolve(level, capacity_bytes=max(1, level.capacity_bytes - 2 * slack)
                            if level.double_buffered else max(1, level.capacity_bytes - slack))
        try:
            choice = _choose_cached(domain, tuple(shapes), tuple(out_shapes), tuple(sizes),
                                    tuple(out_sizes), room, tuple(sorted(pinned.items())),
                                    tuple(parent), tuple(orders))
        except TensorIRError:
            if strict or level.managed.value == "scratchpad":
                raise
            tilings.append(LevelTiling(level.name, tuple(parent), tuple(range(len(parent)))))
            continue
        tilings.append(LevelTiling(level.name, choice.tiling.tile, choice.tiling.order))
        parent = list(choice.tiling.tile)
    return tilings


@functools.lru_cache(maxsize=4096)
def _choose_cached(domain, shapes, out_shapes, sizes, out_sizes, level, pinned, parent, orders):
    """Models repeat kernels (ResNet's blocks, BERT's layers): each problem is solved once."""
    return choose_tiling(domain, shapes, list(out_shapes), sizes, out_sizes, level, dict(pinned),
                         extents=parent, orders=orders, approximate=True)
