"""The kpu backend: a systolic array fed through three scratchpads by DMA engines, block movers
and streamers.

    time  = pipeline fill + max(array, DMA, block movers, streamers)   (all levels double buffered)
    array = sum over L1 tiles t of kpu_cycles(M_t, N_t, K_t)          (a contraction's anchor)
          + (FLOPs - 2 * MACs) / (rows * cols * ops_per_pe)           (everything else, as vector
                                                                        lanes)

**Compute.** A kernel whose anchor (``docs/scheduling.md``) is a contraction in the registry
(MatMul, Gemm, Conv) runs it on the array as one GEMM per innermost (L1) tile. The anchor's
loop dims give the GEMM axes from its two operands' maps: parallel dims only the first operand
reads are ``M`` (output pixels, rows), those only the second reads are ``N`` (output channels,
columns), reductions are ``K``, and parallel dims both read (conv groups, attention heads) are
``G``, independent GEMMs run one after another. A tile's GEMM is the product of its L1 tile
extents along each axis; tiles with the same extents are grouped (full tiles and edge tiles, a
few groups per kernel) and each group costs ``count * G * kpu_cycles(M, N, K)``
(:func:`backends.systolic.kpu_cycles`: folds overlapped, the profile's dataflow). The rest of
the kernel's FLOPs (bias, BatchNorm, activations of the epilogue; and every non-contraction
kernel: elementwise, pooling, normalization, softmax) run on the array's PEs as
``rows * cols`` vector lanes at ``ops_per_pe_per_cycle`` FLOPs each per cycle, the array's
peak: an *assumption*, since a PE is a MAC unit and this credits it with any operation at the
MAC rate; such kernels are bound by their traffic anyway.

**Data movement.** Bytes per link come from the schedule (:func:`backends.cost.kernel_traffic`)
and move at the link's engines: ``count x bandwidth`` of the DMA engines (DRAM <-> L3), the
block movers (L3 <-> L2) and the streamers (L2 <-> L1). Double-buffered scratchpads overlap
every transfer with compute (:func:`backends.cost.finish`).

**Cycle breakdown** (``KernelCost.breakdown``, cycles; the five parts sum to ``total_cycles``):
``compute_cycles`` (the array streaming: ``folds x T`` per GEMM, plus the vector work),
``streamer_wait_cycles``, ``block_mover_wait_cycles``, ``dma_wait_cycles`` (how far each
engine's transfers reach past the compute and the engines inside it: the streamers past the
array, the block movers past both, the DMA past all three) and ``stall_cycles`` (the array's
fill, drain and reload between folds, and the pipeline's first loads and last store, which
nothing overlaps). Beside them: ``total_cycles``; ``array_cycles``, what the PEs are busy
(the GEMMs with their fill and drain, and the vector work); ``array_utilisation``,
``MACs / (rows * cols * GEMM cycles)``, how well the GEMMs fill the array (0 without one).

**SCALE-Sim mode** (``mode="scalesim"``): a contraction's anchor is one GEMM over the whole
kernel, as SCALE-Sim maps a layer (a conv's ``M = ofmap pixels``, ``N = filters``,
``K = window``), at :func:`backends.systolic.scalesim_cycles`: folds one after another, padded
to the whole array. Its ``array_cycles`` is SCALE-Sim's stall-free busy count ``F * L``
(SCALE-Sim prints ``F * L - 1``); the memory side is the KPU's, as in the default mode.
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

import attrs

from tensorir.errors import ProfileError
from tensorir.ir import Graph, Op
from tensorir.kernel import KernelDomain, kernel_domain_or_reason
from tensorir.ops.domain import IterKind
from tensorir.ops.registry import Category, get_op_def, memo_per_op, op_context, op_flops
from tensorir.schedule import KernelSchedule, TileSizes, nested_tile_sizes

from .cost import (KernelCost, finish, innermost_tiles, kernel_links, kernel_traffic,
                   link_overlaps)
from .profile import HardwareProfile, KpuCompute, load_profile
from .systolic import SystolicResult, kpu_cycles, scalesim_cycles

MODES = ("kpu", "scalesim")
SHORT = {"output-stationary": "os", "weight-stationary": "ws", "input-stationary": "is"}
LONG = {v: k for k, v in SHORT.items()}
WAITS = ("dma", "block_mover", "streamer")
#: the parts of ``breakdown`` that sum to ``total_cycles``
PARTS = ("compute_cycles", "dma_wait_cycles", "block_mover_wait_cycles", "streamer_wait_cycles",
         "stall_cycles")


# --------------------------------------------------------------------------- the GEMM of a kernel
@attrs.frozen
class GemmAxes:
    """The kernel dims the anchor contraction lays along each GEMM axis: ``m`` (parallel, read
    by the anchor's first operand only), ``n`` (parallel, its second operand only), ``k`` (its
    reductions), ``g`` (parallel, read by both: independent GEMMs) and ``other`` (kernel dims
    the anchor does not iterate; whole, one tile)."""

    m: tuple[int, ...]
    n: tuple[int, ...]
    k: tuple[int, ...]
    g: tuple[int, ...]
    other: tuple[int, ...]


def gemm_axes(kd: KernelDomain) -> GemmAxes | str:
    """The GEMM axes of ``kd``'s anchor, or why it has none (not a contraction)."""
    if kd.anchor is None:
        return "no anchor (nothing accumulates)"
    step = kd.steps[kd.anchor]
    opdef = get_op_def(step.op.type)
    if opdef.category is not Category.CONTRACTION:
        return f"its anchor {step.op.type} is a {opdef.category.value}, not a contraction"
    found = _operand_reads(step.op)
    if isinstance(found, str):
        return found
    reads, reductions = found
    axis: dict[int, str] = {}
    for j, (reduction, expr) in enumerate(zip(reductions, step.loops)):
        if reduction:
            name = "k"
        elif j in reads[0] and j not in reads[1]:
            name = "m"
        elif j in reads[1] and j not in reads[0]:
            name = "n"
        else:
            name = "g"
        for d, c in enumerate(expr.coeffs):
            if c:
                axis.setdefault(d, name)
    groups = {a: tuple(d for d in range(len(kd.dims)) if axis.get(d) == a) for a in "mnkg"}
    other = tuple(d for d in range(len(kd.dims)) if d not in axis)
    return GemmAxes(groups["m"], groups["n"], groups["k"], groups["g"], other)


