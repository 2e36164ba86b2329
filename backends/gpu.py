"""The gpu backend: thread blocks, occupancy, waves and tensor cores, from the schedule.

Per kernel, the model rebuilds the lowered loop nest the way a GPU runs it and reads its
traffic with the shared closed form (:func:`backends.cost.kernel_traffic`):

    block tile      = the tile of the innermost on-chip level (shared memory, SMEM) over the
                      parallel dims; the reductions run sequentially inside the block, so
                      every outer level keeps them whole
    blocks          = prod over the grid dims of ceil(extent / block tile)
    threads         = one warp per 64x64 outputs (tensor cores) or per 32x32 (CUDA cores),
                      at least one warp, at most max_threads_per_block
    registers       = 32 + 32 (MMA fragments) + accumulator tile x 4 bytes / 4 / threads
    shared memory   = the SMEM input buffers (both copies when double buffered)
    blocks_per_sm r = min(by shared memory, by registers, by warps, by threads, max blocks)
    waves           = ceil(blocks / (SMs x r)),   tail_efficiency = blocks / (waves x SMs x r)
    compute         = the busiest SM: L = ceil(blocks / SMs) blocks, r at a time, each round
                      T(k) = k x t_block / min(1, k x warps / 4)   (4 sub-partitions per SM)
    t_block         = max(MMA FLOPs / tensor rate, SMEM->register bytes / SMEM bandwidth)
                      + other FLOPs / CUDA-core rate + exp, log ... / special-function rate
                      (per SM rates; a block's FLOPs = the kernel's x its share of the grid)
    links           = kernel_traffic of the rebuilt nest, each at min(bandwidth, resident
                      blocks x stage bytes / latency, busy SMs x SMEM port)
    time            = finish(...): max(compute, links) + launch + prologue + drain

Tensor cores run contraction steps (the registry's CONTRACTION category: MatMul, Gemm, Conv,
and the two products of fused attention) in dtypes a matrix unit supports; fp32 runs on CUDA
cores unless ``allow_tf32`` (then TF32 tensor cores, and the kernel's dtype becomes ``tf32``).
MMA instructions are m16 n8 k(32 bytes): tiles below that are padded.

The lowering minimises traffic per level, which is not how GPU libraries choose tiles, so
contractions go through a GPU tile policy here: the block tile is the best (by this model) of
the MMA-friendly 32/64/128/256 x 32/64/128/256 tiles that fit shared memory and registers,
with a 128-byte k step; fused attention gets FlashAttention's tiling (64 or 128 query rows per
block, keys and values streamed in chunks of 64 or 128 with an online softmax). The outer (L2)
tile is the lowering's own search at that level with the reductions kept whole: the panels a
group of blocks shares in L2. Every other kernel keeps the lowering's tiles. ``docs/gpu.md``
explains each term and sets the model beside published measurements.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from fractions import Fraction
from typing import Iterator, Sequence

import attrs
import numpy as np

from tensorir.errors import TensorIRError
from tensorir.ir import Op
from tensorir.kernel import EPILOGUE, MAIN, KernelDomain, kernel_domain_or_reason
from tensorir.ops.domain import AffineMap, IterKind
from tensorir.ops.registry import Category, get_op_def, op_flops
from tensorir.schedule import (ACC, IN, OUT, BufferSpec, KernelSchedule, LevelTiling,
                               level_buffers, lower_kernel)
from tensorir.target import MemoryLevel

from .cost import KernelCost, finish, kernel_dtype, kernel_links, kernel_traffic
from .profile import ComputeUnit, GpuCompute, HardwareProfile

# --------------------------------------------------------------------------- model constants
#: Processing blocks (warp schedulers, each with its own tensor core and a quarter of the FP32
#: lanes) per SM on every NVIDIA SM since Volta: a block of w < 4 warps uses w / 4 of the SM.
SUB_PARTITIONS = 4
#: Outputs one warp owns: a 64x64 tile for tensor-core MMA, 32x32 on CUDA cores.
OUTPUTS_PER_WARP = {"matrix": 64 * 64, "vector": 32 * 32}
#: The warp tile whose operands each warp reads from shared memory per k step.
WARP_TILE = {"matrix": (64, 64), "vector": (32, 32)}
#: Registers a thread needs beside its share of the accumulator (addresses, indices, loop
#: state), plus MMA operand fragments on tensor cores.
BASE_REGISTERS = 32
FRAGMENT_REGISTERS = 32
#: MMA instruction shape m16 n8 k(32 bytes): m16n8k16 for 16-bit types, k8 tf32, k32 8-bit.
MMA_M, MMA_N, MMA_K_BYTES = 16, 8, 32
#: GPU tile policy: block tile sizes tried for contractions (32 for small problems), and the
#: k step in bytes per row (one 128-byte line: 64 fp16, 32 fp32 elements).
BLOCK_SIZES = (32, 64, 128, 256)
K_STEP_BYTES = 128
#: FlashAttention tiling: query rows per block and keys per streamed chunk.
ATTENTION_ROWS = (64, 128)
ATTENTION_CHUNKS = (64, 128)
#: Special-function unit (MUFU: exp2, log2, rsqrt, rcp, sin, cos) results per clock per SM on
#: compute capability 7.x to 9.0 (CUDA C++ Programming Guide, arithmetic instruction
#: throughput); FlashAttention-3 quotes H100's 3.9 TFLOPS of special functions = 132 x 16 x
#: 1.83 GHz. Profiles do not list this unit yet.
SFU_OPS_PER_CYCLE_PER_SM = 16
#: Kernels without a kernel domain stream their result with 256-thread blocks, 8 elements each.
STREAM_THREADS, STREAM_ELEMENTS = 256, 8


@attrs.frozen
class GpuOptions:
    """Switches of the model: ``allow_tf32`` runs fp32 contractions on TF32 tensor cores (as
    cuBLAS does with TF32 math enabled); ``tile`` pins the contraction block tile
    ``(bm, bn, bk)`` (for sweeps); ``policy=False`` keeps the lowering's tiles everywhere."""

    allow_tf32: bool = False
    tile: tuple[int, int, int] | None = None
    policy: bool = True


