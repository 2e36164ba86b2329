"""Tile footprints and traffic of a tiled loop nest, in closed form from the iteration domain.

A :class:`Tiling` of an op's iteration domain at one memory level gives a tile extent per loop
dim and the order of the tile loops (outermost first). Each operand has one buffer at that
level holding one tile of its data: the box of elements its affine map reaches from the current
tile of the domain, clipped to the tensor (a convolution's halo is inside the box, its padding
is not). The buffer is loaded again whenever the tile position of a loop the map depends on
changes, that is, on every iteration of the loops down to the innermost such loop (one with
more than one trip); loops further in reuse the resident tile (the operand is *stationary*
across them). So, exactly, edge tiles included:

    traffic(X) = (sum over the tile positions of X's relevant loops of |box(position)|)
                 x (product of the trip counts of X's irrelevant loops outside its innermost
                    relevant loop that has more than one trip)

and ``loads(X)`` is the same with ``|box| = 1``. A result is written back with the same count;
when a reduction loop runs outside its innermost relevant loop, partial results go out and
come back (``partial_reloads``).

The sum factorises over the tensor's dims when each dim's expression uses its own loop dims
(matmul, convolution, pooling, elementwise); otherwise it is evaluated over all relevant
positions at once with NumPy. Either way the cost is in tile positions, never in elements.
"""

from __future__ import annotations

import math
from typing import Sequence

import attrs
import numpy as np

from .ops.domain import AffineExpr, AffineMap, IterationDomain


