"""Tile selection: for a kernel's iteration domain and one memory level, the tiling that moves
the fewest bytes into the level while every operand's tile fits in it.

    minimise  sum_X bytes(X) * traffic(X, tiling)       (tensorir.traffic, exact)
    subject to sum_X bytes(X) * footprint(X, tiling) <= usable_bytes(level)

A heuristic, fast and deterministic: for each loop order in a small candidate set (each loop
dim in turn innermost, the others in domain order), grow tiles greedily from 1 by doubling the
dim whose doubling saves the most traffic per extra byte of footprint, while the tiles fit;
keep the best (tiling, order). Tile sizes the user fixes are never changed.

This is the per-level building block of the tiling pass (issue 5): multi-level blocking, the
pass over a graph's kernels and lowering come next.
"""

from __future__ import annotations

import math
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
          sizes_in: Sequence[float], sizes_out: Sequence[float]) -> tuple[int, int]:
    traffic = domain_traffic(domain, tiling, shapes_in, shapes_out)
    moved = footprint = 0.0
    for t in traffic:
        size = sizes_out[t.index] if t.is_result else sizes_in[t.index]
        moved += size * (t.elements + t.partial_reloads)
        footprint += size * t.footprint
    return math.ceil(moved), math.ceil(footprint)


def choose_tiling(domain: IterationDomain, operand_shapes: Sequence[Sequence[int] | None],
                  result_shapes: Sequence[Sequence[int]], operand_itemsizes: Sequence[float],
                  result_itemsizes: Sequence[float], level: MemoryLevel,
                  fixed: Mapping[int, int] | None = None) -> TilingChoice:
    """The tiling of ``domain`` for ``level`` (see the module docstring).

    ``fixed`` maps loop dim index -> tile size the user chose. Raises TensorIRError when even
    the smallest tiles (1, or the fixed sizes) do not fit the level.
    """
    extents = [int(e) for e in domain.extents]
    fixed = dict(fixed or {})
    for d, size in fixed.items():
        if not 0 <= d < len(extents) or size < 1:
            raise TensorIRError(f"fixed tile {d}={size} is not a loop dim with a positive size")
    capacity = level.usable_bytes
    n = len(extents)
    orders = [tuple([d for d in range(n) if d != inner] + [inner]) for inner in range(n)] or [()]
    best: TilingChoice | None = None
    for order in orders:
        tile = [min(fixed.get(d, 1), extents[d]) for d in range(n)]
        moved, foot = _cost(domain, Tiling(tile, order), operand_shapes, result_shapes,
                            operand_itemsizes, result_itemsizes)
        if foot > capacity:
            continue
        while True:
            step = None
            for d in range(n):
                if d in fixed or tile[d] >= extents[d]:
                    continue
                trial = list(tile)
                trial[d] = min(extents[d], tile[d] * 2)
                t_moved, t_foot = _cost(domain, Tiling(trial, order), operand_shapes,
                                        result_shapes, operand_itemsizes, result_itemsizes)
                if t_foot > capacity:
                    continue
                # traffic saved per extra byte of footprint; ties go to growing more
                gain = (moved - t_moved) / max(1, t_foot - foot)
                key = (gain, -d)
                if step is None or key > step[0]:
                    step = (key, trial, t_moved, t_foot)
            if step is None or step[0][0] < 0:
                break
            _, tile, moved, foot = step
        choice = TilingChoice(level.name, Tiling(tuple(tile), order), moved, foot)
        if best is None or (choice.traffic_bytes, choice.footprint_bytes) < \
                (best.traffic_bytes, best.footprint_bytes):
            best = choice
    if best is None:
        raise TensorIRError(f"no tiling fits level {level.name!r} ({capacity} usable bytes): "
                            f"even the smallest tiles need more")
    return best