_OPTIONS: contextvars.ContextVar[GpuOptions] = contextvars.ContextVar("gpu_options",
                                                                       default=GpuOptions())


@contextlib.contextmanager
def options(**kwargs) -> Iterator[GpuOptions]:
    """``with options(allow_tf32=True): simulate(graph, "gpu-a100-sxm")`` (see GpuOptions)."""
    token = _OPTIONS.set(attrs.evolve(_OPTIONS.get(), **kwargs))
    try:
        yield _OPTIONS.get()
    finally:
        _OPTIONS.reset(token)


def cost_context() -> GpuOptions:
    """The settings a kernel's cost reads besides its arguments (``backends.simulate``'s memo
    of kernel costs keys on them)."""
    return _OPTIONS.get()


# --------------------------------------------------------------------------- the plan
@attrs.frozen
class BlockPlan:
    """How one kernel runs on the GPU: every number the time comes from."""

    kind: str                       # "contraction", "attention", "tiled" or "stream"
    unit: str                       # compute unit of the main FLOPs
    rate_dtype: str                 # the dtype that unit runs them in
    block_tile: tuple[int, ...]     # per kernel dim (the SMEM tiling)
    outer_tiles: tuple[tuple[int, ...], ...]   # outer on-chip levels' tiles, outermost first
    grid: tuple[int, ...]           # blocks per kernel dim
    blocks: int
    threads: int
    registers: int                  # per thread
    smem_bytes: int                 # per block
    blocks_per_sm: int
    limiter: str                    # what bounds blocks_per_sm
    waves: int
    tail_efficiency: float
    occupancy: float                # resident warps / max warps per SM
    mma_flops: float                # whole kernel, padded to the MMA shape
    other_flops: float              # on CUDA cores
    sfu_ops: float                  # on the special-function units
    block_s: float                  # one block alone on a whole SM
    compute_s: float
    smem_read_s: float              # one block's SMEM->register reads at the SM's bandwidth
    stage_bytes: int                # one copy of a block's input tiles (bytes in flight)
    out_tile_bytes: int

    def describe(self) -> str:
        tile = "x".join(str(t) for t in self.block_tile)
        return (f"{self.kind}: {self.unit} {self.rate_dtype}, block {tile}, {self.blocks} "
                f"blocks x {self.threads} threads, {self.registers} regs, "
                f"{self.smem_bytes} B smem, {self.blocks_per_sm}/SM ({self.limiter}), "
                f"{self.waves} waves, tail {self.tail_efficiency:.2f}")


@attrs.frozen
class _Roles:
    """The GEMM view of a contraction's kernel domain."""

    a: int                           # access index of the first product operand
    b: int                           # and of the second
    m: tuple[int, ...]               # parallel dims only A reads (innermost last)
    n: tuple[int, ...]               # parallel dims only B reads
    batch: tuple[int, ...]           # parallel dims both read (one per block); the parallel
                                     # dims neither reads (an epilogue's) stay whole
    red: tuple[int, ...]             # the anchor's split reductions
    keys: tuple[int, ...]            # attention: reductions of a later product (streamed)


# --------------------------------------------------------------------------- entry points
def kernel_cost(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                profile: HardwareProfile, *, allow_tf32: bool | None = None) -> KernelCost:
    """The cost of one lowered kernel on a GPU profile (see the module docstring)."""
    opts = _OPTIONS.get()
    if allow_tf32 is not None:
        opts = attrs.evolve(opts, allow_tf32=allow_tf32)
    _check(profile)
    if ks.untiled or kd is None:
        return _stream_cost(op, ks, profile, ks.untiled or "no kernel domain")
    return _tiled_cost(op, ks, kd, profile, opts)


def op_cost(op: Op, profile: HardwareProfile | str, **option_overrides) -> KernelCost:
    """The cost of one op (a single op or a ``fused.*`` kernel) without a lowered graph: the
    model builds its own schedule. For kernels the lowering cannot place yet, such as
    long-sequence attention whose keys do not fit shared memory whole."""
    from .profile import load_profile
    profile = load_profile(profile)
    with options(**option_overrides):
        kd = kernel_domain_or_reason(op)
        if isinstance(kd, str):
            return kernel_cost(op, KernelSchedule(op.results[0].name, op.type, untiled=kd),
                               None, profile)
        return kernel_cost(op, KernelSchedule(op.results[0].name, op.type), kd, profile)


def plan(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
         profile: HardwareProfile) -> BlockPlan:
    """The BlockPlan behind :func:`kernel_cost` (for tables and tests)."""
    _check(profile)
    if ks.untiled or kd is None:
        return _stream_plan(op, profile)
    return _search(op, ks, kd, profile, _OPTIONS.get())[0]


def _check(profile: HardwareProfile) -> None:
    if not isinstance(profile.compute, GpuCompute):
        raise TensorIRError(f"{profile.name}: the gpu backend needs a gpu profile, not "
                            f"{profile.kind!r}")