@memo_per_op
def _operand_reads(op: Op) -> tuple[tuple[frozenset[int], frozenset[int]], tuple[bool, ...]] | str:
    """The loop dims of a contraction's domain that its first and its second operand read, and
    which loop dims are reductions (or why it has no affine maps for two operands). Per op
    object: the kernel domains of a graph's copies (one per target) share their body ops."""
    dom = get_op_def(op.type).domain(op_context(op))
    if dom is None or len(dom.inputs) < 2 or dom.inputs[0] is None or dom.inputs[1] is None:
        return f"its anchor {op.type} has no affine maps for two operands"
    reads = tuple(frozenset(i for e in dom.inputs[j].exprs for i, c in enumerate(e.coeffs) if c)
                  for j in (0, 1))
    return reads, tuple(loop.kind is IterKind.REDUCTION for loop in dom.dims)


@attrs.frozen
class GemmGroup:
    """``count`` tiles that are each ``g`` GEMMs of ``m x n x k`` on the array (``result``:
    one of them)."""

    count: int
    m: int
    n: int
    k: int
    g: int
    result: SystolicResult

    @property
    def cycles(self) -> int:
        return self.count * self.g * self.result.cycles

    @property
    def stream_cycles(self) -> int:
        """Cycles the array streams operands: ``folds x T`` per GEMM."""
        return self.count * self.g * self.result.folds * self.result.mapping.t

    @property
    def macs(self) -> int:
        return self.count * self.g * self.m * self.n * self.k

    def describe(self) -> str:
        g = f"{self.g} x " if self.g > 1 else ""
        return f"{self.count} x {g}{self.m}x{self.n}x{self.k} ({self.result.cycles} cycles)"


