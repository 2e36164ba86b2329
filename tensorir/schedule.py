"""The schedule level of the IR: each kernel as a loop nest that moves tile views between named
buffers placed in memory levels, computes on them and stores results.

A kernel's tiling gives, for every on-chip memory level (outermost first), a tile extent per
kernel dim and a loop order (split reduction dims innermost). Lowering turns it into a perfect
loop nest: the loops of the outermost level, then inside them the next level's loops over the
current outer tile, and so on. Loops of one trip are left out. Statements sit between loops:

``load A@L2 <- A@L3``
    copy the tile of an operand that the current loop context needs (the box its affine map
    reaches, clipped to the tensor) from the next outer level (or main memory, ``%x``) into a
    buffer. A load sits just inside the innermost loop that moves its box, so a tile stays
    resident across loops it does not depend on (it is *stationary* there).
``init acc@L1`` / ``init out@L2``
    fill an accumulator with the combiner's identity (0 for add, -inf for max), or open a
    result tile that the stores of inner levels fill.
``compute main -> acc@L1 accumulate`` / ``compute all -> out@L1``
    run the kernel's body on the innermost buffers for the current tile: ``main`` is the
    anchor (the op whose reduction is split) and what it depends on, accumulated over reduction
    tiles; ``all`` is the whole body when nothing accumulates.
``epilogue out@L2 <- acc@L2``
    once the reduction is complete, run the rest of the body (bias, activation, softmax ...).
``store acc@L1 -> acc@L2 accumulate`` / ``store out@L2 -> %y``
    drain a tile to the next outer level: partial results combine into the outer accumulator;
    finished results are copied.

The nest is generated from the tiling by :func:`lower_kernel`; it prints and parses
(:mod:`tensorir.schedule_text`), the verifier checks it, and
:class:`tensorir.schedule_exec.ScheduleInterpreter` executes it over NumPy views.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Union

import attrs
import numpy as np

from .dtypes import DType
from .ir import Op
from .kernel import EPILOGUE, MAIN, KernelDomain
from .ops.domain import AffineMap
from .target import MemoryLevel, Target

IN, ACC, OUT = "in", "acc", "out"
TileSizes = tuple[tuple[int, int], ...]   # (tile size, how many tiles) of one dim


@attrs.frozen
class LevelTiling:
    """Tile extents per kernel dim and loop order (outermost first) at one memory level."""

    level: str
    tile: tuple[int, ...] = attrs.field(converter=tuple)
    order: tuple[int, ...] = attrs.field(converter=tuple)


@attrs.frozen
class Buffer:
    name: str
    level: str
    role: str                  # IN (an access), ACC (partial results), OUT (finished results)
    access: int                # index of the access for IN buffers, -1 otherwise
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    dtype: DType = DType.float32
    copies: int = 1            # 2 when the level is double buffered
    offset: int | None = None  # byte offset in the level, once allocated

    @property
    def tile_bytes(self) -> int:
        return self.dtype.nbytes(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.tile_bytes * self.copies


@attrs.frozen
class Loop:
    dim: int
    level: int       # index into the kernel's tilings
    step: int
    body: tuple["Stmt", ...] = attrs.field(converter=tuple)


@attrs.frozen
class Load:
    buffer: str
    source: str      # a buffer name, or "%value" for main memory


@attrs.frozen
class Init:
    buffer: str


@attrs.frozen
class Compute:
    stage: str       # "main" (accumulates into an ACC buffer) or "all" (writes an OUT buffer)
    buffer: str
    accumulate: bool


@attrs.frozen
class Epilogue:
    buffer: str      # the OUT buffer written
    source: str      # the ACC buffer read


@attrs.frozen
class Store:
    buffer: str
    target: str      # a buffer name, or "%value" for main memory
    accumulate: bool


Stmt = Union[Loop, Load, Init, Compute, Epilogue, Store]
ALL = "all"


@attrs.frozen
class KernelSchedule:
    """One kernel's lowered program. ``untiled`` kernels (no kernel domain, or a data-movement
    op) carry the reason and run whole from main memory."""

    result: str                               # name of the kernel op's result value
    op_type: str
    tilings: tuple[LevelTiling, ...] = ()
    buffers: tuple[Buffer, ...] = ()
    body: tuple[Stmt, ...] = ()
    epilogue_level: int = -1
    untiled: str = ""

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def statements(self):
        """Every statement in program order (loops before their bodies), with its depth."""
        def walk(stmts, depth):
            for s in stmts:
                yield s, depth
                if isinstance(s, Loop):
                    yield from walk(s.body, depth + 1)
        yield from walk(self.body, 0)

    def renamed(self, result: str, values: dict[str, str]) -> "KernelSchedule":
        """The same schedule for a kernel whose result is ``result``, the main-memory values
        its loads and stores name replaced through ``values`` (``"%old": "%new"``)."""
        return KernelSchedule(result=result, op_type=self.op_type, tilings=self.tilings,
                              buffers=self.buffers, body=_renamed_values(self.body, values),
                              epilogue_level=self.epilogue_level, untiled=self.untiled)

    def with_offsets(self, offsets: dict[str, int]) -> "KernelSchedule":
        # built directly, naming every field (attrs.evolve is several times slower)
        buffers = tuple(b if offsets.get(b.name, b.offset) == b.offset else
                        Buffer(name=b.name, level=b.level, role=b.role, access=b.access,
                               shape=b.shape, dtype=b.dtype, copies=b.copies,
                               offset=offsets[b.name])
                        for b in self.buffers)
        return KernelSchedule(result=self.result, op_type=self.op_type, tilings=self.tilings,
                              buffers=buffers, body=self.body,
                              epilogue_level=self.epilogue_level, untiled=self.untiled)


def _renamed_values(stmts: tuple, values: dict[str, str]) -> tuple:
    # statements are built directly (attrs.evolve is several times slower), and a body with
    # nothing to rename is returned as it is
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            body = _renamed_values(s.body, values)
            if body is not s.body:
                s = Loop(dim=s.dim, level=s.level, step=s.step, body=body)
        elif isinstance(s, Load) and s.source in values:
            s = Load(buffer=s.buffer, source=values[s.source])
        elif isinstance(s, Store) and s.target in values:
            s = Store(buffer=s.buffer, target=values[s.target], accumulate=s.accumulate)
        out.append(s)
    return stmts if all(a is b for a, b in zip(out, stmts)) else tuple(out)


@attrs.frozen
class Schedule:
    """The lowered program of a graph: the target and one kernel schedule per op, in the
    graph's op order (keyed by result value name); the DRAM arena plan once allocated."""

    target: Target
    kernels: tuple[KernelSchedule, ...]
    arena: object | None = None    # tensorir.arena.ArenaPlan

    def kernel(self, result: str) -> KernelSchedule | None:
        for k in self.kernels:
            if k.result == result:
                return k
        return None