def _tiled_cost(op, ks, kd, profile, opts) -> KernelCost:
    # the search costs its winner in full to pick it: that cost is the kernel's
    return _search(op, ks, kd, profile, opts)[-1]


def _finish(op, gpu_ks, profile, p: BlockPlan, links, bandwidth, extras) -> KernelCost:
    breakdown = {"blocks": float(p.blocks), "waves": float(p.waves),
                 "blocks_per_sm": float(p.blocks_per_sm), "occupancy": p.occupancy,
                 "tail_efficiency": p.tail_efficiency, "threads_per_block": float(p.threads),
                 "registers_per_thread": float(p.registers),
                 "smem_per_block_bytes": float(p.smem_bytes), "block_s": p.block_s,
                 "smem_read_s": p.smem_read_s}
    breakdown.update(extras)
    # the pipeline's fill is the GPU's prologue and drain (in extras), not the first tile of
    # every buffer: the L2 tiles are panels streaming through a cache, never loaded ahead
    cost = finish(op, gpu_ks, profile, p.compute_s, links, link_bandwidth=bandwidth,
                  extra_s=sum(extras.values()), breakdown=breakdown, notes=p.describe(),
                  pipeline_fill=False)
    if p.rate_dtype == "tf32" and cost.dtype != "tf32":
        peak = profile.peak_flops("tf32")
        cost = attrs.evolve(cost, dtype="tf32",
                            utilisation=cost.flops / (cost.time_s * peak) if cost.time_s else 0.0)
    return cost


@attrs.frozen(eq=False)
class _Problem:
    """What every candidate block tile of one search shares, worked out once per search."""

    op: Op
    kd: KernelDomain
    profile: HardwareProfile
    roles: _Roles | None
    kind: str                        # "contraction", "attention" or "tiled"
    unit: str
    rate_dtype: str
    streamed: frozenset[int]         # reductions and attention keys: looped inside a block
    smem: MemoryLevel                # the innermost on-chip level, as the lowering sees it
    smem_capacity: int               # its bytes per SM
    smem_bw: float                   # and bytes per second per SM
    buffers: tuple[BufferSpec, ...]
    matrix: bool                     # the main FLOPs run on a matrix unit
    mma: int                         # the kernel's FLOPs on that unit (0 on CUDA cores)
    sfu: int                         # its special-function evaluations
    other: int                       # and the rest, on CUDA cores
    mma_rate: float                  # per SM, per second
    vec_rate: float
    sfu_rate: float


def _search(op, ks, kd, profile, opts):
    """The best candidate block tile by kernel time (the first of equals), fully evaluated.

    A tile's kernel time is at least its compute time plus its fixed extras (the pipeline's
    steady state is the max of compute and the overlapped links), and both come from the
    block alone, without the outer tiles or the traffic. So the candidates are costed that far
    together, ranked by that bound, and only those whose bound can still beat the best so far
    get their traffic: most contractions are compute bound, so one or two of sixteen tiles
    are lowered.

    Returns (plan, gpu schedule, links, link bandwidths, extras, cost)."""
    pb, candidates = _problem(op, ks, kd, profile, opts)
    tiles = _unique(candidates)
    blocks = _blocks(pb, tiles, fit=len(candidates) > 1)
    ranked = sorted(zip(blocks.bound[blocks.fits].tolist(), np.flatnonzero(blocks.fits).tolist()))
    best = None                      # ((time_s, index), result)
    for key in ranked:
        if best is not None and key >= best[0]:
            break                    # neither this tile nor any later one can win
        result = _costed(pb, *blocks.plan(key[1]))
        if best is None or (result[-1].time_s, key[1]) < best[0]:
            best = ((result[-1].time_s, key[1]), result)
    if best is None:  # no candidate fits: the smallest one, spilling what does not fit
        return _costed(pb, *_blocks(pb, [min(tiles, key=math.prod)], fit=False).plan(0))
    return best[1]


def _costed(pb: _Problem, p: BlockPlan, extras: dict):
    """:func:`_complete` and the kernel's cost under that plan."""
    p, gpu_ks, links, bandwidth, extras = _complete(pb, p, extras)
    cost = _finish(pb.op, gpu_ks, pb.profile, p, links, bandwidth, extras)
    return p, gpu_ks, links, bandwidth, extras, cost


def _problem(op, ks, kd, profile, opts) -> tuple[_Problem, list[tuple[int, ...]]]:
    """The search's shared facts and its candidate block tiles (duplicates included)."""
    roles = _roles(kd)
    contraction = roles is not None and opts.policy
    unit, rate_dtype = _units(op, kd, profile, opts, contraction)
    if contraction and roles.keys:
        candidates = _attention_tiles(kd, roles)
        kind = "attention"
    elif contraction:
        candidates = _gemm_tiles(kd, roles, opts, _itemsize(op, kd, roles))
        kind = "contraction"
    else:
        candidates = [_lowering_block_tile(op, ks, kd, profile)]
        kind = "tiled"
    streamed = set(roles.red + roles.keys) if roles is not None else set()
    streamed |= {d for d, dim in enumerate(kd.dims) if dim.kind is IterKind.REDUCTION}
    m_unit = _unit(profile, unit)
    matrix = m_unit.kind == "matrix"
    # FLOPs of the whole kernel, split between the matrix and the vector unit
    total = _flops(op)
    mma = sum(_flops(s.op) for s in kd.steps
              if get_op_def(s.op.type).category is Category.CONTRACTION) if matrix else 0
    mma = min(mma, total)
    sfu = sum(get_op_def(s.op.type).special_functions * _elements(s.op) for s in kd.steps)
    other = max(0, total - mma - sfu)
    # an epilogue works on the accumulator: f32 for 16-bit contractions
    dtype = kernel_dtype(op)
    if kd.anchor is not None and dtype in ("f16", "bf16"):
        dtype = "f32"
    v_unit, v_dtype = _vector_unit(profile, dtype)
    smem = profile.target.on_chip[0]
    pb = _Problem(op, kd, profile, roles, kind, unit, rate_dtype, frozenset(streamed),
                  smem, profile.level(smem.name).capacity_bytes,
                  profile.level(smem.name).bandwidth_bytes_per_s,
                  _innermost_buffers(op, kd, smem, len(profile.target.on_chip) - 1),
                  matrix, mma, sfu, other,
                  m_unit.rates[rate_dtype] * m_unit.clock_hz if matrix else 0.0,
                  v_unit.rates[v_dtype] * v_unit.clock_hz,
                  SFU_OPS_PER_CYCLE_PER_SM * v_unit.clock_hz)
    return pb, candidates


