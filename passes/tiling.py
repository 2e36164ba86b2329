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


class _ApproxModel:
    """The traffic model with every tile counted full size (edge tiles as big as the others),
    compiled once per problem into plain arithmetic over each map's nonzero terms; the chosen
    tiling's exact traffic comes from :mod:`tensorir.traffic`.

    A map's box depends on the tile alone, so it is computed once per tile for every loop
    order tried. Its reload count is the product of the trip counts of the loops down to its
    innermost relevant loop that moves (more than one trip): a prefix product of the order."""

    def __init__(self, domain: IterationDomain, shapes_in, shapes_out,
                 sizes_in: Sequence[float], sizes_out: Sequence[float], extents: Sequence[int]):
        maps = [(m, sh, sz) for m, sh, sz in zip(domain.inputs, shapes_in, sizes_in)
                if m is not None and sh is not None]
        maps += [(m, sh, sz) for m, sh, sz in zip(domain.outputs, shapes_out, sizes_out)
                 if m is not None]
        self.extents = tuple(extents)
        self.prepared = [[(int(bound), [(abs(c), i) for i, c in enumerate(e.coeffs) if c])
                          for e, bound in zip(amap.exprs, shape)] for amap, shape, _ in maps]
        self.sizes = [float(size) for _, _, size in maps]
        self.relevant = [{i for _, terms in exprs for _, i in terms} for exprs in self.prepared]
        self._tiles: dict[tuple[int, ...], tuple[list[float], int, list[int]]] = {}
        self._positions: dict[tuple[int, ...], list[list[tuple[int, int]]]] = {}

    def _tile(self, tile: tuple[int, ...]) -> tuple[list[float], int, list[int]]:
        """Per map its box's bytes, their sum rounded up (the footprint), and the trip counts."""
        found = self._tiles.get(tile)
        if found is None:
            weighted = []
            footprint = 0.0
            for exprs, size in zip(self.prepared, self.sizes):
                box = 1
                for bound, terms in exprs:
                    span = 1
                    for c, i in terms:
                        span += c * (tile[i] - 1)
                    box *= span if span < bound else bound
                weighted.append(size * box)
                footprint += size * box
            trips = [-(-e // t) for e, t in zip(self.extents, tile)]
            found = self._tiles[tile] = (weighted, math.ceil(footprint), trips)
        return found

    def _innermost_first(self, order: tuple[int, ...]) -> list[list[tuple[int, int]]]:
        """Per map, its relevant dims' (position in ``order``, dim), innermost first."""
        found = self._positions.get(order)
        if found is None:
            found = self._positions[order] = [
                sorted(((k, d) for k, d in enumerate(order) if d in rel), reverse=True)
                for rel in self.relevant]
        return found

    def footprint(self, tile: tuple[int, ...]) -> int:
        return self._tile(tile)[1]

    def moved(self, tile: tuple[int, ...], order: tuple[int, ...]) -> int:
        weighted, _, trips = self._tile(tile)
        outer_product = list(itertools.accumulate([trips[d] for d in order], operator.mul))
        moved = 0.0
        for box_bytes, positions in zip(weighted, self._innermost_first(order)):
            mult = 1
            for k, d in positions:
                if trips[d] > 1:
                    mult = outer_product[k]
                    break
            moved += box_bytes * mult
        return math.ceil(moved)


class _ExactModel:
    """The exact traffic (:func:`tensorir.traffic.domain_traffic`, edge tiles included)."""

    def __init__(self, domain: IterationDomain, shapes_in, shapes_out,
                 sizes_in: Sequence[float], sizes_out: Sequence[float], extents: Sequence[int]):
        self.args = (shapes_in, shapes_out, sizes_in, sizes_out, extents)
        self.domain = domain
        self.identity = tuple(range(len(extents)))
        self._footprints: dict[tuple[int, ...], int] = {}

    def footprint(self, tile: tuple[int, ...]) -> int:
        # a tile's footprint is the same in every loop order: any costing of it gives it
        found = self._footprints.get(tile)
        return found if found is not None else self.moved_and_footprint(tile, self.identity)[1]

    def moved(self, tile: tuple[int, ...], order: tuple[int, ...]) -> int:
        return self.moved_and_footprint(tile, order)[0]

    def moved_and_footprint(self, tile, order) -> tuple[int, int]:
        moved, footprint = _cost(self.domain, Tiling(tile, order), *self.args)
        self._footprints[tile] = footprint
        return moved, footprint


class _Search:
    """The greedy growth of one tiling problem (a cost model over fixed extents, with pinned
    dims), everything it evaluates kept: footprints per tile, traffic per (tile, order), the
    doublings open from each (tile, order) it reaches, and its answers.

    The level's capacity only decides which doublings fit, so levels and targets that meet
    the same problem (a model's repeated kernels on every preset; an inner level whose outer
    tile is the whole domain) share the work. An answer is kept with the range of capacities
    for which every decision that led to it is the same (each tile tried fits or does not
    alike): a capacity in that range gets it without a walk."""

    def __init__(self, model, extents: Sequence[int], fixed: Mapping[int, int]):
        self.model = model
        self.extents = tuple(extents)
        self.fixed = dict(fixed)
        self.free = [d for d in range(len(extents)) if d not in self.fixed]
        self._moved: dict[tuple, int] = {}
        self._steps: dict[tuple, list[list]] = {}
        self._answers: dict[tuple, list[tuple]] = {}

    def moved(self, tile: tuple[int, ...], order: tuple[int, ...]) -> int:
        key = (tile, order)
        found = self._moved.get(key)
        if found is None:
            found = self._moved[key] = self.model.moved(tile, order)
        return found

    def best(self, orders: tuple[tuple[int, ...], ...], capacity: int, granule: int
             ) -> tuple[tuple[int, ...], tuple[int, ...], int, int] | None:
        """(tile, order, moved, footprint) of the order whose grown tiles move the fewest
        bytes (ties: the smaller footprint, then the first order); None when not even the
        start fits."""
        answers = self._answers.setdefault((orders, granule), [])
        for lo, hi, found in answers:
            if lo <= capacity < hi:
                return found
        fits = [0, math.inf]   # the capacities for which each fit test goes the same way
        found = None
        start = self._start(capacity, granule, fits)
        if start is not None:
            for order in orders:
                tile, moved, foot = self._grow(order, start, capacity, fits)
                if found is None or (moved, foot) < (found[2], found[3]):
                    found = (tile, order, moved, foot)
        answers.append((fits[0], fits[1], found))
        return found

    @staticmethod
    def _test(foot: int, capacity: int, fits: list) -> bool:
        """Whether ``foot`` fits, narrowing ``fits`` to the capacities that agree."""
        if foot > capacity:
            fits[1] = min(fits[1], foot)
            return False
        fits[0] = max(fits[0], foot)
        return True

    def _start(self, capacity: int, granule: int, fits: list) -> tuple[int, ...] | None:
        """``granule`` along every free dim, halved together until the tiles fit (the same
        for every order: a footprint does not depend on it). None when even 1 does not fit."""
        while True:
            tile = tuple(min(self.fixed.get(d, granule), e) for d, e in enumerate(self.extents))
            if self._test(self.model.footprint(tile), capacity, fits):
                return tile
            if granule == 1:
                return None
            granule //= 2

    def _steps_from(self, tile: tuple[int, ...], order: tuple[int, ...]) -> list[list]:
        """Each doubling of a free dim short of its extent, in dim order, as [tile,
        footprint, saving]; the saving (traffic saved per extra byte of footprint) is filled
        in when a walk first finds the doubling fits (:meth:`_grow`)."""
        key = (tile, order)
        found = self._steps.get(key)
        if found is None:
            found = self._steps[key] = []
            for d in self.free:
                if tile[d] < self.extents[d]:
                    trial = tile[:d] + (min(self.extents[d], tile[d] * 2),) + tile[d + 1:]
                    found.append([trial, self.model.footprint(trial), None])
        return found

    def _grow(self, order: tuple[int, ...], tile: tuple[int, ...], capacity: int, fits: list
              ) -> tuple[tuple[int, ...], int, int]:
        """From ``tile``, double the dim that saves the most traffic per extra byte of
        footprint (ties: the lower dim, growing more) while the tiles fit and the saving is
        not negative."""
        moved, foot = self.moved(tile, order), self.model.footprint(tile)
        while True:
            best = None
            for step in self._steps_from(tile, order):
                trial, t_foot, saving = step
                if not self._test(t_foot, capacity, fits):
                    continue
                if saving is None:
                    saving = step[2] = (moved - self.moved(trial, order)) / max(1, t_foot - foot)
                if best is None or saving > best[2]:
                    best = step
            if best is None or best[2] < 0:
                return tile, moved, foot
            tile, foot = best[0], best[1]
            moved = self.moved(tile, order)


@functools.lru_cache(maxsize=1024)
def _approx_search(domain: IterationDomain, shapes_in, shapes_out, sizes_in, sizes_out,
                   extents: tuple[int, ...], fixed: tuple[tuple[int, int], ...]) -> _Search:
    """Process-wide, keyed by everything the search depends on but the level."""
    return _Search(_ApproxModel(domain, shapes_in, shapes_out, sizes_in, sizes_out, extents),
                   extents, dict(fixed))


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
    orders; ``approximate`` searches with :class:`_ApproxModel` (fast, edge tiles counted
    full, and its evaluations shared by every search of the same problem) instead of the
    exact traffic. Raises TensorIRError when even the smallest tiles (1, or the fixed sizes)
    do not fit the level.
    """
    extents = tuple(int(e) for e in (extents if extents is not None else domain.extents))
    fixed = dict(fixed or {})
    for d, size in fixed.items():
        if not 0 <= d < len(extents) or size < 1:
            raise TensorIRError(f"fixed tile {d}={size} is not a loop dim with a positive size")
    shapes_in = tuple(None if s is None else tuple(int(x) for x in s) for s in operand_shapes)
    shapes_out = tuple(tuple(int(x) for x in s) for s in result_shapes)
    if approximate:
        search = _approx_search(domain, shapes_in, shapes_out, tuple(operand_itemsizes),
                                tuple(result_itemsizes), extents, tuple(sorted(fixed.items())))
    else:
        search = _Search(_ExactModel(domain, shapes_in, shapes_out, operand_itemsizes,
                                     result_itemsizes, extents), extents, fixed)
    capacity = level.usable_bytes
    n = len(extents)
    if orders is None:
        orders = [tuple([d for d in range(n) if d != inner] + [inner]) for inner in range(n)] or [()]
    # a dim that cannot move (extent 1, or pinned to its extent) does not make orders differ
    still = {d for d in range(n) if extents[d] == 1 or fixed.get(d) == extents[d]}
    distinct = {}
    for order in orders:
        distinct.setdefault(tuple(d for d in order if d not in still), order)
    found = search.best(tuple(tuple(order) for order in distinct.values()), capacity,
                        GRANULE if approximate else 1)
    if found is None:
        raise TensorIRError(f"no tiling fits level {level.name!r} ({capacity} usable bytes): "
                            f"even the smallest tiles need more")
    tile, order, moved, foot = found
    return TilingChoice(level.name, Tiling(tile, order), moved, foot)


GRANULE = 16
"""The tile edge the approximate search starts from: the side of a 16x16 systolic array, the
fp32 lanes of an AVX-512 vector, a tensor-core fragment. Starting there keeps tiles
compute-shaped (a 1 x 16 x 256 tile would feed one row of an array) and saves the doubling
steps below it."""


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