def _product_distribution(dists: Iterable[TileSizes]) -> dict[int, int]:
    """The distribution of a product of independent tile sizes (size -> how many tiles)."""
    out = {1: 1}
    for dist in dists:
        nxt: dict[int, int] = {}
        for a, ca in out.items():
            for b, cb in dist:
                nxt[a * b] = nxt.get(a * b, 0) + ca * cb
        out = nxt
    return out


def tile_size_counts(ks: KernelSchedule, extents: Sequence[int]) -> list[TileSizes]:
    """Per kernel dim, how many innermost tiles have each size (nested edge tiles included)."""
    return [nested_tile_sizes(e, tuple(t.tile[d] for t in ks.tilings))
            for d, e in enumerate(extents)]


def _gemm_shapes(per_dim: Sequence[TileSizes], axes: GemmAxes) -> list[tuple[int, int, int, int, int]]:
    """``(count, M, N, K, G)`` of every distinct tile GEMM, in closed form from each dim's tile
    sizes (:func:`tile_size_counts`): per axis, the distribution of their product."""
    dist = {a: _product_distribution(per_dim[d] for d in getattr(axes, a)) for a in "mnkg"}
    repeat = 1
    for d in axes.other:
        repeat *= sum(c for _, c in per_dim[d])
    out = []
    for m, cm in dist["m"].items():
        for n, cn in dist["n"].items():
            for k, ck in dist["k"].items():
                for g, cg in dist["g"].items():
                    out.append((cm * cn * ck * cg * repeat, m, n, k, g))
    return sorted(out, key=lambda t: (-t[0], t[1:]))


def whole_gemm(kd: KernelDomain, axes: GemmAxes) -> tuple[int, int, int, int]:
    """``(M, N, K, G)`` of the whole kernel (SCALE-Sim's view of a layer)."""
    ext = kd.extents

    def prod(dims):
        out = 1
        for d in dims:
            out *= ext[d]
        return out

    return prod(axes.m), prod(axes.n), prod(axes.k), prod(axes.g)


@functools.lru_cache(maxsize=65536)
def _array(m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
           mode: str) -> SystolicResult:
    if mode == "scalesim":
        return scalesim_cycles(m, n, k, rows, cols, dataflow)
    return kpu_cycles(m, n, k, rows, cols, dataflow)


# --------------------------------------------------------------------------- the model
@attrs.frozen
class KpuKernel:
    """The KPU's account of one kernel: the shared :class:`~backends.cost.KernelCost` (its
    ``breakdown`` in cycles) and what the array ran."""

    cost: KernelCost
    dataflow: str                         # "os", "ws" or "is"
    mode: str                             # "kpu" or "scalesim"
    gemms: tuple[GemmGroup, ...]          # the anchor's GEMMs (empty: no contraction)
    vector_flops: float                   # FLOPs run as vector lanes
    why_vector: str = ""                  # why the kernel has no GEMM ("" when it has one)

    @property
    def breakdown(self) -> dict[str, float]:
        return dict(self.cost.breakdown)

    @property
    def total_cycles(self) -> float:
        return self.cost.breakdown["total_cycles"]