def _unique(tiles):
    seen, out = set(), []
    for t in tiles:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _innermost_buffers(op, kd, lv: MemoryLevel, li: int) -> tuple[BufferSpec, ...]:
    """The buffers :func:`lower_kernel` gives the innermost level (``li``) of this kernel's
    nest. The outer levels never split a reduction (they keep the streamed dims whole), so the
    epilogue runs at the innermost level and these buffers depend on the block tile alone:
    costing a tile needs them before (and mostly instead of) the whole lowering."""
    inputs, results = level_buffers(op, kd, lv, li, epilogue_level=li)
    return tuple(inputs + results)


def _footprint_elements(maps: Sequence[tuple[AffineMap, Sequence[int]]], tiles: np.ndarray) -> np.ndarray:
    """Elements of :meth:`AffineMap.footprint` of each ``(map, bounds)`` (columns) over every
    row of ``tiles`` (rows: candidates), all maps in one product: their tensor dims stacked,
    each map led by a dim of one element (a map of no dims has one element)."""
    n = tiles.shape[1]
    coeffs, bounds, starts = [], [], []
    for amap, shape in maps:
        starts.append(len(coeffs))
        coeffs.append((0,) * n)
        bounds.append(1)
        coeffs.extend(e.coeffs for e in amap.exprs)
        bounds.extend(shape)
    c = np.abs(np.array(coeffs, dtype=np.int64).reshape(len(coeffs), n))
    boxes = np.minimum((tiles - 1) @ c.T + 1, np.array(bounds, dtype=np.int64))
    return np.multiply.reduceat(boxes, starts, axis=1)


@attrs.frozen(eq=False)
class _Blocks:
    """Candidate block tiles of one search costed together, one array entry per tile: the
    numbers of :class:`BlockPlan` except the outer tiles, whether the tile fits a block, and
    its bound on the kernel time (compute plus the fixed extras)."""

    pb: _Problem
    tile: np.ndarray                 # [candidate, dim]
    grid: np.ndarray                 # [candidate, dim]
    blocks: np.ndarray
    threads: np.ndarray
    registers: np.ndarray
    smem_bits: np.ndarray
    spills: np.ndarray               # the accumulator spills to shared memory
    blocks_per_sm: np.ndarray
    limiter: np.ndarray              # index into _LIMITERS
    waves: np.ndarray
    tail: np.ndarray
    occupancy: np.ndarray
    mma_flops: np.ndarray
    other_flops: np.ndarray
    block_s: np.ndarray
    compute_s: np.ndarray
    smem_read_s: np.ndarray
    stage: np.ndarray
    out_tile_bits: np.ndarray
    prologue_s: np.ndarray
    drain_s: np.ndarray
    fits: np.ndarray
    bound: np.ndarray

    def plan(self, i: int) -> tuple[BlockPlan, dict]:
        """Candidate ``i``'s plan (without its outer tiles) and the kernel's extra times."""
        pb, c = self.pb, self.pb.profile.compute
        p = BlockPlan(pb.kind, pb.unit, pb.rate_dtype, tuple(self.tile[i].tolist()), (),
                      tuple(self.grid[i].tolist()), int(self.blocks[i]), int(self.threads[i]),
                      int(self.registers[i]), self._bytes(self.smem_bits[i], self.spills[i]),
                      int(self.blocks_per_sm[i]), _LIMITERS[self.limiter[i]],
                      int(self.waves[i]), float(self.tail[i]), float(self.occupancy[i]),
                      float(self.mma_flops[i]), int(self.other_flops[i]), pb.sfu,
                      float(self.block_s[i]), float(self.compute_s[i]),
                      float(self.smem_read_s[i]), int(self.stage[i]),
                      Fraction(int(self.out_tile_bits[i]), 8))
        extras = {"launch_s": c.launch_overhead_s, "prologue_s": float(self.prologue_s[i]),
                  "drain_s": float(self.drain_s[i])}
        return p, extras

    @staticmethod
    def _bytes(bits: np.integer, fractional: bool) -> int | Fraction:
        """Bytes as the scalar model had them: a Fraction where a spilled accumulator of a
        sub-byte dtype may leave half a byte."""
        return Fraction(int(bits), 8) if fractional else int(bits) // 8


#: What can bound the blocks resident on an SM, in the order ties go to.
_LIMITERS = ("max blocks", "shared memory", "registers", "warps", "threads")