# --------------------------------------------------------------------------- nest helpers
def flattened_loops(tilings: Sequence[LevelTiling], extents: Sequence[int]) -> list[tuple[int, int, int]]:
    """The moving loops of the nest, outermost first: (level index, dim, step). A loop moves
    when its tile is smaller than the enclosing tile of the same dim."""
    parent = list(extents)
    out = []
    for li, t in enumerate(tilings):
        for d in t.order:
            if t.tile[d] < parent[d]:
                out.append((li, d, t.tile[d]))
        parent = [min(p, x) for p, x in zip(parent, t.tile)]
    return out


def relevant_dims(amap: AffineMap | None) -> set[int]:
    if amap is None:
        return set()
    return {i for e in amap.exprs for i, c in enumerate(e.coeffs) if c}


def placement(loops: Sequence[tuple[int, int, int]], level: int, dims: set[int]) -> int:
    """Index of the innermost moving loop of levels <= ``level`` over one of ``dims`` (-1:
    outside every loop). A buffer's load or init sits just inside it."""
    return max((p for p, (li, d, _) in enumerate(loops) if li <= level and d in dims),
               default=-1)


def _box_shape(amap: AffineMap, tile: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(amap.footprint(tile, shape))


@attrs.frozen(eq=False)
class BufferSpec:
    """A buffer of one level before a tile sizes it: its box is the footprint of ``amap`` over
    the tile, clipped to ``bounds``."""

    role: str                  # IN, ACC or OUT
    access: int                # index of the access for IN buffers, -1 otherwise
    amap: AffineMap
    bounds: tuple[int, ...]
    dtype: DType
    copies: int


def level_buffers(op: Op, kd: KernelDomain, level: MemoryLevel, li: int,
                  epilogue_level: int) -> tuple[list[BufferSpec], list[BufferSpec]]:
    """The input buffers and the result buffers (ACC below and at the epilogue level, OUT at
    and above it) that :func:`lower_kernel` gives level ``li`` of the nest, in its order."""
    copies = 2 if level.double_buffered else 1
    inputs = []
    for ai, access in enumerate(kd.accesses):
        if access.map is None or (access.stage == EPILOGUE and li > epilogue_level):
            continue
        ty = op.operands[access.operand].type
        inputs.append(BufferSpec(IN, ai, access.map, tuple(ty.shape), ty.dtype, copies))
    results = []
    has_anchor = kd.anchor is not None
    has_epilogue = has_anchor and any(s.stage == EPILOGUE for s in kd.steps)
    if has_anchor and li >= epilogue_level:
        anchor = kd.steps[kd.anchor].op.results[0].type
        results.append(BufferSpec(ACC, -1, kd.accumulator_map, tuple(anchor.shape),
                                  _acc_dtype(anchor.dtype), copies))
    if not has_anchor or li <= epilogue_level and (has_epilogue or li < epilogue_level):
        result = op.results[0].type
        results.append(BufferSpec(OUT, -1, kd.result_map, tuple(result.shape), result.dtype,
                                  copies))
    return inputs, results


def lower_kernel(op: Op, kd: KernelDomain, tilings: Sequence[LevelTiling],
                 levels: Sequence[MemoryLevel]) -> KernelSchedule:
    """The loop nest of ``op`` for the given tiling (one LevelTiling per level in ``levels``,
    outermost first). See the module docstring for the statements."""
    result = op.results[0]
    n_levels = len(tilings)
    extents = kd.extents
    loops = flattened_loops(tilings, extents)
    split = set(kd.split_reductions())
    # the epilogue runs at the outermost level that splits an anchor reduction
    parent = list(extents)
    epilogue_level = n_levels - 1
    for li, t in enumerate(tilings):
        if any(t.tile[d] < parent[d] for d in split):
            epilogue_level = li
            break
        parent = [min(p, x) for p, x in zip(parent, t.tile)]
    has_anchor = kd.anchor is not None
    buffers: list[Buffer] = []
    opens: dict[int, list[Stmt]] = {}
    closes: dict[int, list[Stmt]] = {}
    innermost = len(loops) - 1

    def name_of(base: str, li: int) -> str:
        return f"{base}.{levels[li].name}"

    def add(at: int, stmt: Stmt, close: bool = False) -> None:
        (closes if close else opens).setdefault(at, []).append(stmt)

    specs = [level_buffers(op, kd, lv, li, epilogue_level) for li, lv in enumerate(levels)]

    def sized(spec: BufferSpec, name: str, li: int) -> Buffer:
        return Buffer(name, levels[li].name, spec.role, spec.access,
                      _box_shape(spec.amap, tilings[li].tile, spec.bounds), spec.dtype,
                      spec.copies)

    for li, (inputs, _) in enumerate(specs):
        for spec in inputs:
            ai = spec.access
            buf = name_of(f"a{ai}", li)
            buffers.append(sized(spec, buf, li))
            source = (name_of(f"a{ai}", li - 1) if li else
                      f"%{op.operands[kd.accesses[ai].operand].name}")
            add(placement(loops, li, relevant_dims(spec.amap)), Load(buf, source))
    for li, (_, results) in enumerate(specs):
        for spec in results:
            buffers.append(sized(spec, name_of("acc" if spec.role == ACC else "out", li), li))
    names = {b.name for b in buffers}
    result_dims = relevant_dims(kd.result_map)
    acc_dims = relevant_dims(kd.accumulator_map)
    # opens of results after the loads at the same place; closes deepest level first
    produced_at = epilogue_level if has_anchor else n_levels - 1
    for li in range(n_levels):
        acc, out = name_of("acc", li), name_of("out", li)
        if out in names and li < produced_at:  # filled by the stores of inner levels
            add(placement(loops, li, result_dims), Init(out))
        if acc in names:
            add(placement(loops, li, acc_dims), Init(acc))
    for li in reversed(range(n_levels)):
        acc, out = name_of("acc", li), name_of("out", li)
        outer_acc, outer_out = (name_of("acc", li - 1), name_of("out", li - 1)) if li else ("", "")
        target = f"%{result.name}"
        if acc in names:
            at = placement(loops, li, acc_dims)
            if li > epilogue_level:
                add(at, Store(acc, outer_acc, True), close=True)
            elif out in names:
                add(at, Epilogue(out, acc), close=True)
            else:  # nothing after the anchor: the accumulator is the result
                add(at, Store(acc, outer_out if outer_out in names else target, False), close=True)
        if out in names:
            at = placement(loops, li, result_dims)
            add(at, Store(out, outer_out if outer_out in names else target, False), close=True)
    last = n_levels - 1
    compute = (Compute(MAIN, name_of("acc", last), True) if has_anchor
               else Compute(ALL, name_of("out", last), False))
    add(innermost, compute)
    # at one place, deeper levels drain before shallower ones and an epilogue precedes its
    # store: the closes above were added in that order
    def build(p: int) -> list[Stmt]:
        body = list(opens.get(p, []))
        if p + 1 < len(loops):
            li, d, step = loops[p + 1]
            body.append(Loop(d, li, step, build(p + 1)))
        body += closes.get(p, [])
        return body

    return KernelSchedule(result.name, op.type, tuple(tilings), tuple(buffers),
                          tuple(build(-1)), epilogue_level)


def _acc_dtype(dtype: DType) -> DType:
    """Partial sums of low-precision floats accumulate in f32, as tensor cores and the KPU do."""
    return DType.float32 if dtype in (DType.float16, DType.bfloat16) else dtype


# --------------------------------------------------------------------------- traffic
def nested_tiles(extent: int, sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Starts and sizes of the tiles of one dim at each level, each level splitting every tile
    of the level above (edge tiles included). The arrays are shared: read them only."""
    return list(_nested_tiles(int(extent), tuple(int(x) for x in sizes)))


@functools.lru_cache(maxsize=8192)
def _nested_tiles(extent: int, sizes: tuple[int, ...]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Kernels of a model repeat dims and tile sizes, and backends ask for the same kernel's
    tiles several times: each (extent, sizes) is split once. Each level extends the one above
    it, so the levels come from the memo of the shorter prefix."""
    if not sizes:
        return ()
    above = _nested_tiles(extent, sizes[:-1])
    starts, lengths = above[-1] if above else (np.array([0], dtype=np.int64),
                                               np.array([extent], dtype=np.int64))
    size = sizes[-1]
    counts = -(-lengths // size)
    owner = np.repeat(np.arange(len(starts)), counts)
    first = np.cumsum(counts) - counts
    k = np.arange(owner.size) - first[owner]
    new_starts = starts[owner] + k * size
    new_lengths = np.minimum(size, starts[owner] + lengths[owner] - new_starts)
    new_starts.flags.writeable = new_lengths.flags.writeable = False
    return above + ((new_starts, new_lengths),)


@functools.lru_cache(maxsize=65536)
def nested_tile_sizes(extent: int, sizes: tuple[int, ...]) -> TileSizes:
    """``(size, count)``: how many tiles of each size one dim of ``extent`` has after splitting
    at each level's tile size in turn, every tile of the level above cut into full tiles and
    one edge tile. The sizes of :func:`nested_tiles`, counted in closed form
    (a few entries however many tiles there are)."""
    dist = {extent: 1}
    for size in sizes:
        nxt: dict[int, int] = {}
        for length, count in dist.items():
            full, edge = divmod(length, size)
            if full:
                nxt[size] = nxt.get(size, 0) + full * count
            if edge:
                nxt[edge] = nxt.get(edge, 0) + count
        dist = nxt
    return tuple(dist.items())


def dim_tiles(tilings: Sequence[LevelTiling], extents: Sequence[int]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """``out[d][level]``: starts and sizes of every tile of dim d at that level (shared
    arrays: read them only)."""
    return [nested_tiles(e, [t.tile[d] for t in tilings]) for d, e in enumerate(extents)]


def statement_traffic(kd: KernelDomain, ks: KernelSchedule, operand_shapes: Sequence[Sequence[int]],
                      result_shape: Sequence[int], acc_shape: Sequence[int] | None = None,
                      ) -> dict[int, int]:
    """Elements each load and store of the nest moves, in closed form (keyed by the
    statement's position in :meth:`KernelSchedule.statements`).

    A statement inside the loops up to position q runs once per tile position of those loops;
    what it moves is the box of its map over the tile of its own level. So the total is the
    sum of box sizes over the tile positions of the dims the map depends on, times, for each
    other dim, the number of tiles of the deepest level whose loop over that dim encloses the
    statement (:func:`tensorir.traffic.box_sum`).
    """
    extents = kd.extents
    loops = flattened_loops(ks.tilings, extents)
    tiles = dim_tiles(ks.tilings, extents)
    sizes = [tuple(t.tile[d] for t in ks.tilings) for d in range(len(extents))]
    level_index = {t.level: i for i, t in enumerate(ks.tilings)}
    out: dict[int, int] = {}
    for idx, (stmt, _) in enumerate(ks.statements()):
        if not isinstance(stmt, (Load, Store)):
            continue
        buf = ks.buffer(stmt.buffer)
        li = level_index[buf.level]
        if buf.role == IN:
            amap, bounds = kd.accesses[buf.access].map, operand_shapes[kd.accesses[buf.access].operand]
        elif buf.role == ACC:
            amap, bounds = kd.accumulator_map, acc_shape
        else:
            amap, bounds = kd.result_map, result_shape
        rel = _relevant_dims(amap)
        q = placement(loops, li, rel)
        count = 1
        for d in range(len(extents)):
            if d in rel:
                continue
            deepest = max((lj for p, (lj, dd, _) in enumerate(loops) if dd == d and p <= q),
                          default=None)
            if deepest is not None:
                count *= len(tiles[d][deepest][0])
        out[idx] = count * _level_box_sum(amap, tuple(int(b) for b in bounds), tuple(
            (d, int(extents[d]), sizes[d][:li + 1]) for d in sorted(rel)))
    return out


@functools.lru_cache(maxsize=4096)
def _relevant_dims(amap: AffineMap | None) -> frozenset[int]:
    return frozenset(relevant_dims(amap))


@functools.lru_cache(maxsize=16384)
def _level_box_sum(amap: AffineMap, bounds: tuple[int, ...],
                   dims: tuple[tuple[int, int, tuple[int, ...]], ...]) -> int:
    """:func:`tensorir.traffic.box_sum` over the tiles of ``dims`` (dim, extent, tile sizes
    down to the level): a model's kernels repeat the same maps, shapes and tiles."""
    from .traffic import box_sum
    return box_sum(amap, {d: _nested_tiles(e, s)[-1] for d, e, s in dims}, bounds)
