"""The CPU backend: an analytical cache model, SIMD compute and a multi-core split, with an exact
mode that replays the kernel's memory accesses through set-associative LRU caches.

On a CPU every on-chip level is a cache, so a buffer of the loop nest is not a copy: it is the
working set of a tile, and whether its reuse survives is up to the cache. The model keeps the
schedule's loop nest and asks, per cache level and per *stream* (an operand read through its
affine map, the accumulator read and written, the result written), how many lines come in::

    misses(X) = sum_p (L_X(p) - L_X(p+1)) * T(X, p)          (lines; p = -1 .. P-1)

- **Positions.** ``p`` runs over the stream's loops, outermost first: the schedule's moving tile
  loops (for an epilogue stream only those up to the loop that completes the reduction), then
  the element loops of the innermost tile, in its order, over the dims of the body steps that
  touch the stream (a fused FFN's first weight is not read again per column of the second
  matmul). ``p = -1`` is the kernel as one iteration.
- **T(X, p)**, the reloads once reuse across loop ``p`` and every loop outside it is lost: the
  sum, over the iterations of loops ``0..p``, of the lines of the box ``X`` touches in one
  iteration of loop ``p``. It is :func:`tensorir.schedule.statement_traffic`'s closed form
  (the one ``backends.cost.kernel_traffic`` uses) with the load placed at ``p``, counted in
  lines instead of elements. ``T(X, -1)`` is compulsory traffic; ``T`` grows inward.
- **Line granularity.** A box moves whole lines. Its runs are its innermost axes that are
  contiguous in the row-major tensor (trailing axes the box covers whole merge into one run;
  axes whose stride is below a line merge into one bounding range); a run of ``R`` bytes
  starting at byte ``a`` of a line covers ``floor((a + R - 1) / line) + 1`` lines. When the
  row pitch is a whole number of lines every row starts at the same, known ``a``; otherwise
  the starts spread over the line and the mean ``1 + (R - itemsize) / line`` is used.
- **L_X(p)**, the fraction of ``X``'s lines whose reuse across loop ``p`` is lost. Under LRU a
  line survives iff fewer than ``A`` (the ways) other lines of its set come between two uses:
  its *reuse window*. Across loop ``p`` that is one iteration of loop ``q``: ``q = p`` when
  ``p`` moves ``X`` (only halos and shared lines are reused), otherwise the loop just outside
  the next loop that moves ``X`` (``X`` is touched once per sweep of it); when none does, ``X``
  is touched at every point and stays hot. In the window are the stationary streams' lines
  (those loop ``q`` does not move), the moving streams' lines touched throughout the
  iteration (this iteration's and the next one's) and, of a moving stream touched only in its
  own phases of the loop inside, a part ``1 - t`` of this iteration's and ``t`` of the next
  one's for a line touched at relative time ``t``. The lines are placed in the sets at their
  addresses (every tensor at its place in :func:`tensor_layout`) in SAMPLES iterations (the
  tile of every dim drawn independently, seeded, since how tensors' sets line up varies with
  each), and the fractions averaged: a tile whose rows are a power of two apart lands in few
  sets and loses its reuse there even when the cache could hold it. Without placement (more lines than
  HISTOGRAM_LINES, a fully associative cache, or a cache shared by several cores, which fill
  its sets evenly) the lines spread evenly over the sets, which makes the test one of
  capacity. ``L(-1) = 1``, ``L`` after the last position is 0, and ``L`` is made
  non-increasing inward (reuse lost across a loop is lost across the loops outside it).
- **Packing** (the default; ``packed=False`` turns it off). Tuned CPU kernels (BLIS, oneDNN)
  copy each operand tile into a contiguous buffer before the inner loops reuse it, which is
  what the schedule's ``load`` statements say. Then a box of ``e`` elements is
  ``ceil(e x itemsize / line)`` lines in every cache inside the outermost one (the outermost
  level reads the tensors in place from main memory, so its lines are the rows' lines), and
  every level's lines spread evenly over its sets: only capacity counts, not where a tensor's
  rows fall. Without packing the loop nest reads every tensor in place and the lines are
  placed in the sets as above; that is the program the exact mode replays, and the mode its
  comparison uses. The copies' own instructions are not counted (one load and store per
  vector of a tile that is then reused many times).
- **Writes.** Caches allocate on a write miss and write back dirty lines: every line of the
  accumulator or result that comes in (fetched for ownership, or partial sums read back)
  goes back up, so its link carries ``misses`` lines down and the same lines up.
- **The hierarchy.** Each cache level is analysed on the whole nest with its own capacity,
  ways and line size; the link into a level carries its misses. A level sees only what the
  level inside it requests (the hierarchy is not inclusive): a stationary stream is in its
  reuse window only for the part the inner level loses across that loop, and no stream
  misses more in a level than in the one inside. The exact mode's caches also allocate on a
  write-back miss: a dirty line the inner level evicts after the outer one dropped it is
  fetched again (:func:`_writeback_refetches`).

When the schedule's tile just fits a level's window and the next loop out does not, ``L`` is
a step at that loop and the model gives ``kernel_traffic``'s closed form with the load placed
there, in lines. A cache can keep more than its tile (reuse across outer loops: less traffic),
lose what a scratchpad would keep (a stationary tile evicted by the operands streaming past
it), or lose a tile that does not fit (a cache that could not hold the smallest tiles keeps
the enclosing tile).

**Compute.** Per core ``fma_units x lanes x 2`` FLOPs per cycle for a contraction's
multiply-accumulates (``lanes = vector_bits / dtype bits``; a dtype without FMAs computes in
f32), ``fma_units x lanes`` for every other FLOP (elementwise work, one operation per lane).
Two efficiencies scale the rate: the *vector efficiency* of the innermost tile along the
vectorised dim (the parallel dim of the result that wastes the fewest lanes,
``extent / (ceil(extent / lanes) x lanes)`` over its tiles), and for a reduction the *latency
efficiency* ``min(1, accumulator vectors / (FMA latency x fma_units))``: a chain of FMAs into
one register issues once per latency, so the innermost tile must hold enough independent
vector accumulators (4 cycles x 2 units = 8 on a Skylake-SP core). A contraction may instead
vectorise along a reduction dim that every input reads contiguously (a dot product): one
accumulator vector per result of the innermost tile, and ``log2(lanes)`` cycles of horizontal
sum per result per visit of the tile; the faster of the two ways is taken.

**Multi-core.** Cores own tiles of the output: the tiles of the outermost loop over each
parallel dim (``P`` of them); with ``k`` cores the busiest runs ``ceil(P / k)`` (load
imbalance), its compute and its private links' traffic scaled by ``ceil(P / k) / P``, at its
own private bandwidth, through a pipeline of its share of the innermost tiles. Private
levels lose the reuse across the split loops (each core brings its own copy of what they
share, at least once per core). Shared levels (L3, DRAM) give their total bandwidth, and a
shared cache's capacity is divided among the cores (counted for the next power of two of
them). A kernel runs on the ``k <= cores`` that is fastest (a runtime can leave cores idle),
so more cores never slow it down.

**Exact mode** (:func:`exact_traffic`, ``kernel_cost(..., exact=True)``): the kernel's access
trace is generated from the loop nest with NumPy broadcasting (:func:`kernel_trace`: one grid
axis per tile loop, then per body step its element loops in the innermost tile's order, and
the epilogue steps after the loop that completes a tile's reduction; what each step touches
is :func:`step_programs`) and replayed through the profile's caches by
:func:`backends.cache_sim.simulate_hierarchy` (one core, shared levels whole, LRU,
write-allocate, write-back, flushed at the end). It refuses kernels above ``max_accesses``.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import attrs
import numpy as np

from tensorir.errors import TensorIRError
from tensorir.ir import Op
from tensorir.kernel import EPILOGUE, MAIN, KernelDomain, kernel_domain_or_reason
from tensorir.ops.domain import AffineMap, IterKind
from tensorir.ops.registry import Category, get_op_def, op_flops
from tensorir.schedule import (KernelSchedule, LevelTiling, _acc_dtype, dim_tiles, flattened_loops,
                               placement, relevant_dims)
from tensorir.traffic import box_sum, tile_grid

from .cost import (KernelCost, Link, LinkBytes, finish, innermost_tiles, kernel_dtype,
                   kernel_links, kernel_traffic, link_overlaps, pipeline)
from .profile import CpuCompute, HardwareProfile, Level

__all__ = ["FMA_LATENCY_CYCLES", "MAX_EXACT_ACCESSES", "Stream", "CacheModel", "ComputeModel",
           "kernel_streams", "tensor_layout", "analytical_traffic", "cache_model",
           "compute_model", "exact_traffic", "kernel_trace", "kernel_cost", "parallel_tiles",
           "scaled_caches", "step_programs", "line_box_sum", "box_lines"]

#: Cycles from an FMA's issue to its result being usable by the next FMA: 4 on Skylake-SP
#: (Intel optimization manual, "Skylake Server microarchitecture") and on Neoverse V2 (Arm
#: Neoverse V2 software optimization guide, FMLA latency). Profiles do not carry it yet.
FMA_LATENCY_CYCLES = 4
#: Tensors of a kernel sit one after another at page-aligned addresses (both modes).
PAGE_BYTES = 4096
#: The exact mode refuses traces longer than this (memory: ~20 bytes per access).
MAX_EXACT_ACCESSES = 30_000_000
#: One iteration's lines are placed in sets only up to this many lines (beyond: by capacity).
HISTOGRAM_LINES = 1 << 15
_NONE = np.zeros(0, dtype=np.int64)
#: Iterations of a loop whose lines are placed in the sets (their conflicts vary with the
#: iteration: a column of tiles lands on other sets than its neighbour).
SAMPLES = 2
#: Joint enumeration of tile positions for non-separable maps, beyond which lines are scaled
#: from elements.
_JOINT_POSITIONS = 1 << 21


# ----------------------------------------------------------------------------- streams
@attrs.frozen
class Stream:
    """One stream of memory accesses of a kernel's compute: an operand read through its affine
    map, the accumulator (read and written at every point of the anchor), or the result
    written.

    MAIN streams are touched inside every innermost tile, EPILOGUE streams once per epilogue
    tile after the reduction completes; either over the kernel dims in ``touched``.
    ``tensor`` names the storage (streams of one value share it); ``base`` is its byte
    address (:func:`tensor_layout`).
    """

    name: str
    tensor: str
    amap: AffineMap
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    itemsize: float
    stage: str
    reads: bool
    writes: bool
    base: int = 0
    touched: frozenset = frozenset()   # kernel dims the body steps that touch it iterate
    strides: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)
    dims: frozenset = attrs.field(init=False, eq=False, repr=False)  # the map's relevant dims

    def __attrs_post_init__(self) -> None:
        out, acc = [], 1
        for s in reversed(self.shape):
            out.append(acc)
            acc *= int(s)
        object.__setattr__(self, "strides", tuple(reversed(out)))
        object.__setattr__(self, "dims", frozenset(relevant_dims(self.amap)))

    @property
    def nbytes(self) -> int:
        return math.ceil(math.prod(self.shape) * self.itemsize)


def tensor_layout(streams: Sequence[Stream], align: int = PAGE_BYTES) -> list[Stream]:
    """The streams with byte addresses: each tensor once, in order of first use, at the next
    multiple of ``align`` after the one before (as an allocator packs them)."""
    bases: dict[str, int] = {}
    at = 0
    out = []
    for s in streams:
        if s.tensor not in bases:
            bases[s.tensor] = at
            at += -(-max(1, s.nbytes) // align) * align
        out.append(attrs.evolve(s, base=bases[s.tensor]))
    return out


def step_dims(step) -> frozenset:
    """The kernel dims a body step iterates (those its own loops are expressions of)."""
    return frozenset(d for e in step.loops for d, c in enumerate(e.coeffs) if c)


def kernel_streams(op: Op, kd: KernelDomain, align: int = PAGE_BYTES
                   ) -> tuple[list[Stream], int]:
    """The kernel's streams, laid out (:func:`tensor_layout`), and the bytes of operands read
    whole without an affine map (shape operands), which bypass the cache model.

    An operand's stream is touched over the dims of the body steps that read it (a fused
    FFN's first weight is not read again for every column of the second matmul). The
    accumulator lives in the result's storage when it is indexed like the result (a matmul
    or conv, with or without an epilogue applied in place); otherwise (a fused FFN's hidden
    tile, attention's scores) in a scratch tensor of the anchor's shape, and the epilogue
    writes the result.
    """
    streams: list[Stream] = []
    opaque = 0
    every = frozenset(range(len(kd.dims)))
    for ai, a in enumerate(kd.accesses):
        v = op.operands[a.operand]
        if v is None:
            continue
        if a.map is None:
            opaque += v.type.nbytes
            continue
        touched = frozenset().union(*[step_dims(st) for st in kd.steps
                                      if ("input", ai) in st.sources]) or every
        streams.append(Stream(f"a{ai}", v.name, a.map, v.type.shape, float(v.dtype.itemsize),
                              a.stage, True, False, touched=touched))
    result = op.results[0]
    r_size = float(result.dtype.itemsize)
    root = step_dims(kd.steps[-1]) if kd.steps else every
    if kd.anchor is not None:
        anchor = kd.steps[kd.anchor].op.results[0]
        a_size = float(_acc_dtype(anchor.dtype).itemsize)
        a_dims = step_dims(kd.steps[kd.anchor])
        if _aliased(kd, anchor, result, a_size, r_size):
            streams.append(Stream("acc", result.name, kd.result_map, result.type.shape, r_size,
                                  MAIN, True, True, touched=a_dims))
        else:
            streams.append(Stream("acc", f"{result.name}.acc", kd.accumulator_map,
                                  anchor.type.shape, a_size, MAIN, True, True, touched=a_dims))
            streams.append(Stream("out", result.name, kd.result_map, result.type.shape, r_size,
                                  EPILOGUE, False, True, touched=root))
    else:
        streams.append(Stream("out", result.name, kd.result_map, result.type.shape, r_size,
                              MAIN, False, True, touched=root))
    return tensor_layout(streams, align), opaque


def _aliased(kd: KernelDomain, anchor, result, a_size: float, r_size: float) -> bool:
    return (kd.accumulator_map == kd.result_map
            and tuple(anchor.type.shape) == tuple(result.type.shape) and a_size == r_size)


def step_programs(kd: KernelDomain, streams: Sequence[Stream]):
    """What each body step touches, in body order: ``(stage, dims, [(stream, write)])``.

    A step reads the operands it takes from the kernel's inputs. The anchor reads and writes
    the accumulator; epilogue steps read it (the anchor's result, and what the epilogue
    computes from it in place over the accumulator's tile); the root writes the result.
    Other intermediate values stay in registers.
    """
    by = {s.name: s for s in streams}
    acc = by.get("acc")
    acc_dims = relevant_dims(kd.accumulator_map) if kd.accumulator_map is not None else set()
    in_acc: set[int] = set()                 # steps whose result lives in the accumulator
    out = []
    last = len(kd.steps) - 1
    for i, st in enumerate(kd.steps):
        dims = step_dims(st)
        touch: list[tuple[Stream, bool]] = []
        for src in st.sources:
            if src is None:
                continue
            kind, j = src
            if kind == "input" and f"a{j}" in by:
                touch.append((by[f"a{j}"], False))
            elif kind == "value" and acc is not None and j in in_acc and st.stage == EPILOGUE:
                touch.append((acc, False))
        if i == kd.anchor:
            touch += [(acc, False), (acc, True)]
            in_acc.add(i)
        elif st.stage == EPILOGUE and dims <= acc_dims and i != last:
            in_acc.add(i)
        if i == last and i != kd.anchor:
            touch.append((by.get("out", acc), True))
        out.append((st.stage, dims, touch))
    return out


# ----------------------------------------------------------------------------- the nest
@attrs.frozen(eq=False)
class Nest:
    """The loop nest as positions: the schedule's moving tile loops, then the element loops of
    the innermost tile (its loop order), each ``(level, dim, step)`` outermost first."""

    extents: tuple[int, ...]
    loops: tuple[tuple[int, int, int], ...]
    parent: tuple[int, ...]          # the step of the enclosing loop of the same dim (or extent)
    tiles: list                      # tiles[d][level] = (starts, sizes) over the extended tilings
    deep: list                       # deep[p + 1][d] = level of the deepest loop over d at <= p
    epilogue_at: int | None          # the epilogue runs at the end of each iteration of this loop
    tile_loops: int                  # how many of the loops are tile loops (the rest: elements)

    def step(self, d: int, p: int) -> int:
        """Extent of dim d in one iteration of loop p."""
        lv = self.deep[p + 1][d]
        return self.extents[d] if lv is None else int(self.tiles[d][lv][1].max())


def build_nest(kd: KernelDomain, ks: KernelSchedule) -> Nest:
    extents = tuple(int(e) for e in kd.extents)
    n = len(extents)
    inner = ks.tilings[-1]
    element = LevelTiling("element", (1,) * n, inner.order)
    tilings = tuple(ks.tilings) + (element,)
    loops = tuple(flattened_loops(tilings, extents))
    tiles = dim_tiles(tilings, extents)
    parent, last = [], list(extents)
    for _, d, step in loops:
        parent.append(last[d])
        last[d] = step
    deep = [[None] * n]
    for lv, d, _ in loops:
        row = list(deep[-1])
        row[d] = lv
        deep.append(row)
    tile_loops = flattened_loops(ks.tilings, extents)
    epilogue_at = None
    if kd.anchor is not None and any(s.stage == EPILOGUE for s in kd.steps):
        epilogue_at = placement(tile_loops, ks.epilogue_level, relevant_dims(kd.accumulator_map))
    return Nest(extents, loops, tuple(parent), tiles, deep, epilogue_at, len(tile_loops))


# ----------------------------------------------------------------------------- lines of boxes
def _axis_box(expr, dims: Sequence[int], starts: Sequence[np.ndarray],
              sizes: Sequence[np.ndarray], bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Low index and size, clipped to [0, bound), of the range one tensor axis's expression
    reaches from tiles (arrays broadcast over positions)."""
    lo = np.asarray(expr.const, dtype=np.int64)
    hi = lo
    for d, s, z in zip(dims, starts, sizes):
        c = expr.coeffs[d]
        if c > 0:
            lo, hi = lo + c * s, hi + c * (s + z - 1)
        elif c < 0:
            lo, hi = lo + c * (s + z - 1), hi + c * s
    lo_c = np.maximum(lo, 0)
    size = np.maximum(0, np.minimum(hi, bound - 1) - lo_c + 1)
    return lo_c, size


def _box_1d(expr, starts: Sequence[int], sizes: Sequence[int], bound: int) -> tuple[int, int]:
    """(low, size) of one axis's range over one tile, clipped to [0, bound) (plain ints)."""
    lo = hi = expr.const
    for c, s, z in zip(expr.coeffs, starts, sizes):
        if c > 0:
            lo += c * s
            hi += c * (s + z - 1)
        elif c < 0:
            lo += c * (s + z - 1)
            hi += c * s
    lo = max(lo, 0)
    return lo, max(0, min(hi, bound - 1) - lo + 1)


def _run_split(stream: Stream, full: Sequence[bool], line: int) -> int:
    """First axis of a box's runs: axes from it inward form one contiguous run (trailing axes
    the box covers whole) or one bounding range (axes whose stride is below a line)."""
    ndim = len(stream.shape)
    j = max((t for t in range(ndim) if not full[t]), default=-1)
    k0 = next((t for t in range(ndim) if stream.strides[t] * stream.itemsize < line), ndim)
    return min(max(j, 0), k0)


def _lines_per_run(stream: Stream, s: int, los: Sequence[np.ndarray],
                   sizes: Sequence[np.ndarray], line: int) -> np.ndarray:
    """Lines of one run (axes s.. of the box), broadcast over positions; 0 for empty boxes."""
    S, isz = stream.strides, stream.itemsize
    ndim = len(stream.shape)
    length = np.asarray(1, dtype=np.int64)
    start = np.asarray(0, dtype=np.int64)
    empty = np.asarray(False)
    for t in range(s, ndim):
        length = length + (sizes[t] - 1) * S[t]
        start = start + los[t] * S[t]
        empty = empty | (sizes[t] <= 0)
    nbytes = length * isz
    pitch = S[s - 1] * isz if s > 0 else 0
    if s == 0 or pitch % line == 0:      # every run starts at the same offset in its line
        first = stream.base + start * isz
        lines = np.floor((first % line + nbytes - isz) / line) + 1
    else:                                # run starts spread over the line: the mean
        lines = 1 + (nbytes - isz) / line
    return np.where(empty, 0.0, lines)


def line_box_sum(stream: Stream, tiles: Mapping[int, tuple[np.ndarray, np.ndarray]],
                 line: int, packed: bool = False) -> float:
    """Lines of the boxes ``stream`` reaches, summed over every combination of the given tiles
    of its relevant dims (``tiles[d]``: starts and sizes): :func:`tensorir.traffic.box_sum`
    in lines (see the module docstring for the rounding; ``packed``: each box a contiguous,
    line-aligned buffer)."""
    exprs = stream.amap.exprs
    ndim = len(exprs)
    if ndim == 0:
        return 1.0
    if packed:
        return _packed_line_sum(stream, tiles, line)
    groups = [[d for d, c in enumerate(e.coeffs) if c] for e in exprs]
    flat = [d for g in groups for d in g]
    separable = len(flat) == len(set(flat))
    per_axis = []
    for e, g, bound in zip(exprs, groups, stream.shape):
        st, sz = tile_grid(tiles, g)
        per_axis.append(_axis_box(e, g, st, sz, int(bound)))
    full = [bool(np.all(sz == b)) for (_, sz), b in zip(per_axis, stream.shape)]
    s = _run_split(stream, full, line)
    if separable:
        outer = 1.0
        for t in range(s):
            outer *= float(per_axis[t][1].sum())
        # the run's axes jointly: each axis's positions on grid axes of their own
        inner = [t for t in range(s, ndim)]
        rank = sum(np.ndim(per_axis[t][1]) for t in inner)
        los, sizes = [None] * ndim, [None] * ndim
        at = 0
        for t in inner:
            lo, sz = per_axis[t]
            lo = np.broadcast_to(lo, np.shape(sz))
            shp = [1] * at + list(np.shape(sz)) + [1] * (rank - at - np.ndim(sz))
            los[t], sizes[t] = lo.reshape(shp), sz.reshape(shp)
            at += np.ndim(sz)
        lines = _lines_per_run(stream, s, los, sizes, line)
        return outer * float(np.sum(lines))
    # a dim feeds several axes: enumerate the positions of every relevant dim jointly
    rel = sorted(set(flat))
    npos = math.prod(len(tiles[d][0]) for d in rel)
    if npos > _JOINT_POSITIONS:
        elements = box_sum(stream.amap, tiles, stream.shape)
        rep = {d: (tiles[d][0][:1], tiles[d][1][:1]) for d in rel}
        one_lines = line_box_sum(stream, rep, line)
        one_elems = box_sum(stream.amap, rep, stream.shape)
        return elements * (one_lines / one_elems if one_elems else 1.0)
    st, sz = tile_grid(tiles, rel)
    boxes = [_axis_box(e, rel, st, sz, int(b)) for e, b in zip(exprs, stream.shape)]
    runs = np.asarray(1.0)
    for t in range(s):
        runs = runs * boxes[t][1]
    lines = _lines_per_run(stream, s, [b[0] for b in boxes], [b[1] for b in boxes], line)
    return float(np.sum(np.broadcast_to(runs * lines, np.broadcast(runs, lines).shape)))


def _distinct_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_counts=True)`` for non-negative ints: box sizes take a few
    small values, which a bincount finds without np.unique's sort and Python overhead."""
    values = np.ravel(values)
    if values.size == 0 or values.max() > _BINCOUNT_MAX:
        return np.unique(values, return_counts=True)
    counts = np.bincount(values)
    sizes = np.flatnonzero(counts)
    return sizes, counts[sizes]


_BINCOUNT_MAX = 1 << 16


def _packed_line_sum(stream: Stream, tiles: Mapping[int, tuple[np.ndarray, np.ndarray]],
                     line: int) -> float:
    """Sum over the boxes of ``ceil(elements x itemsize / line)``: every box packed into a
    line-aligned buffer. Box sizes take few distinct values per axis (full tiles and edges),
    so separable maps sum over the distinct sizes' combinations with their counts."""
    exprs = stream.amap.exprs
    groups = [[d for d, c in enumerate(e.coeffs) if c] for e in exprs]
    flat = [d for g in groups for d in g]
    if len(flat) == len(set(flat)):
        elements, count = np.ones(1), np.ones(1)
        for e, g, bound in zip(exprs, groups, stream.shape):
            st, sz = tile_grid(tiles, g)
            sizes, n = _distinct_counts(_axis_box(e, g, st, sz, int(bound))[1])
            elements = (elements[:, None] * sizes[None, :]).ravel()
            count = (count[:, None] * n[None, :]).ravel()
        return float(np.sum(count * np.ceil(elements * stream.itemsize / line)))
    rel = sorted(set(flat))
    if math.prod(len(tiles[d][0]) for d in rel) > _JOINT_POSITIONS:
        rep = {d: (tiles[d][0][:1], tiles[d][1][:1]) for d in rel}
        one = box_sum(stream.amap, rep, stream.shape)
        scale = _packed_line_sum(stream, rep, line) / one if one else 1.0
        return box_sum(stream.amap, tiles, stream.shape) * scale
    st, sz = tile_grid(tiles, rel)
    elements = np.asarray(1.0)
    for e, b in zip(exprs, stream.shape):
        elements = elements * _axis_box(e, rel, st, sz, int(b))[1]
    return float(np.sum(np.ceil(elements * stream.itemsize / line)))


def box_lines(stream: Stream, box: Sequence[tuple[int, int]], line: int) -> np.ndarray:
    """Line numbers (address // line) of one box given as (low, size) per tensor axis."""
    ndim = len(box)
    if ndim == 0:
        return np.array([stream.base // line], dtype=np.int64)
    if any(size <= 0 for _, size in box):
        return np.zeros(0, dtype=np.int64)
    full = [lo == 0 and size == b for (lo, size), b in zip(box, stream.shape)]
    s = _run_split(stream, full, line)
    S, isz = stream.strides, stream.itemsize
    start = np.zeros(1, dtype=np.int64)
    for t in range(s):
        lo, size = box[t]
        start = (start[:, None] + (lo + np.arange(size, dtype=np.int64))[None, :] * S[t]).ravel()
    length = 1 + sum((box[t][1] - 1) * S[t] for t in range(s, ndim))
    start = start + sum(box[t][0] * S[t] for t in range(s, ndim))
    first_b = stream.base + np.floor(start * isz).astype(np.int64)
    first = first_b // line
    last = (first_b + math.ceil(length * isz) - 1) // line
    span = int((last - first).max()) + 1
    ids = first[:, None] + np.arange(span, dtype=np.int64)[None, :]
    return ids[ids <= last[:, None]]


# ----------------------------------------------------------------------------- the model
@attrs.frozen
class LevelMisses:
    """What the analytical model says about one cache level: lines in and out per stream."""

    level: str
    line_bytes: int
    capacity_lines: float        # effective: capacity x (A - 1) / A, divided among cores
    misses: Mapping[str, float]  # stream -> lines brought in
    lost: Mapping[str, tuple[float, ...]]   # stream -> L(p) for p = -1 .. P-1
    down_bytes: int
    up_bytes: int
    key: tuple = ()


@attrs.frozen
class CacheModel:
    """The analytical traffic of one kernel: per cache level its misses, and bytes per link."""

    links: Mapping[Link, LinkBytes]
    levels: tuple[LevelMisses, ...]


class _Analysis:
    """Per-kernel quantities shared by every cache level: streams, boxes per position.

    A stream is iterated by the tile loops (only those up to the epilogue's for an epilogue
    stream) and by the element loops over the dims its body steps iterate: its *positions*.
    Loops outside them are transparent to it.
    """

    def __init__(self, op: Op, ks: KernelSchedule, kd: KernelDomain) -> None:
        self.nest = nest = build_nest(kd, ks)
        self.streams, self.opaque = kernel_streams(op, kd)
        self.parallel = parallel_tiles(kd, ks)
        P = len(nest.loops)
        epi = nest.epilogue_at if nest.epilogue_at is not None else -1
        self.allowed: list[tuple[int, ...]] = []
        self.deep: list[list[list]] = []      # deep[si][p + 1][d]: level of the deepest loop
        for s in self.streams:
            ok = tuple(p for p, (lv, d, _) in enumerate(nest.loops)
                       if (p < nest.tile_loops and (s.stage != EPILOGUE or p <= epi))
                       or (p >= nest.tile_loops and d in s.touched))
            self.allowed.append(ok)
            rows = [[None] * len(nest.extents)]
            for p in range(P):
                row = list(rows[-1])
                if p in ok:
                    row[nest.loops[p][1]] = nest.loops[p][0]
                rows.append(row)
            self.deep.append(rows)
        self._reps: dict[tuple, tuple[int, int]] = {}
        self._t: dict[tuple, float] = {}
        self._placed: dict[tuple, tuple] = {}
        self._levels: dict[tuple, "LevelMisses"] = {}
        self._models: dict[tuple, "CacheModel"] = {}
        self._lines: dict[tuple, np.ndarray] = {}
        self._feet: dict[tuple, tuple] = {}
        self._box_line_counts: dict[tuple, float] = {}
        self._box_line_sums: dict[tuple, float] = {}
        self._dims_sorted = [tuple(sorted(s.dims)) for s in self.streams]
        self._reuse: dict[tuple, int] = {}

    def active(self, stream: Stream, p: int) -> bool:
        """Whether an iteration of loop p touches the stream at all."""
        e = self.nest.epilogue_at
        return stream.stage != EPILOGUE or (e is not None and p <= e)

    def tile_of(self, si: int, d: int, p: int) -> tuple[np.ndarray, np.ndarray]:
        lv = self.deep[si][p + 1][d]
        if lv is None:
            return (np.zeros(1, dtype=np.int64), np.full(1, self.nest.extents[d], dtype=np.int64))
        return self.nest.tiles[d][lv]

    def representative(self, si: int, d: int, p: int, frac: float = 0.5) -> tuple[int, int]:
        """Start and size of a full tile of dim d in one iteration of loop p: the one at
        ``frac`` of them (the middle, an interior one, by default)."""
        key = (self.deep[si][p + 1][d], d, frac)
        if key not in self._reps:
            starts, sizes = self.tile_of(si, d, p)
            full = np.flatnonzero(sizes == sizes.max())
            i = full[min(len(full) - 1, int(frac * len(full)))]
            self._reps[key] = (int(starts[i]), int(sizes[i]))
        return self._reps[key]

    def _stream_box(self, si: int, p: int, k: int | None = None, sample: int = -1
                    ) -> tuple[tuple[int, int], ...]:
        """Stream si's box (low, size per axis) in one iteration of loop p: for each of its
        dims a full tile (the middle one, or the sample's), and for loop p's own dim its
        k-th tile inside such a tile of the loop outside (when k is given). The other dims
        have coefficient 0 in the stream's map."""
        nest = self.nest
        fracs = _sample_fractions(sample, len(nest.extents))
        stream = self.streams[si]
        starts, sizes = [0] * len(nest.extents), [0] * len(nest.extents)
        for d in stream.dims:
            a, z = self.representative(si, d, p, fracs[d])
            if k is not None and p in self.allowed[si] and nest.loops[p][1] == d:
                step = nest.loops[p][2]
                outer = max((i for i in self.allowed[si]
                             if i < p and nest.loops[i][1] == d), default=-1)
                ps, pz = self.representative(si, d, outer, fracs[d])
                a = ps + k * step
                z = min(step, ps + pz - a)
            starts[d], sizes[d] = a, z
        return tuple(_box_1d(e, starts, sizes, int(b))
                     for e, b in zip(stream.amap.exprs, stream.shape))

    def samples(self, p: int) -> list[tuple[int, int, int | None]]:
        """Iterations of loop p to place in the sets, each with the one after it: SAMPLES of
        them, the tile of every dim (loop p's inside one tile of the loop outside it) drawn
        independently (seeded, so the model is deterministic): how the tensors' sets line
        up varies with every dim's position."""
        if p < 0:
            return [(-1, 0, None)]
        trips = -(-self.nest.parent[p] // self.nest.loops[p][2])
        out = []
        for s in range(SAMPLES):
            k = min(trips - 1, int(_sample_fractions(s, len(self.nest.extents) + 1)[-1] * trips))
            out.append((s, k, k + 1 if k + 1 < trips else (k - 1 if k else None)))
        return out

    def footprint(self, p: int, line: int, packed: bool = False) -> tuple[float, list[float]]:
        """D_p: lines of one iteration of loop p, in total and per stream."""
        key = (p, line, packed)
        if key not in self._feet:
            per = [self._box_lines(si, p, line, packed) if self.active(s, p) else 0.0
                   for si, s in enumerate(self.streams)]
            self._feet[key] = (float(sum(per)), per)
        return self._feet[key]

    def _box_lines(self, si: int, p: int, line: int, packed: bool) -> float:
        """Lines of stream si's box in one iteration of loop p (:meth:`_stream_box`).
        The box is set by the tile levels of the stream's own dims alone, so the positions
        that share those (loops over other dims) share it: it is computed once for them."""
        key = (si, self._relevant_levels(si, p), line, packed)
        if key not in self._box_line_counts:
            self._box_line_counts[key] = _box_line_count(self.streams[si],
                                                         self._stream_box(si, p), line, packed)
        return self._box_line_counts[key]

    def lines(self, q: int, k: int, si: int, line: int, minus: int | None = None,
              sample: int = -1) -> np.ndarray:
        """Line numbers of stream si in iteration k of loop q (as in :meth:`_stream_box`),
        without those of iteration ``minus``."""
        key = (q, k, si, line, minus, sample)
        if key not in self._lines:
            ids = box_lines(self.streams[si], self._stream_box(si, q, k, sample), line)
            if minus is not None:
                ids = np.setdiff1d(ids, self.lines(q, minus, si, line, sample=sample))
            self._lines[key] = ids
        return self._lines[key]

    def moves(self, si: int, q: int) -> bool:
        """Whether loop q moves the stream's box."""
        return q >= 0 and q in self.allowed[si] and self.nest.loops[q][1] in self.streams[si].dims

    def placement(self, q: int, line: int, sets: int, capacity_lines: float,
                  packed: bool = False):
        """The lines of sampled iterations of loop q in a cache's sets: which streams move
        with loop q, how much of the next iteration is in a reuse window (module
        docstring), and per sample and stream (lines here, lines of the next iteration) per
        set; without placement (one set, or too many lines) the lines spread evenly."""
        key = (q, line, sets, capacity_lines, packed)
        if key in self._placed:
            return self._placed[key]
        n_s = len(self.streams)
        moving = [self.moves(si, q) for si in range(n_s)]
        # a moving stream touched in every phase of the next loop in (one that does not move
        # it) is in the reuse window twice: the rest of this iteration's and the start of the
        # next one's; otherwise once, part from each
        weight = [(0.5 if self.moves(si, q + 1) else 1.0) if mv else 0.0
                  for si, mv in enumerate(moving)]
        active = [self.active(s, q) for s in self.streams]
        total, per = self.footprint(q, line, packed)
        if sets > 1 and total <= min(HISTOGRAM_LINES, 2 * capacity_lines):
            runs = []
            for sample, k, k2 in self.samples(q):
                ids = []
                for si, (w, act) in enumerate(zip(weight, active)):
                    here = self.lines(q, k, si, line, sample=sample) if act else _NONE
                    there = (self.lines(q, k2, si, line, minus=k if w == 1.0 else None,
                                        sample=sample)
                             if act and w and k2 is not None else _NONE)
                    ids.append((here % sets, there % sets))
                if sets > total:   # only the sets some line falls in, numbered densely
                    used = np.unique(np.concatenate([x for pair in ids for x in pair]))
                    ids = [(np.searchsorted(used, a), np.searchsorted(used, b)) for a, b in ids]
                    n = len(used)
                else:
                    n = sets
                runs.append((np.array([np.bincount(a, minlength=n) for a, _ in ids], float),
                             np.array([np.bincount(b, minlength=n) for _, b in ids], float)))
        else:
            runs = [(np.array([[x / sets] for x in per]),
                     np.array([[x / sets if mv else 0.0] for x, mv in zip(per, moving)]))]
        self._placed[key] = (np.array(moving), np.array(weight), runs)
        return self._placed[key]

    def reloads(self, si: int, p: int, line: int, packed: bool = False) -> float:
        """T(X, p) in lines (see the module docstring)."""
        key = (si, p, line, packed)
        if key not in self._t:
            stream = self.streams[si]
            rel = stream.dims
            count = 1
            for d in range(len(self.nest.extents)):
                if d not in rel and self.deep[si][p + 1][d] is not None:
                    count *= len(self.tile_of(si, d, p)[0])
            # the boxes' lines depend on the tile levels of the stream's own dims alone:
            # positions that share those (loops over other dims) share the sum
            levels = self._relevant_levels(si, p)
            lines = self._box_line_sums.get((si, levels, line, packed))
            if lines is None:
                tiles = {d: self.tile_of(si, d, p) for d in rel}
                lines = self._box_line_sums[si, levels, line, packed] = \
                    line_box_sum(stream, tiles, line, packed)
            self._t[key] = count * lines
        return self._t[key]

    def _relevant_levels(self, si: int, p: int) -> tuple:
        """The tile level of each of stream si's own dims in one iteration of loop p."""
        row = self.deep[si][p + 1]
        return tuple(row[d] for d in self._dims_sorted[si])

    def reuse_position(self, si: int, p: int) -> int:
        """q: the loop whose one iteration is the reuse distance of the stream across its
        loop p (module docstring)."""
        key = (si, p)
        if key not in self._reuse:
            self._reuse[key] = self._reuse_position(si, p)
        return self._reuse[key]

    def _reuse_position(self, si: int, p: int) -> int:
        loops = self.nest.loops
        ok = self.allowed[si]
        rel = self.streams[si].dims
        if loops[p][1] in rel:
            return p
        r = next((i for i in ok if i > p and loops[i][1] in rel), None)
        return ok[-1] if r is None else r - 1


@functools.lru_cache(maxsize=None)
def _sample_fractions(sample: int, n: int) -> tuple[float, ...]:
    """Where in its tiles each of n dims sits in a sample (``-1``: the middle): fixed
    pseudo-random fractions, independent across dims (seeded: the model is deterministic)."""
    if sample < 0:
        return (0.5,) * n
    return tuple(float(x) for x in np.random.default_rng(1000 + sample).random(n))


def _box_line_count(stream: Stream, box, line: int, packed: bool = False) -> float:
    """Lines of one box given as (low, size) per tensor axis (the rounding of
    :func:`line_box_sum`, in plain arithmetic)."""
    if any(size <= 0 for _, size in box):
        return 0.0
    ndim = len(box)
    if ndim == 0:
        return 1.0
    if packed:
        return float(math.ceil(math.prod(size for _, size in box) * stream.itemsize / line))
    full = [lo == 0 and size == b for (lo, size), b in zip(box, stream.shape)]
    s = _run_split(stream, full, line)
    S, isz = stream.strides, stream.itemsize
    runs = 1
    for t in range(s):
        runs *= box[t][1]
    length = 1 + sum((box[t][1] - 1) * S[t] for t in range(s, ndim))
    nbytes = length * isz
    if s == 0 or (S[s - 1] * isz) % line == 0:
        first = stream.base + sum(box[t][0] * S[t] for t in range(s, ndim)) * isz
        per_run = math.floor((first % line + nbytes - isz) / line) + 1
    else:
        per_run = 1 + (nbytes - isz) / line
    return float(runs * per_run)


def _lost_in_sets(H: np.ndarray, T: np.ndarray, moving: np.ndarray, weight: np.ndarray,
                  keep: np.ndarray, ways: float) -> np.ndarray:
    """Per stream, the fraction of its lines whose reuse LRU loses, set by set.

    ``H[i]`` and ``T[i]``: stream i's lines per set in this iteration and (not already here)
    in the next one. A line at relative time t of the iteration survives iff fewer than
    ``ways`` other lines of its set come between its uses: the other stationary lines (those
    the level sees: ``keep``), the moving lines touched throughout the iteration (this
    iteration's and the next one's), and of the moving lines touched in phases, ``1 - t`` of
    this iteration's and ``t`` of the next one's.
    """
    stay = ((~moving) * keep) @ H
    both = (weight == 1.0) @ (H + T)
    phased = (weight > 0) & (weight < 1.0)
    here, there = phased @ H, phased @ T
    a = stay + both + here - 1 - ways        # lost where a + b t >= 0
    b = there - here
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = np.where(b != 0, -a / np.where(b != 0, b, 1), 0.0)
    lost = np.where(b > 0, np.clip(1 - t0, 0, 1),
                    np.where(b < 0, np.clip(t0, 0, 1), (a >= 0).astype(float)))
    total = H.sum(axis=1)
    return np.divide(H @ lost, total, out=np.zeros_like(total), where=total > 0)


def _lost_evenly(an: _Analysis, q: int, line: int, contiguous: bool,
                 inner: "LevelMisses | None", ways: float) -> list[float]:
    """:func:`_lost_in_sets` for lines spread evenly over the sets (packed tiles, or cores
    sharing the cache): one set of ``ways`` lines, in plain arithmetic (the same sums as
    :meth:`_Analysis.placement`'s even spread fed to :func:`_lost_in_sets`)."""
    per = an.footprint(q, line, contiguous)[1]
    stay = both = here = there = 0.0
    for si, (s, lines) in enumerate(zip(an.streams, per)):
        if not an.moves(si, q):
            stay += lines * (1.0 if inner is None else inner.lost[s.name][q + 1])
        elif an.moves(si, q + 1):     # touched in phases: half here, half from the next one
            here += lines
            there += lines
        else:                         # touched throughout: this iteration's and the next's
            both += lines + lines
    a = stay + both + here - 1 - ways        # lost where a + b t >= 0
    b = there - here
    if b > 0:
        lost = min(max(1 - (-a / b), 0.0), 1.0)
    elif b < 0:
        lost = min(max(-a / b, 0.0), 1.0)
    else:
        lost = float(a >= 0)
    return [lost if lines > 0 else 0.0 for lines in per]


def _cache_levels(profile: HardwareProfile) -> list[Level]:
    """The profile's on-chip levels, outermost first; each must be a cache."""
    out = []
    for lv in reversed(profile.on_chip):
        if not lv.is_cache:
            raise TensorIRError(f"{profile.name}: the cpu backend models caches; level "
                                f"{lv.name!r} is a scratchpad")
        out.append(lv)
    return out


def _ways(lv: Level) -> int:
    return lv.associativity if lv.associativity else lv.capacity_bytes // lv.line_bytes


def _sets(lv: Level) -> int:
    return lv.sets or 1       # fully associative: one set of every line


def _level_misses(an: _Analysis, lv: Level, share: int, split_at: tuple, split: bool,
                  inner: "LevelMisses | None" = None, packed: bool = True,
                  contiguous: bool = False) -> LevelMisses:
    """Misses of one cache level (``share``: cores dividing it; ``split``: each core has its
    own copy of the level, so reuse across the loops at ``split_at``, which the cores
    divide, is lost; ``packed``: the tiles are packed, so their lines spread evenly over the
    sets; ``contiguous``: the level holds the packed buffers, a box's lines are those of its
    bytes in one run); memoised per kernel analysis."""
    key = (lv.name, lv.capacity_bytes, lv.line_bytes, lv.associativity, share,
           split_at if split else (), inner.key if inner is not None else (), packed,
           contiguous)
    if key not in an._levels:
        an._levels[key] = attrs.evolve(
            _level_misses_of(an, lv, share, split_at, split, inner, packed, contiguous),
            key=key)
    return an._levels[key]


def _level_misses_of(an: _Analysis, lv: Level, share: int, split_at: tuple, split: bool,
                     inner: "LevelMisses | None", packed: bool, contiguous: bool
                     ) -> LevelMisses:
    line = lv.line_bytes
    ways = _ways(lv)
    sets = _sets(lv)
    cap_eff = sets * ways / share
    # lines spread evenly over the sets when the tiles are packed (contiguous buffers map to
    # consecutive sets) and when cores share the cache (they fill its sets with their lines
    # evenly): then only capacity counts (one set of cap_eff ways)
    view_sets = sets if share == 1 and not packed else 1
    ways_eff = ways if view_sets > 1 else cap_eff
    nest = an.nest
    P = len(nest.loops)
    cache: dict[int, list[float]] = {}

    def lost_fractions(q: int) -> list[float]:
        """For every stream, the fraction of its lines whose reuse across consecutive
        iterations of loop q does not survive (see the module docstring)."""
        if q in cache:
            return cache[q]
        if 2 * an.footprint(q, line, contiguous)[0] < ways_eff:    # no set can overflow
            cache[q] = [0.0] * len(an.streams)
            return cache[q]
        if view_sets == 1:
            cache[q] = out = _lost_evenly(an, q, line, contiguous, inner, ways_eff)
            return out
        moving, weight, runs = an.placement(q, line, view_sets, sets * ways, contiguous)
        if inner is not None:
            # this level sees only what the level inside it requests: a stationary stream
            # that the inner level keeps across loop q is not in this level's window
            keep = np.array([1.0 if mv else inner.lost[s.name][q + 1]
                             for s, mv in zip(an.streams, moving)])
        else:
            keep = np.ones(len(an.streams))
        out = np.mean([_lost_in_sets(H, T, moving, weight, keep, ways_eff) for H, T in runs],
                      axis=0)
        out = [float(x) for x in out]
        cache[q] = out
        return out

    misses, lost_out = {}, {}
    for si, s in enumerate(an.streams):
        ok = an.allowed[si]
        raw = [lost_fractions(an.reuse_position(si, p))[si] for p in ok]
        if split:   # reuse across the loops split between cores stays per core
            raw = [1.0 if p in split_at else x for p, x in zip(ok, raw)]
        L = [1.0] + raw + [0.0]          # L(-1), L at each of its positions, L after them
        for i in range(len(L) - 2, -1, -1):
            L[i] = max(L[i], L[i + 1])
        at = (-1,) + ok
        m = 0.0
        for i in range(len(L) - 1):
            w = L[i] - L[i + 1]
            if w > 1e-12:
                m += w * an.reloads(si, at[i], line, contiguous)
        misses[s.name] = m
        # L over every loop of the nest: a loop that is not the stream's keeps the value of
        # the stream's loop outside it
        full, j = [], 0
        for p in range(-1, P):
            while j + 1 < len(at) and at[j + 1] <= p:
                j += 1
            full.append(L[j])
        lost_out[s.name] = tuple(full)
    return LevelMisses(lv.name, line, cap_eff, misses, lost_out, 0, 0)


def _writeback_refetches(an: _Analysis, inner: LevelMisses, capacity_lines: float,
                         contiguous: bool) -> float:
    """Lines a level fetches again when the level inside it writes back a dirty line it no
    longer holds (the exact mode's caches allocate on every write miss, write-backs too).

    A written line is requested from this level when the inner level fetches it, and comes
    back when the inner level evicts it: after its last use there, and after about the inner
    level's capacity of newer lines (or at the end). Meanwhile this level sees only the inner
    level's misses: those of the line's active span (one iteration of the loop it is reused
    across, or of the run of loops just inside that move it) plus that capacity, and no more
    than the kernel's. The fraction of write-backs that miss grows from 0 where that reaches
    this level's capacity to 1 one inner capacity later.
    """
    nest = an.nest
    total = sum(inner.misses.values())
    extra = 0.0
    for si, s in enumerate(an.streams):
        if not s.writes:
            continue
        at = (-1,) + an.allowed[si]
        L = [inner.lost[s.name][p + 1] for p in at] + [0.0]
        for i in range(len(L) - 1):
            w = L[i] - L[i + 1]
            if w <= 1e-12:
                continue
            p = at[i]
            span = p
            while span + 1 < len(nest.loops) and an.moves(si, span + 1):
                span += 1
            active = total / _iterations(nest.tiles, nest.loops[:span + 1])
            seen = min(active + inner.capacity_lines, total)   # no more than all there is
            frac = (seen - capacity_lines) / inner.capacity_lines
            if frac > 0:
                extra += w * min(1.0, frac) * an.reloads(si, p, inner.line_bytes, contiguous)
    return extra


def parallel_tiles(kd: KernelDomain, ks: KernelSchedule) -> tuple[int, tuple[int, ...]]:
    """What multi-core splits: the tiles of the outermost loop over each parallel dim (the
    tiles of the output that cores can own, whatever reduction loops run outside them), and
    the positions of those loops in the nest."""
    extents = tuple(int(e) for e in kd.extents)
    loops = flattened_loops(ks.tilings, extents)
    tiles = dim_tiles(ks.tilings, extents)
    seen: dict[int, int] = {}
    for p, (lv, d, _) in enumerate(loops):
        if kd.dims[d].kind is not IterKind.REDUCTION and d not in seen:
            seen[d] = p
    count = math.prod(len(tiles[loops[p][1]][loops[p][0]][0]) for p in seen.values())
    return count, tuple(sorted(seen.values()))


def _iterations(tiles, loops) -> int:
    """Iterations of a band of loops: per dim, the tiles of its deepest level in the band."""
    deepest: dict[int, int] = {}
    for lv, d, _ in loops:
        deepest[d] = lv
    return math.prod(len(tiles[d][lv][0]) for d, lv in deepest.items())


def cache_model(op: Op, ks: KernelSchedule, kd: KernelDomain | None, profile: HardwareProfile,
                cores: int = 1, packed: bool = True) -> CacheModel:
    """The analytical cache model of one kernel running on ``cores`` cores (module docstring),
    with packed tiles or (``packed=False``) each tensor read in place.
    Kernels with the same streams and loop nest (a model's repeated blocks) are solved once."""
    if ks.untiled or kd is None:
        return CacheModel(kernel_traffic(op, ks, profile, kd), (), ())
    return _model_of(_analysis(op, ks, kd), kd, ks, profile, cores, packed)


def _model_of(an: "_Analysis", kd: KernelDomain, ks: KernelSchedule, profile: HardwareProfile,
              cores: int, packed: bool) -> CacheModel:
    key = (profile, cores, packed)
    if key not in an._models:
        an._models[key] = _cache_model(an, kd, ks, profile, cores, kernel_links(profile), packed)
    return an._models[key]


def _cache_model(an: "_Analysis", kd: KernelDomain, ks: KernelSchedule,
                 profile: HardwareProfile, cores: int, links, packed: bool) -> CacheModel:
    levels = _cache_levels(profile)
    tiles_p, split_at = an.parallel
    out: list[LevelMisses] = []
    inner: LevelMisses | None = None      # as analysed (for the next level's window)
    inner_final: LevelMisses | None = None
    for lv in reversed(levels):                    # innermost first
        # packing reads the tensors in place through the outermost cache, from main memory;
        # the levels inside it hold the packed buffers
        contiguous = packed and lv is not levels[0]
        private = not lv.shared
        split = private and cores > 1 and bool(split_at)
        # a shared level's capacity per core is counted for the next power of two of
        # cores (a handful of distinct shares to analyse)
        share = 1 if private else 1 << (cores - 1).bit_length()
        m = _level_misses(an, lv, share, split_at, split, inner, packed, contiguous)
        misses = dict(m.misses)
        if split:
            # each core brings its own copy of what the split loops share, once
            share = min(1.0, cores / tiles_p)
            misses = {s.name: max(misses[s.name],
                                  share * an.reloads(si, split_at[-1], lv.line_bytes, contiguous))
                      for si, s in enumerate(an.streams)}
        refetch = 0.0
        if inner_final is not None:
            # a level only sees the misses of the one inside it
            misses = {k: min(v, inner_final.misses[k]) for k, v in misses.items()}
            refetch = _writeback_refetches(an, attrs.evolve(inner, misses=inner_final.misses),
                                           m.capacity_lines, packed)
        down = sum(misses.values()) + refetch
        up = sum(v for s, v in zip(an.streams, misses.values()) if s.writes)
        final = attrs.evolve(m, misses=misses, down_bytes=round(down * m.line_bytes),
                             up_bytes=round(up * m.line_bytes))
        out.insert(0, final)
        inner, inner_final = m, final
    return CacheModel({link: LinkBytes(m.down_bytes + an.opaque, m.up_bytes)
                       for link, m in zip(links, out)}, tuple(out))


_ANALYSES: dict[tuple, "_Analysis"] = {}


def _analysis(op: Op, ks: KernelSchedule, kd: KernelDomain) -> "_Analysis":
    """The per-kernel analysis, shared by kernels with the same streams and loop nest."""
    streams, opaque = kernel_streams(op, kd)
    key = (tuple((s.name, s.amap, s.shape, s.itemsize, s.stage, s.reads, s.writes, s.base)
                 for s in streams), opaque, kd.extents, tuple(d.kind for d in kd.dims),
           kd.accumulator_map, kd.anchor is not None,
           any(st.stage == EPILOGUE for st in kd.steps), tuple(ks.tilings), ks.epilogue_level)
    if key not in _ANALYSES:
        if len(_ANALYSES) >= 512:
            _ANALYSES.clear()
        _ANALYSES[key] = _Analysis(op, ks, kd)
    return _ANALYSES[key]


def analytical_traffic(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                       profile: HardwareProfile, cores: int = 1, packed: bool = True
                       ) -> dict[Link, LinkBytes]:
    """Bytes per link (outer level, inner level) by the analytical cache model."""
    return dict(cache_model(op, ks, kd, profile, cores, packed).links)


# ----------------------------------------------------------------------------- compute
@attrs.frozen
class ComputeModel:
    """Seconds on one core and what set them."""

    seconds_one_core: float
    dtype: str                   # the dtype the SIMD units compute in
    lanes: int
    vector_dim: str
    vector_efficiency: float
    accumulators: int            # independent vector accumulators in the innermost tile
    latency_efficiency: float
    fma_flops: int               # a contraction's multiply-adds, at the FMA rate
    other_flops: int             # everything else, one FLOP per lane per unit per cycle


def _simd_dtype(compute: CpuCompute, dtype: str) -> str:
    if dtype in compute.fma_dtypes:
        return dtype
    return "f32" if "f32" in compute.fma_dtypes else compute.fma_dtypes[0]


def _unit_stride_in_inputs(kd: KernelDomain, d: int) -> bool:
    """Whether loop dim ``d`` steps every input that depends on it by one element along that
    input's last (contiguous) axis and no other: a vector load along ``d`` reads consecutive
    elements of each."""
    for a in kd.accesses:
        exprs = a.map.exprs if a.map is not None else ()
        if any(e.coeffs[d] for e in exprs[:-1]) or (exprs and exprs[-1].coeffs[d] not in (0, 1)):
            return False
    return True


def compute_model(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                  profile: HardwareProfile) -> ComputeModel:
    compute = profile.compute
    if not isinstance(compute, CpuCompute):
        raise TensorIRError(f"{profile.name}: the cpu backend needs a cpu profile, got "
                            f"{profile.kind}")
    dtype = _simd_dtype(compute, kernel_dtype(op))
    lanes = compute.lanes(dtype)
    counted = op_flops(op)
    total = int(counted) if isinstance(counted, int) else 0
    fma = 0
    if kd is not None and kd.anchor is not None:
        anchor = kd.steps[kd.anchor].op
        if get_op_def(anchor.type).category is Category.CONTRACTION:
            f = op_flops(anchor)
            fma = min(total, int(f) if isinstance(f, int) else 0)
    elif kd is None and get_op_def(op.type).category is Category.CONTRACTION:
        fma = total
    other = total - fma
    per_cycle = compute.fma_units * lanes
    clock = profile.clock_hz

    def seconds(fma_eff: float, other_eff: float, horizontal_sums: int = 0) -> float:
        # a horizontal sum is log2(lanes) shuffle-and-add steps on the one shuffle port
        return ((fma / (2 * per_cycle * clock * fma_eff) if fma else 0.0)
                + (other / (per_cycle * clock * other_eff) if other else 0.0)
                + horizontal_sums * math.log2(lanes) / clock)

    if kd is None or ks.untiled:
        return ComputeModel(seconds(1.0, 1.0), dtype, lanes, "-", 1.0, 0, 1.0, fma, other)
    extents = kd.extents
    tiles = dim_tiles(ks.tilings, extents)
    inner = len(ks.tilings) - 1
    t = [int(tiles[d][inner][1].max()) for d in range(len(extents))]
    out_map = kd.accumulator_map if kd.anchor is not None else kd.result_map
    out_dims = relevant_dims(out_map)
    cands = [d for d in sorted(out_dims) if kd.dims[d].kind is not IterKind.REDUCTION]
    cands = cands or [d for d in range(len(extents))]
    last = [d for d, c in enumerate(out_map.exprs[-1].coeffs) if c] if out_map.exprs else []
    need = FMA_LATENCY_CYCLES * compute.fma_units

    def eff(d: int) -> float:
        sizes = tiles[d][inner][1]
        return float(sizes.sum() / (np.ceil(sizes / lanes) * lanes).sum())

    # across the result: each vector accumulates `lanes` results of the innermost tile
    v = max(cands, key=lambda d: (eff(d), d in last, -cands.index(d)))
    vec_eff, lat_eff, accs = eff(v), 1.0, 0
    if fma and kd.combiner == "add":
        accs = math.ceil(t[v] / lanes) * math.prod(t[d] for d in out_dims if d != v)
        lat_eff = min(1.0, accs / need)
    best = ComputeModel(seconds(vec_eff * lat_eff, vec_eff), dtype, lanes, kd.names[v], vec_eff,
                        accs, lat_eff, fma, other)
    if not (fma and kd.combiner == "add"):
        return best
    # along a reduction dim the inputs read contiguously (a dot product: a patch-embedding
    # conv's kernel row): one accumulator vector per result of the innermost tile, summed
    # across its lanes once per visit of the tile
    results = math.prod(t[d] for d in out_dims)
    visits = math.prod(len(tiles[d][inner][1]) for d in range(len(extents)))
    for r, dim in enumerate(kd.dims):
        if dim.kind is not IterKind.REDUCTION or not _unit_stride_in_inputs(kd, r):
            continue
        r_lat = min(1.0, results / need)
        r_s = seconds(eff(r) * r_lat, vec_eff, visits * results)   # the epilogue as before
        if r_s < best.seconds_one_core * (1 - 1e-12):
            best = ComputeModel(r_s, dtype, lanes, kd.names[r], eff(r), results, r_lat, fma,
                                other)
    return best


# ----------------------------------------------------------------------------- the cost
def kernel_cost(op: Op, ks: KernelSchedule, kd: KernelDomain | None, profile: HardwareProfile,
                *, exact: bool = False, max_accesses: int = MAX_EXACT_ACCESSES,
                packed: bool = True) -> KernelCost:
    """One kernel's cost on a CPU profile: the analytical cache model (or, with ``exact``, the
    replayed trace on one core; untiled kernels stream either way), SIMD compute, and the
    fastest number of cores. ``packed=False`` models the loop nest reading every tensor in
    place, as the exact mode replays it (module docstring)."""
    if kd is None and not ks.untiled:
        found = kernel_domain_or_reason(op)
        kd = None if isinstance(found, str) else found
    comp = compute_model(op, ks, kd, profile)
    cores = profile.compute.cores
    links = kernel_links(profile)
    overlaps = {link: link_overlaps(profile, link) for link in links}
    tiles = innermost_tiles(ks, kd) if ks.buffers or ks.untiled else 1 << 62
    tiled = kd is not None and not ks.untiled
    an = _analysis(op, ks, kd) if tiled else None
    P = an.parallel[0] if tiled else cores
    exact = exact and tiled          # an untiled kernel has no nest to replay: it streams
    exact_links = exact_traffic(op, ks, kd, profile, max_accesses=max_accesses) if exact else None
    # of the core counts that leave the busiest core the same number of tiles, the fewest is
    # never slower (the same compute, and less of a shared cache each, more copies of what
    # the split loops share): only the fewest is costed
    candidates = [1] if exact else [k for k in range(1, min(cores, P) + 1)
                                    if k == 1 or -(-P // k) < -(-P // (k - 1))]
    costed = {}
    fastest = math.inf
    # most cores first: a count whose compute alone (a lower bound of the pipeline's time)
    # exceeds the fastest time found cannot be picked, so its cache model is never built
    for k in reversed(candidates):
        busiest = math.ceil(P / k) / P          # the busiest core's share of the tiles
        compute_s = comp.seconds_one_core * busiest
        if compute_s > fastest * (1 + 1e-9):
            continue
        traffic = (exact_links if exact else
                   dict(_model_of(an, kd, ks, profile, k, packed).links) if tiled
                   else kernel_traffic(op, ks, profile, kd))
        link_s, bw = {}, {}
        for link, b in traffic.items():
            outer = profile.level(link[0])     # a link runs at its outer level's bandwidth
            if outer.shared:                   # all cores share it
                seconds = b.total / profile.bandwidth(*link)
            else:                              # one per core: the busiest core's share
                seconds = b.total * busiest / (outer.bandwidth_bytes_per_s
                                               * outer.sustained_fraction)
            link_s[link] = seconds
            bw[link] = b.total / seconds if seconds > 0 else profile.bandwidth(*link)
        steps = max(1, math.ceil(tiles * busiest))   # the busiest core's pipeline
        time_s, _ = pipeline(compute_s, link_s, overlaps, n_steps=steps)
        costed[k] = (time_s, k, compute_s, traffic, bw, steps)
        fastest = min(fastest, time_s)
    best = None
    for k in sorted(costed):                    # ties go to fewer cores
        if best is None or costed[k][0] < best[0] * (1 - 1e-12):
            best = costed[k]
    _, k, compute_s, traffic, bw, steps = best
    breakdown = {"compute_one_core_s": comp.seconds_one_core, "cores_used": float(k),
                 "parallel_tiles": float(P), "vector_efficiency": comp.vector_efficiency,
                 "latency_efficiency": comp.latency_efficiency}
    caches = ("exact caches" if exact else
              f"analytical caches, {'packed tiles' if packed else 'tensors in place'}")
    notes = (f"{caches}; {k}/{cores} cores over {P} tiles; "
             f"{comp.lanes} x {comp.dtype} lanes on {comp.vector_dim} "
             f"({comp.vector_efficiency:.0%}), {comp.accumulators} accumulators "
             f"({comp.latency_efficiency:.0%})")
    return finish(op, ks, profile, compute_s, traffic, link_bandwidth=bw, breakdown=breakdown,
                  notes=notes, n_steps=steps)


def scaled_caches(profile: HardwareProfile, factor: int) -> HardwareProfile:
    """``profile`` with every on-chip capacity divided by ``factor`` (same ways, lines,
    bandwidths): small problems then exceed the caches, as large ones do on the real chip.
    Lower graphs for it with ``passes.lowering.lower(graph, scaled.target)``."""
    from tensorir.errors import ProfileError
    levels = []
    for lv in profile.levels:
        if lv is not profile.main_memory:
            cap = lv.capacity_bytes // factor
            if lv.associativity and cap % (lv.line_bytes * lv.associativity):
                raise ProfileError(f"{profile.name}: {lv.name} / {factor} = {cap} bytes is not "
                                   f"a whole number of {lv.associativity}-way sets of "
                                   f"{lv.line_bytes}-byte lines")
            lv = attrs.evolve(lv, capacity_bytes=cap)
        levels.append(lv)
    name = f"{profile.name}/{factor}"
    target = attrs.evolve(profile.target, name=name,
                          levels=tuple(lv.memory_level for lv in levels))
    return attrs.evolve(profile, name=name, levels=tuple(levels), target=target, path="")


# ----------------------------------------------------------------------------- exact mode
def _grid(axes: Sequence[tuple[int, int, int, int]], n_dims: int):
    """Index of every dim and the validity mask over a grid with one axis per entry of
    ``axes`` = (dim, step, parent step, trips): index = sum of k * step over the dim's axes;
    valid iff at each of them the offset inside its parent tile is below the parent's step
    (nested edge tiles are partial)."""
    nax = len(axes)
    index = [np.zeros([1] * nax, dtype=np.int64) for _ in range(n_dims)]
    valid = np.ones([1] * nax, dtype=bool)
    by_dim: dict[int, list[int]] = {}
    for i, (d, _, _, _) in enumerate(axes):
        by_dim.setdefault(d, []).append(i)
    for d, ids in by_dim.items():
        partial = np.zeros([1] * nax, dtype=np.int64)
        for i in reversed(ids):
            _, step, parent, trips = axes[i]
            shp = [1] * nax
            shp[i] = trips
            partial = partial + np.arange(trips, dtype=np.int64).reshape(shp) * step
            valid = valid & (partial < parent)
        index[d] = partial
    return index, valid


def _addresses(touch: Sequence[tuple[Stream, bool]], index, valid, shape
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte addresses (grid x accesses), which are real accesses (in the grid and in the
    tensor: a convolution's padding is skipped), and the write flags."""
    grid = tuple(shape) + (len(touch),)
    addr = np.empty(grid, dtype=np.int64)
    keep = np.empty(grid, dtype=bool)
    for a, (s, _) in enumerate(touch):
        total = np.asarray(0, dtype=np.int64)
        inside = valid
        for e, stride, bound in zip(s.amap.exprs, s.strides, s.shape):
            idx = np.asarray(e.const, dtype=np.int64)
            for d, c in enumerate(e.coeffs):
                if c:
                    idx = idx + c * index[d]
            total = total + idx * stride
            if np.any(idx < 0) or np.any(idx >= bound):
                inside = inside & (idx >= 0) & (idx < bound)
        addr[..., a] = s.base + np.floor(total * s.itemsize).astype(np.int64)
        keep[..., a] = inside
    flags = np.broadcast_to(np.array([w for _, w in touch], dtype=bool), grid)
    return addr, keep, flags


def kernel_trace(op: Op, ks: KernelSchedule, kd: KernelDomain, *,
                 max_accesses: int = MAX_EXACT_ACCESSES) -> tuple[np.ndarray, np.ndarray]:
    """Byte addresses and write flags of the kernel's memory accesses in execution order (see
    the module docstring); raises TensorIRError above ``max_accesses``.

    The tile loops, then inside each innermost tile every main body step over its own dims
    (the innermost tile's loop order) touching what :func:`step_programs` says; after each
    iteration of the loop that completes a reduction, every epilogue step over its dims of
    the epilogue level's tile.
    """
    nest = build_nest(kd, ks)
    streams, _ = kernel_streams(op, kd)
    n = len(nest.extents)
    axes = [(d, step, parent, -(-parent // step))
            for (_, d, step), parent in zip(nest.loops, nest.parent)]
    tile_axes = axes[:nest.tile_loops]
    element = {a[0]: a for a in axes[nest.tile_loops:]}
    order = [d for d in ks.tilings[-1].order]
    epi = nest.epilogue_at
    parts: list[tuple[str, list, list]] = []
    for stage, dims, touch in step_programs(kd, streams):
        if not touch:
            continue
        if stage == MAIN:
            inner = [element[d] for d in order if d in dims and d in element]
            parts.append((MAIN, tile_axes + inner, touch))
        elif epi is not None:
            inner = [(d, 1, t, t) for d in order if d in dims
                     for t in [nest.step(d, epi)] if t > 1]
            parts.append((EPILOGUE, tile_axes[:epi + 1] + inner, touch))
    needed = sum(math.prod(a[3] for a in ax) * len(touch) for _, ax, touch in parts)
    if needed > max_accesses:
        raise TensorIRError(
            f"exact mode: kernel %{ks.result} ({op.type}, domain {kd.format()}) makes "
            f"{needed:,} accesses, above max_accesses={max_accesses:,}; use the analytical "
            f"model, a smaller problem, or a larger max_accesses")
    tile_shape = [a[3] for a in tile_axes]
    lead = tile_shape[:epi + 1] if epi is not None else tile_shape
    main, after = [], []
    for stage, ax, touch in parts:
        index, valid = _grid(ax, n)
        arrays = _addresses(touch, index, valid, [a[3] for a in ax])
        if stage == MAIN:
            main.append([x.reshape(tile_shape + [-1]) for x in arrays])
        else:
            after.append([x.reshape(lead + [-1]) for x in arrays])
    out = []
    for i in range(3):
        whole = np.concatenate([m[i] for m in main], axis=-1) if main else None
        pieces = ([] if whole is None else [whole.reshape(lead + [-1])]) + [a[i] for a in after]
        out.append(np.concatenate(pieces, axis=-1).reshape(-1) if pieces
                   else np.zeros(0, dtype=np.int64))
    addr, keep, flags = out
    return addr[keep], flags[keep]


def exact_traffic(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                  profile: HardwareProfile, *, max_accesses: int = MAX_EXACT_ACCESSES
                  ) -> dict[Link, LinkBytes]:
    """Bytes per link from replaying the kernel's trace through the profile's caches
    (:func:`backends.cache_sim.simulate_hierarchy`; one core, shared levels whole)."""
    from .cache_sim import CacheLevel, simulate_hierarchy
    if ks.untiled or kd is None:
        raise TensorIRError(f"exact mode: kernel %{ks.result} ({op.type}) has no loop nest "
                            f"({ks.untiled or 'no kernel domain'})")
    levels = list(reversed(_cache_levels(profile)))       # innermost first
    addr, writes = kernel_trace(op, ks, kd, max_accesses=max_accesses)
    _, opaque = kernel_streams(op, kd)
    caches = [CacheLevel(lv.name, lv.capacity_bytes, lv.line_bytes, _ways(lv)) for lv in levels]
    stats = simulate_hierarchy(addr, writes, levels=caches, flush=True)
    out: dict[Link, LinkBytes] = {}
    names = [lv.name for lv in levels] + [profile.main_memory.name]
    for i, t in enumerate(stats.traffic):
        out[(names[i + 1], names[i])] = LinkBytes(t.read_bytes + opaque, t.write_bytes)
    return {link: out[link] for link in kernel_links(profile)}