def _blocks(pb: _Problem, tiles: Sequence[tuple[int, ...]], fit: bool) -> _Blocks:
    """Cost the block tiles ``tiles`` (clipped to the extents) as far as the block goes;
    ``fit``: a tile that does not fit a block is marked so (policy candidates), else what
    does not fit registers spills to shared memory."""
    op, kd, roles, kind, matrix = pb.op, pb.kd, pb.roles, pb.kind, pb.matrix
    c: GpuCompute = pb.profile.compute
    extents = np.array(kd.extents, dtype=np.int64)
    n = len(extents)
    tile = np.minimum(np.array(tiles, dtype=np.int64).reshape(len(tiles), n), extents)
    grid_dims = [d for d in range(n) if d not in pb.streamed]
    grid = np.ones_like(tile)
    grid[:, grid_dims] = -(-extents[grid_dims] // tile[:, grid_dims])
    blocks = grid.prod(axis=1)
    result = op.results[0].type
    # the buffers' elements, then the result tile's
    elements = _footprint_elements([(b.amap, b.bounds) for b in pb.buffers]
                                   + [(kd.result_map, result.shape)], tile)
    zero = np.zeros(len(tile), dtype=np.int64)
    # per buffer (columns): its bits per element, and per role its weight in each sum
    roles_of = [b.role for b in pb.buffers]
    weights = np.array([[b.dtype.bits for b in pb.buffers],
                        [b.copies if b.role == IN else 0 for b in pb.buffers],
                        [b.role == IN for b in pb.buffers],
                        [b.role == ACC for b in pb.buffers],
                        [b.role == OUT for b in pb.buffers]], dtype=np.int64).reshape(5, -1)
    bits = elements[:, :-1] * weights[0]
    # sizes of whole buffers in bytes; the rest in bits, exact for sub-byte dtypes (int4)
    nbytes = -(-bits // 8)                                    # DType.nbytes of each buffer
    in_bytes, stage = nbytes @ weights[1], nbytes @ weights[2]
    acc_bits, out_bits = bits @ weights[3], bits @ weights[4]
    out_tile_bits = elements[:, -1] * result.dtype.bits
    results = [i for i, role in enumerate(roles_of) if role in (ACC, OUT)]
    out_elems = elements[:, results].max(axis=1) if results else zero + 1
    max_warps = c.max_threads_per_block // c.warp_size
    warps = np.maximum(1, np.minimum(max_warps, -(-out_elems // OUTPUTS_PER_WARP[
        "matrix" if matrix else "vector"])))
    if kind == "attention":     # scores and the f32 output accumulator
        data_bits = acc_bits + out_bits // result.dtype.bits * 32
    elif kd.anchor is not None:
        data_bits = acc_bits
    else:
        data_bits = out_bits
    # double the warps until the accumulator fits the registers (or the block is full)
    base = BASE_REGISTERS + (FRAGMENT_REGISTERS if matrix else 0)
    while True:
        threads = warps * c.warp_size
        registers = base + -(-data_bits // (32 * threads))   # 32-bit registers
        grow = (registers > c.max_registers_per_thread) & (threads < c.max_threads_per_block)
        if not grow.any():
            break
        warps = np.where(grow, np.minimum(max_warps, warps * 2), warps)
    over = registers > c.max_registers_per_thread
    if fit:                     # a policy candidate fits a block or is dropped
        spills = zero != 0
        fits = ~(over | (in_bytes > c.max_shared_memory_per_block_bytes)
                 | (registers * threads > c.registers_per_sm))
    else:                       # what does not fit the registers lives in shared memory
        spills, fits = over, zero == 0
        registers = np.where(over, c.max_registers_per_thread, registers)
    smem_bits = in_bytes * 8 + np.where(spills, data_bits, 0)
    limits = np.stack([zero + c.max_blocks_per_sm,
                       np.where(smem_bits > 0, pb.smem_capacity * 8 // np.maximum(smem_bits, 1),
                                c.max_blocks_per_sm),
                       c.registers_per_sm // (registers * threads),
                       c.max_warps_per_sm // warps,
                       c.max_threads_per_sm // threads], axis=1)
    limiter = limits.argmin(axis=1)
    r = np.maximum(1, limits.min(axis=1))

    # compute: FLOPs of one full block, split between the matrix and the vector unit
    other = zero + pb.other
    if kind == "attention":     # online softmax: rescale the output once per further chunk
        keys = list(roles.keys)
        chunks = (-(-extents[keys] // tile[:, keys])).prod(axis=1)
        other += (chunks - 1) * (math.prod(kd.extents[d] for d in range(n)
                                           if d not in roles.keys and d not in roles.red)
                                 + 4 * math.prod(kd.extents[d]
                                                 for d in roles.m + roles.n + roles.batch))
    frac = np.ones(len(tile))
    for d in grid_dims:             # in order: the same rounding as one tile at a time
        frac = frac * (tile[:, d] / extents[d])
    pad = (_mma_padding(tile, roles, pb.rate_dtype) if matrix and roles is not None
           else np.ones(len(tile)))
    block_mma, block_other, block_sfu = pb.mma * frac * pad, other * frac, pb.sfu * frac
    if not matrix:
        block_other = block_other + block_mma
        block_mma = np.zeros(len(tile))
    smem_read = _smem_reads(kd, roles, tile, warps, matrix, op) if kind == "contraction" else zero
    smem_read_s = smem_read / pb.smem_bw
    # a block's MMA, CUDA-core and special-function work serialise (FlashAttention-2 style;
    # overlapping them across warps, as FlashAttention-3 does, is not modelled)
    block_s = (np.maximum(block_mma / pb.mma_rate if pb.mma_rate else 0.0, smem_read_s)
               + block_other / pb.vec_rate + block_sfu / pb.sfu_rate)

    def rounds(k: np.ndarray) -> np.ndarray:  # k blocks sharing one SM
        share = np.minimum(1.0, k * warps / SUB_PARTITIONS)
        return np.divide(k * block_s, share, out=np.zeros(len(k)), where=k > 0)

    sms = c.sm_count
    busiest = -(-blocks // sms)
    compute_s = (busiest // r) * rounds(r) + rounds(busiest % r)
    waves = -(-blocks // (sms * r))
    tail = blocks / (waves * sms * r)

    # the pipeline's fill: a block waits one memory latency and its first stage before it
    # computes, and its last result tile drains after; both through the SM's own port
    prologue_s = (pb.profile.main_memory.latency_cycles / pb.profile.clock_hz
                  + stage / pb.smem_bw)
    drain_s = out_tile_bits / 8 / pb.smem_bw
    bound = compute_s + (c.launch_overhead_s + prologue_s + drain_s)
    return _Blocks(pb, tile, grid, blocks, threads, registers, smem_bits, spills, r, limiter,
                   waves, tail, r * warps / c.max_warps_per_sm, pb.mma * pad, other, block_s,
                   compute_s, smem_read_s, stage, out_tile_bits, prologue_s, drain_s, fits,
                   bound)


def _complete(pb: _Problem, p: BlockPlan, extras: dict):
    """(plan, gpu schedule, links, link bandwidths, extras) for one block plan: the outer
    tiles around it, the lowered nest and its traffic."""
    op, kd, profile = pb.op, pb.kd, pb.profile
    levels = list(reversed(profile.target.on_chip))       # outermost first, SMEM last
    smem = levels[-1].name
    tile = p.block_tile
    outer = _outer_tiles(op, kd, profile, tile, pb.streamed)
    order = _order(kd, outer[0][1] if outer else tuple(range(len(tile))), pb.streamed, pb.roles)
    tilings = [LevelTiling(lv.name, t, o) for lv, (t, o) in zip(levels[:-1], outer)]
    tilings.append(LevelTiling(smem, tile, order))
    gpu_ks = lower_kernel(op, kd, tilings, levels)
    links = kernel_traffic(op, gpu_ks, profile, kd)
    bandwidth = _link_bandwidth(profile, p.blocks, p.blocks_per_sm, p.stage_bytes)
    p = attrs.evolve(p, outer_tiles=tuple(t for t, _ in outer))
    return p, gpu_ks, links, bandwidth, extras


def _link_bandwidth(profile, blocks: int, r: int, stage: int) -> dict:
    """Each link's bandwidth for this kernel: the profile's, unless the resident blocks cannot
    keep enough bytes in flight to cover the latency of the level they load from (Little's
    law: bandwidth <= bytes in flight / latency, one stage per resident block), or, into
    shared memory, the busy SMs' own ports cannot take it."""
    sms = profile.compute.sm_count
    smem = profile.on_chip[0]
    in_flight = min(blocks, sms * r) * stage
    out = {}
    for outer_name, inner_name in kernel_links(profile):
        latency = profile.level(outer_name).latency_cycles / profile.clock_hz
        cap = in_flight / latency if latency else math.inf
        if inner_name == smem.name:
            cap = min(cap, min(sms, blocks) * smem.bandwidth_bytes_per_s)
        out[(outer_name, inner_name)] = min(profile.bandwidth(outer_name, inner_name), cap)
    return out


# --------------------------------------------------------------------------- untiled kernels
def _stream_plan(op, profile) -> BlockPlan:
    c: GpuCompute = profile.compute
    elements = sum(math.prod(int(d) for d in r.type.shape) for r in op.results
                   if r.type.is_static) or 1
    itemsize = max((r.type.dtype.itemsize for r in op.results), default=4)
    per_block = STREAM_THREADS * STREAM_ELEMENTS
    blocks = -(-elements // per_block)
    warps = STREAM_THREADS // c.warp_size
    r = max(1, min(c.max_blocks_per_sm, c.max_warps_per_sm // warps,
                   c.registers_per_sm // (BASE_REGISTERS * STREAM_THREADS)))
    v_unit, v_dtype = _vector_unit(profile, kernel_dtype(op))
    block_s = _flops(op) / blocks / (v_unit.rates[v_dtype] * v_unit.clock_hz)
    busiest = -(-blocks // c.sm_count)
    rounds = lambda k: k * block_s / min(1.0, k * warps / SUB_PARTITIONS) if k else 0.0
    waves = -(-blocks // (c.sm_count * r))
    stage = per_block * itemsize
    return BlockPlan("stream", v_unit.name, v_dtype, (per_block,), (), (blocks,), blocks,
                     STREAM_THREADS, BASE_REGISTERS, 0, r, "warps", waves,
                     blocks / (waves * c.sm_count * r), r * warps / c.max_warps_per_sm, 0.0,
                     float(_flops(op)), 0.0, block_s,
                     (busiest // r) * rounds(r) + rounds(busiest % r), 0.0, stage, stage)


def _stream_cost(op, ks, profile, reason) -> KernelCost:
    p = _stream_plan(op, profile)
    c = profile.compute
    links = kernel_traffic(op, ks, profile, None)
    bandwidth = _link_bandwidth(profile, p.blocks, p.blocks_per_sm, p.stage_bytes)
    port = profile.on_chip[0].bandwidth_bytes_per_s
    extras = {"launch_s": c.launch_overhead_s,
              "prologue_s": profile.main_memory.latency_cycles / profile.clock_hz
              + p.stage_bytes / port,
              "drain_s": p.out_tile_bytes / port}
    cost = _finish(op, ks, profile, p, links, bandwidth, extras)
    return attrs.evolve(cost, notes=f"{p.describe()}; untiled: {reason}")


# --------------------------------------------------------------------------- tile policy
def _roles(kd: KernelDomain) -> _Roles | None:
    """The GEMM view of a kernel whose anchor is a contraction of two operands, else None."""
    if kd.anchor is None:
        return None
    anchor = kd.steps[kd.anchor].op
    if get_op_def(anchor.type).category is not Category.CONTRACTION:
        return None
    red = [d for d, dim in enumerate(kd.dims) if dim.kind is IterKind.REDUCTION]
    split = set(kd.split_reductions()) or set(red)
    uses = [i for i, a in enumerate(kd.accesses)
            if a.map is not None and a.stage == MAIN and _reads(a.map) & split]
    if len(uses) < 2:
        return None
    a, b = uses[:2]
    ra, rb = _reads(kd.accesses[a].map), _reads(kd.accesses[b].map)
    acc = _reads(kd.accumulator_map) if kd.accumulator_map is not None else set()
    par = [d for d in range(len(kd.dims)) if kd.dims[d].kind is not IterKind.REDUCTION]
    m = tuple(d for d in _minor_order(kd.accesses[a].map) if d in par and d in ra - rb)
    n = tuple(d for d in _minor_order(kd.accesses[b].map) if d in par and d in rb - ra)
    batch = tuple(d for d in par if d in ra and d in rb)
    keys = tuple(d for d in red if d in acc)
    anchor_red = tuple(d for d in _minor_order(kd.accesses[a].map) if d in split)
    return _Roles(a, b, m, n, batch, anchor_red, keys)


def _reads(amap) -> set[int]:
    return {i for e in amap.exprs for i, c in enumerate(e.coeffs) if c}


def _minor_order(amap) -> list[int]:
    """The dims a map reads, in the order of the tensor dims (outermost first)."""
    out: list[int] = []
    for e in amap.exprs:
        for i, c in enumerate(e.coeffs):
            if c and i not in out:
                out.append(i)
    return out


def _fill(extents, dims: Sequence[int], size: int, whole) -> dict[int, int]:
    """Tiles of ``dims`` (innermost last) with a combined size of about ``size``, innermost
    first."""
    tile = {}
    left = size
    for d in reversed(dims):
        if d in whole:
            tile[d] = extents[d]
            left = max(1, left // extents[d])
            continue
        tile[d] = max(1, min(extents[d], left))
        left = max(1, left // tile[d])
    return tile


def _batch_tile(kd, roles: _Roles) -> list[int]:
    """The block tile before its GEMM dims are filled: one of each batch dim (unless it is
    whole), every other dim whole."""
    tile = list(kd.extents)
    for d in roles.batch:
        if d not in kd.whole:
            tile[d] = 1
    return tile


def _gemm_tiles(kd, roles: _Roles, opts: GpuOptions, itemsize: int) -> list[tuple[int, ...]]:
    ext = kd.extents
    sizes = [opts.tile] if opts.tile else [(bm, bn, max(1, K_STEP_BYTES // itemsize))
                                            for bm in BLOCK_SIZES for bn in BLOCK_SIZES]
    # the m, n and k dims are disjoint and each fill reads its own size only: fill each
    # distinct size once and combine
    fills = {(dims, size): _fill(ext, dims, size, kd.whole)
             for k, dims in enumerate((roles.m, roles.n, roles.red))
             for size in {s[k] for s in sizes}}
    base = _batch_tile(kd, roles)
    out = []
    for bm, bn, bk in sizes:
        tile = list(base)
        for part in (fills[roles.m, bm], fills[roles.n, bn], fills[roles.red, bk]):
            for d, t in part.items():
                tile[d] = t
        out.append(tuple(tile))
    return out


def _attention_tiles(kd, roles: _Roles) -> list[tuple[int, ...]]:
    ext = kd.extents
    base = _batch_tile(kd, roles)                  # head dims, values and reductions whole
    out = []
    for bm in ATTENTION_ROWS:
        rows = _fill(ext, roles.m + roles.n, bm, kd.whole)     # the query rows
        for bkv in ATTENTION_CHUNKS:
            tile = list(base)
            for d, t in rows.items():
                tile[d] = t
            for d in roles.keys:                   # streamed: FlashAttention's online softmax
                tile[d] = min(bkv, ext[d])
            out.append(tuple(tile))
    return out


def _lowering_block_tile(op, ks, kd, profile) -> tuple[int, ...]:
    smem = profile.target.on_chip[0].name
    for t in ks.tilings:
        if t.level == smem and len(t.tile) == len(kd.extents):
            return tuple(t.tile)
    from passes.lowering import lower_op
    try:
        lowered = lower_op(op, profile.target)
        return tuple(lowered.tilings[-1].tile)
    except TensorIRError:
        return tuple(1 if d.kind is not IterKind.REDUCTION else d.extent for d in kd.dims)


def _outer_tiles(op, kd, profile, block, streamed) -> list[tuple[tuple[int, ...], tuple]]:
    """Tile and loop order of every on-chip level outside shared memory: the lowering's
    search at that level with the streamed dims (reductions, attention keys) whole, rounded
    up to whole blocks."""
    from passes.tiling import kernel_orders
    levels = list(reversed(profile.target.on_chip))[:-1]
    extents = list(kd.extents)
    n = len(extents)
    out = []
    parent = tuple(extents)
    shapes = tuple(op.operands[a.operand].type.shape if a.map is not None else None
                   for a in kd.accesses)
    sizes = tuple(float(op.operands[a.operand].type.dtype.itemsize) for a in kd.accesses)
    has_epilogue = kd.anchor is not None and any(st.stage == EPILOGUE for st in kd.steps)
    out_size = (float(op.results[0].type.dtype.itemsize) * (2 if has_epilogue else 1),)
    orders = tuple(kernel_orders(n, kd.split_reductions()))
    for lv in levels:
        pinned = {d: parent[d] for d in set(kd.whole) | set(streamed)}
        pinned.update({d: min(parent[d], block[d]) for d in range(n)
                       if block[d] >= parent[d]})
        try:
            choice = _choose(kd.as_iteration_domain(), shapes, tuple(op.results[0].type.shape),
                             sizes, out_size, lv, tuple(sorted(pinned.items())), parent, orders)
            tile, order = choice.tiling.tile, choice.tiling.order
        except TensorIRError:   # not even one block's panels fit: each block streams alone
            tile, order = tuple(min(b, p) for b, p in zip(block, parent)), orders[0]
        tile = tuple(p if d in streamed or d in kd.whole
                     else min(p, -(-max(t, block[d]) // block[d]) * block[d])
                     for d, (t, p) in enumerate(zip(tile, parent)))
        out.append((tile, tuple(order)))
        parent = tile
    return out


@functools.lru_cache(maxsize=4096)
def _choose(domain, shapes, result_shape, sizes, out_size, level, pinned, parent, orders):
    from passes.tiling import choose_tiling
    return choose_tiling(domain, shapes, [result_shape], sizes, out_size, level, dict(pinned),
                         extents=parent, orders=orders, approximate=True)


def _order(kd, outer_order, streamed, roles) -> tuple[int, ...]:
    """The block's loop order: the grid dims as the outer level orders them, then the
    attention keys, then the reductions."""
    keys = set(roles.keys) if roles is not None else set()
    first = [d for d in outer_order if d not in streamed]
    middle = [d for d in outer_order if d in keys]
    last = [d for d in outer_order if d in streamed and d not in keys]
    return tuple(first + middle + last)


# --------------------------------------------------------------------------- compute units
def _unit(profile, name) -> ComputeUnit:
    return next(u for u in profile.units if u.name == name)


def _vector_unit(profile, dtype: str) -> tuple[ComputeUnit, str]:
    """The fastest vector unit running ``dtype`` (else f32, else any unit and dtype)."""
    for want in (dtype, "f32"):
        units = [u for u in profile.units if u.kind == "vector" and u.supports(want)]
        if units:
            return max(units, key=lambda u: u.rates[want] * u.clock_hz), want
    u = profile.units[0]
    return u, next(iter(u.rates))


def _units(op, kd, profile, opts, contraction) -> tuple[str, str]:
    """The unit and dtype of the kernel's main FLOPs: a matrix unit for contractions in a
    dtype it runs (fp32 as tf32 only with ``allow_tf32``), else the vector unit."""
    dtype = kernel_dtype(op)
    if contraction:
        want = "tf32" if dtype == "f32" and opts.allow_tf32 else dtype
        units = [u for u in profile.units if u.kind == "matrix" and u.supports(want)]
        if units:
            best = max(units, key=lambda u: u.rates[want] * u.clock_hz)
            return best.name, want
    u, d = _vector_unit(profile, dtype)
    return u.name, d


def _itemsize(op, kd, roles) -> int:
    return op.operands[kd.accesses[roles.a].operand].type.dtype.itemsize


def _flops(op) -> int:
    f = op_flops(op)
    return int(f) if isinstance(f, int) else 0


def _elements(op) -> int:
    t = op.results[0].type
    return math.prod(int(d) for d in t.shape) if t.is_static else 0


def _mma_padding(tiles: np.ndarray, roles: _Roles, rate_dtype: str) -> np.ndarray:
    """MMA work per useful FLOP of each block tile (rows): padded to the m16 n8 k(32 B)
    instruction."""
    from .profile import DTYPE_BITS
    bits = DTYPE_BITS.get(rate_dtype, 16)
    mma_k = max(1, MMA_K_BYTES * 8 // bits)
    pad = np.ones(len(tiles))
    for dims, q in ((roles.m, MMA_M), (roles.n, MMA_N), (roles.red, mma_k)):
        if not dims:
            continue
        size = tiles[:, list(dims)].prod(axis=1)
        pad = pad * ((-(-size // q) * q) / size)
    return pad


def _smem_reads(kd, roles: _Roles, tiles: np.ndarray, warps: np.ndarray, matrix: bool,
                op) -> np.ndarray:
    """Bytes a block reads from shared memory into registers, per block tile (rows): each warp
    its A and B slices (a 64x64 warp tile on tensor cores, 32x32 on CUDA cores) for the whole
    reduction."""
    wm, wn = WARP_TILE["matrix" if matrix else "vector"]
    bm = tiles[:, list(roles.m)].prod(axis=1) if roles.m else 1
    bn = tiles[:, list(roles.n)].prod(axis=1) if roles.n else 1
    extents = kd.extents
    k = math.prod(extents[d] for d in roles.red) if roles.red else 1
    bits = op.operands[kd.accesses[roles.a].operand].type.dtype.bits
    return warps * (np.minimum(wm, bm) + np.minimum(wn, bn)) * k * bits / 8


__all__ = ["BlockPlan", "GpuOptions", "kernel_cost", "op_cost", "options",
           "plan"]