def resolve_dataflow(profile: HardwareProfile, dataflow: str | None = None,
                     mode: str = "kpu") -> str:
    """The short dataflow name (``os``, ``ws``, ``is``): the option, else the profile's
    default. In KPU mode the array must support it (``compute.dataflows``); SCALE-Sim mode
    runs any of the three."""
    compute = _kpu_compute(profile)
    if mode not in MODES:
        raise ProfileError(f"{profile.name}: kpu mode: expected one of {', '.join(MODES)}, "
                           f"found {mode!r}")
    flow = compute.dataflow if dataflow is None else dataflow
    short = SHORT.get(flow, flow)
    if short not in LONG:
        raise ProfileError(f"{profile.name}: dataflow: expected one of "
                           f"{', '.join(list(SHORT) + list(LONG))}, found {flow!r}")
    if mode == "kpu" and LONG[short] not in compute.dataflows:
        raise ProfileError(f"{profile.name}: dataflow {LONG[short]!r} is not one the array "
                           f"runs (compute.dataflows: {', '.join(compute.dataflows)})")
    return short


def _kpu_compute(profile: HardwareProfile) -> KpuCompute:
    if not isinstance(profile.compute, KpuCompute):
        raise ProfileError(f"{profile.name}: the kpu backend needs a kpu profile, not a "
                           f"{profile.kind} one")
    return profile.compute


def kernel_model(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                 profile: HardwareProfile, *, dataflow: str | None = None,
                 mode: str = "kpu") -> KpuKernel:
    """The KPU's cost of one kernel with what the array ran (see the module docstring)."""
    compute = _kpu_compute(profile)
    flow = resolve_dataflow(profile, dataflow, mode)
    rows, cols = compute.rows, compute.cols
    clock = profile.clock_hz
    counted = op_flops(op)
    flops = int(counted) if isinstance(counted, int) else 0
    if kd is None and not ks.untiled:
        found = kernel_domain_or_reason(op)
        kd = None if isinstance(found, str) else found
    axes = gemm_axes(kd) if kd is not None else "no kernel domain"
    tiled = kd is not None and not ks.untiled and bool(ks.tilings)
    per_dim = tile_size_counts(ks, kd.extents) if tiled else []
    gemms: list[GemmGroup] = []
    if not isinstance(axes, str):
        if mode == "scalesim" or not tiled:
            shapes = [(1, *whole_gemm(kd, axes))]
        else:
            shapes = _gemm_shapes(per_dim, axes)
        gemms = [GemmGroup(c, m, n, k, g, _array(m, n, k, rows, cols, flow, mode))
                 for c, m, n, k, g in shapes]
    macs = sum(gr.macs for gr in gemms)
    vector_flops = max(0.0, flops - 2.0 * macs)
    vector_cycles = vector_flops / (compute.pe_count * compute.ops_per_pe_per_cycle)
    gemm_cycles = sum(gr.cycles for gr in gemms)
    stream_cycles = sum(gr.stream_cycles for gr in gemms)
    links = kernel_traffic(op, ks, profile, kd)
    bandwidth = {}
    for link in links:
        mover = profile.mover(*link)
        if mover is not None:   # a mover moves at most what its outer level sustains
            bandwidth[link] = (mover.total_bandwidth_bytes_per_s
                               * profile.level(link[0]).sustained_fraction)
    compute_s = (gemm_cycles + vector_cycles) / clock
    notes = [f"{flow}" + (" scalesim" if mode == "scalesim" else "")]
    if gemms:
        notes.append("GEMMs " + ", ".join(gr.describe() for gr in gemms[:3])
                     + (f" +{len(gemms) - 3} more" if len(gemms) > 3 else ""))
    elif isinstance(axes, str):
        notes.append(f"vector lanes: {axes}")
    cost = finish(op, ks, profile, compute_s, links, link_bandwidth=bandwidth,
                  notes="; ".join(notes), n_steps=innermost_tiles(ks, kd))
    breakdown = _breakdown(cost, profile, stream_cycles + vector_cycles,
                           gemm_cycles - stream_cycles)
    breakdown["array_cycles"] = float(gemm_cycles + vector_cycles)
    breakdown["array_utilisation"] = (macs / (compute.pe_count * gemm_cycles)
                                      if gemm_cycles else 0.0)
    cost = attrs.evolve(cost, breakdown=breakdown)
    return KpuKernel(cost, flow, mode, tuple(gemms), vector_flops,
                     axes if isinstance(axes, str) else "")