@attrs.frozen
class Tiling:
    """Tile extents per loop dim (``tile[i]`` for domain dim ``i``) and the loop order."""

    tile: tuple[int, ...] = attrs.field(converter=tuple)
    order: tuple[int, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if sorted(self.order) != list(range(len(self.tile))):
            raise ValueError(f"order {self.order} is not a permutation of the "
                             f"{len(self.tile)} loop dims")
        if any(t < 1 for t in self.tile):
            raise ValueError(f"tile extents must be positive, got {self.tile}")

    @staticmethod
    def untiled(extents: Sequence[int]) -> "Tiling":
        """One tile covering the whole domain."""
        return Tiling(tuple(extents), tuple(range(len(extents))))

    def trips(self, extents: Sequence[int]) -> tuple[int, ...]:
        return tuple(-(-e // t) for e, t in zip(extents, self.tile))


def _relevant(amap: AffineMap) -> set[int]:
    return {i for e in amap.exprs for i, c in enumerate(e.coeffs) if c}


def _box_sizes(expr: AffineExpr, starts: list[np.ndarray], sizes: list[np.ndarray],
               bound: int) -> np.ndarray:
    """Elements of [0, bound) the expression reaches from tiles at the given starts/sizes
    (arrays broadcast over the positions enumerated)."""
    lo = np.full(np.broadcast(*starts).shape if starts else (), expr.const, dtype=np.int64)
    hi = lo.copy()
    for c, s, n in zip(expr.coeffs, starts, sizes):
        if c > 0:
            lo = lo + c * s
            hi = hi + c * (s + n - 1)
        elif c < 0:
            lo = lo + c * (s + n - 1)
            hi = hi + c * s
    return np.maximum(0, np.minimum(hi, bound - 1) - np.maximum(lo, 0) + 1)


def _expr_on(expr: AffineExpr, dims: Sequence[int]) -> AffineExpr:
    return AffineExpr(tuple(expr.coeffs[d] for d in dims), expr.const)


def tile_box_sum(amap: AffineMap, extents: Sequence[int], tiling: Tiling,
                 bounds: Sequence[int]) -> int:
    """Sum over the tile positions of the map's relevant loops of the tile box's elements."""
    tiles = {}
    for d in _relevant(amap):
        start = np.arange(0, extents[d], tiling.tile[d], dtype=np.int64)
        tiles[d] = (start, np.minimum(tiling.tile[d], extents[d] - start))
    return box_sum(amap, tiles, bounds)


def tile_grid(tiles: dict[int, tuple[np.ndarray, np.ndarray]], dims: Sequence[int]
              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The starts and sizes of ``dims``' tiles as arrays that broadcast against each other:
    dim ``dims[k]`` along axis ``k``, so arithmetic on them covers every combination."""
    starts, sizes = [], []
    for k, d in enumerate(dims):
        shape = [1] * len(dims)
        shape[k] = len(tiles[d][0])
        starts.append(tiles[d][0].reshape(shape))
        sizes.append(tiles[d][1].reshape(shape))
    return starts, sizes


def box_sum(amap: AffineMap, tiles: dict[int, tuple[np.ndarray, np.ndarray]],
            bounds: Sequence[int]) -> int:
    """Sum, over every combination of the given tiles of the map's relevant dims (``tiles[d]``
    = starts and sizes of dim d's tiles), of the elements of the box the map reaches."""
    relevant = sorted(_relevant(amap))
    groups = [sorted(i for i, c in enumerate(e.coeffs) if c) for e in amap.exprs]
    flat = [d for g in groups for d in g]

    if len(flat) == len(set(flat)):  # each loop dim feeds one tensor dim: the sum factorises
        total = 1
        for expr, dims, bound in zip(amap.exprs, groups, bounds):
            starts, sizes = tile_grid(tiles, dims)
            total *= int(_box_sizes(_expr_on(expr, dims), starts, sizes, bound).sum())
        return total
    starts, sizes = tile_grid(tiles, relevant)
    product = None
    for expr, bound in zip(amap.exprs, bounds):
        box = _box_sizes(_expr_on(expr, relevant), starts, sizes, bound)
        product = box if product is None else product * box
    return int(np.sum(product)) if product is not None else 1


def _innermost_moving(amap: AffineMap, tiling: Tiling, trips: Sequence[int]) -> int:
    """Position in the loop order of the innermost loop that moves the operand's box: a loop
    its map depends on with more than one trip (a loop of one trip never moves anything)."""
    relevant = _relevant(amap)
    return max((k for k, d in enumerate(tiling.order) if d in relevant and trips[d] > 1),
               default=-1)


def operand_loads(amap: AffineMap, extents: Sequence[int], tiling: Tiling) -> int:
    """How many times the operand's tile is (re)loaded over the loop nest."""
    trips = tiling.trips(extents)
    inner = _innermost_moving(amap, tiling, trips)
    return math.prod(trips[d] for d in tiling.order[:inner + 1])


def operand_traffic(amap: AffineMap, extents: Sequence[int], tiling: Tiling,
                    bounds: Sequence[int]) -> int:
    """Elements moved into the level for this operand over the whole loop nest (exact)."""
    relevant = _relevant(amap)
    trips = tiling.trips(extents)
    inner = _innermost_moving(amap, tiling, trips)
    outside_irrelevant = math.prod(trips[d] for d in tiling.order[:inner + 1]
                                   if d not in relevant)
    return tile_box_sum(amap, extents, tiling, bounds) * outside_irrelevant


def tile_footprint(amap: AffineMap, tiling: Tiling, bounds: Sequence[int]) -> int:
    """Elements of one full tile's box (what the level's buffer must hold)."""
    return math.prod(amap.footprint(tiling.tile, bounds))


@attrs.frozen
class OperandTraffic:
    index: int
    is_result: bool
    footprint: int         # elements of one full tile (buffer size)
    loads: int             # times the tile is (re)loaded or written back
    elements: int          # elements moved over the nest
    partial_reloads: int   # for results: elements of partial sums read back


def domain_traffic(domain: IterationDomain, tiling: Tiling,
                   operand_shapes: Sequence[Sequence[int] | None],
                   result_shapes: Sequence[Sequence[int]],
                   extents: Sequence[int] | None = None) -> list[OperandTraffic]:
    """Traffic of every operand (reads) and result (writes) with an affine map (over
    ``extents`` when given: one outer tile of the domain)."""
    extents = [int(e) for e in (extents if extents is not None else domain.extents)]
    out: list[OperandTraffic] = []
    for i, (amap, shape) in enumerate(zip(domain.inputs, operand_shapes)):
        if amap is None or shape is None:
            continue
        out.append(OperandTraffic(i, False, tile_footprint(amap, tiling, shape),
                                  operand_loads(amap, extents, tiling),
                                  operand_traffic(amap, extents, tiling, shape), 0))
    for i, (amap, shape) in enumerate(zip(domain.outputs, result_shapes)):
        if amap is None:
            continue
        written = operand_traffic(amap, extents, tiling, shape)
        out.append(OperandTraffic(i, True, tile_footprint(amap, tiling, shape),
                                  operand_loads(amap, extents, tiling), written,
                                  max(0, written - math.prod(shape))))
    return out