def _breakdown(cost: KernelCost, profile: HardwareProfile, compute_cycles: float,
               array_stall_cycles: float) -> dict[str, float]:
    """Cycles per part, summing to the kernel's total (the cascade in the module docstring)."""
    clock = profile.clock_hz
    busy = cost.compute_s * clock
    waits = {kind: 0.0 for kind in WAITS}
    reach = busy
    for link in reversed(kernel_links(profile)):          # innermost link first
        if link not in cost.link_s:
            continue
        mover = profile.mover(*link)
        kind = mover.kind if mover is not None else f"{link[0]}_{link[1]}"
        t = cost.link_s[link] * clock
        if link_overlaps(profile, link):
            waits[kind] = waits.get(kind, 0.0) + max(0.0, t - reach)
            reach = max(reach, t)
        else:                                              # serialised with everything
            waits[kind] = waits.get(kind, 0.0) + t
    out = {"compute_cycles": compute_cycles}
    out.update({f"{kind}_wait_cycles": w for kind, w in waits.items()})
    out["stall_cycles"] = array_stall_cycles + cost.fill_s * clock
    out["total_cycles"] = cost.time_s * clock
    return out


def kernel_cost(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                profile: HardwareProfile, *, dataflow: str | None = None,
                mode: str = "kpu") -> KernelCost:
    """What ``backends.simulate`` asks of every backend: one kernel's
    :class:`~backends.cost.KernelCost` (see :func:`kernel_model`)."""
    return kernel_model(op, ks, kd, profile, dataflow=dataflow, mode=mode).cost


def with_dataflow(profile: HardwareProfile, dataflow: str) -> HardwareProfile:
    """``profile`` whose array runs ``dataflow`` by default (it must be one it supports)."""
    short = resolve_dataflow(profile, dataflow)
    return attrs.evolve(profile, compute=attrs.evolve(profile.compute, dataflow=LONG[short]))


def kernel_models(lowered: Graph, profile: HardwareProfile | str, *,
                  dataflow: str | None = None, mode: str = "kpu") -> list[KpuKernel]:
    """:func:`kernel_model` of every kernel of a graph lowered for ``profile``, in order."""
    profile = load_profile(profile)
    if lowered.schedule is None:
        raise ProfileError(f"graph {lowered.name!r} is not lowered (backends.simulate.lower_for "
                           f"lowers it for a profile)")
    producers = {op.results[0].name: op for op in lowered.ops if op.results}
    out = []
    for ks in lowered.schedule.kernels:
        op = producers[ks.result]
        kd = None if ks.untiled else kernel_domain_or_reason(op)
        out.append(kernel_model(op, ks, None if isinstance(kd, str) else kd, profile,
                                dataflow=dataflow, mode=mode))
    return out


def simulate(graph: Graph, profile: HardwareProfile | str, *, dataflow: str | None = None,
             mode: str = "kpu", pipeline: str = "default", model: str | None = None):
    """:func:`backends.simulate` on a kpu profile with the KPU's options: ``dataflow``
    (``os``/``ws``/``is`` or the profile's names) and ``mode`` (``"kpu"`` or ``"scalesim"``).
    Errors of the lowering (a kernel that fits no scratchpad: ``PassError``) pass through."""
    from .simulate import simulate as simulate_graph
    profile = load_profile(profile)
    resolve_dataflow(profile, dataflow, mode)    # a bad option fails before any lowering
    return simulate_graph(graph, profile, pipeline=pipeline, model=model or graph.name,
                          dataflow=dataflow, mode=mode)


__all__ = ["GemmAxes", "GemmGroup", "KpuKernel", "LONG", "MODES", "PARTS", "SHORT",
           "gemm_axes", "kernel_cost", "kernel_model", "kernel_models", "resolve_dataflow", "simulate",
           "whole_gemm", "with_dataflow"]
