"""The cost machinery every backend shares: traffic per link from the schedule, a steady-state
pipeline model, energy, and the per-kernel record.

**Traffic.** For a tiled kernel, every ``load`` and ``store`` of its loop nest moves a known
number of elements (:func:`tensorir.schedule.statement_traffic`, closed form: no tile is
walked). A load moves bytes *down* the link between its buffer's level and the next outer one
(main memory for the outermost); a store moves them *up*. An untiled kernel streams its
operands down every link once and its result up once.

**Time.** Per kernel, each resource is busy for ``work / rate``: the compute units for the
kernel's compute time (the backend's model: SIMD lanes, the systolic array, tensor cores), each
link for its bytes over its bandwidth. Where the inner level of a link is double buffered (or is
a cache, which hardware prefetches into while the core computes) the link's transfers overlap
compute; otherwise they serialise with it. The overlapped stages form a pipeline over the
kernel's ``N`` innermost tiles: each tile is loaded, computed and stored, and while one tile
computes the next loads. With per-tile stage times ``t_s = T_s / N``, a pipeline of ``N``
items takes ``sum_s t_s + (N - 1) * max_s t_s``, so

    time = (1 - 1/N) * max(compute, overlapped links) + (1/N) * sum(compute, overlapped links)
           + sum(serialised links)

One tile (an untiled kernel) is fully serial: load, compute, store; many tiles approach the
steady state ``max``. The difference from the steady state is the pipeline's *fill*. The
kernel is *bound* by the largest term. By construction a kernel is never faster than its
roofline, ``max(FLOPs / peak, bytes_l / bandwidth_l)``.

**Energy.** ``MACs x (add + mul pJ of the dtype)`` plus, for every byte over a link, the read
energy of the level it leaves and the write energy of the level it enters (the profile's
``energy_pj_per_byte``, Horowitz 2014 defaults: ``docs/profiles.md``).
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import attrs

from tensorir.ir import Op
from tensorir.kernel import KernelDomain, NotTileable, kernel_domain
from tensorir.ops.registry import op_domain, op_flops
from tensorir.schedule import (KernelSchedule, Load, Store, nested_tile_sizes,
                               statement_traffic)

from .profile import HardwareProfile

Link = tuple[str, str]   # (outer level, inner level)


@attrs.frozen
class LinkBytes:
    down: int = 0   # bytes moved toward the compute units (loads)
    up: int = 0     # bytes moved away (stores)

    @property
    def total(self) -> int:
        return self.down + self.up


@attrs.frozen
class KernelCost:
    """What a backend says about one kernel; every backend fills the same fields."""

    name: str                       # the kernel's result value
    op_type: str
    flops: int
    links: Mapping[Link, LinkBytes]
    compute_s: float                # compute units busy
    link_s: Mapping[Link, float]    # each link busy
    fill_s: float
    time_s: float
    bound: str                      # "compute" or "L2->L1" style link name
    utilisation: float              # achieved FLOPs / peak FLOPs of the dtype
    energy_j: float
    dtype: str = "f32"
    breakdown: Mapping[str, float] = attrs.field(factory=dict)   # backend-specific seconds
    notes: str = ""

    @property
    def bytes_by_level(self) -> dict[str, int]:
        """Bytes read from plus written to each level over this kernel's links."""
        out: dict[str, int] = {}
        for (outer, inner), b in self.links.items():
            out[outer] = out.get(outer, 0) + b.total
            out[inner] = out.get(inner, 0) + b.total
        return out


def link_name(link: Link) -> str:
    return f"{link[0]}->{link[1]}"


def kernel_links(profile: HardwareProfile) -> list[Link]:
    """Links of the profile's hierarchy, outermost first."""
    names = [lv.name for lv in reversed(profile.levels)]
    return list(zip(names, names[1:]))


def kernel_traffic(op: Op, ks: KernelSchedule, profile: HardwareProfile,
                   kd: KernelDomain | None = None) -> dict[Link, LinkBytes]:
    """Bytes over every link for one kernel (see the module docstring)."""
    links = kernel_links(profile)
    down = {link: 0 for link in links}
    up = {link: 0 for link in links}
    if kd is None and not ks.untiled:
        kd = _kd_or_none(op)
    if ks.untiled or kd is None:
        written = sum(r.type.nbytes for r in op.results)
        domain = op_domain(op)
        read = 0
        for j, v in enumerate(op.operands):
            if v is None:
                continue
            opaque = domain is None or j >= len(domain.inputs) or domain.inputs[j] is None
            # an operand read in no affine pattern (a Gather's table) is read where the
            # result needs it: at most as many bytes as the result has
            read += min(v.type.nbytes, written) if opaque else v.type.nbytes
        return {link: LinkBytes(read, written) for link in links}
    outer_of = {t.level: (ks.tilings[i - 1].level if i else profile.main_memory.name)
                for i, t in enumerate(ks.tilings)}
    anchor_shape = (kd.steps[kd.anchor].op.results[0].type.shape if kd.anchor is not None
                    else None)
    counts = _statement_counts(kd, ks, tuple(None if v is None else v.type.shape
                                             for v in op.operands),
                               op.results[0].type.shape, anchor_shape)
    for idx, (stmt, _) in enumerate(ks.statements()):
        if not isinstance(stmt, (Load, Store)):
            continue
        buf = ks.buffer(stmt.buffer)
        link = (outer_of[buf.level], buf.level)
        nbytes = buf.dtype.nbytes(counts[idx])
        if isinstance(stmt, Load):
            down[link] += nbytes
        else:
            up[link] += nbytes
    return {link: LinkBytes(down[link], up[link]) for link in links}


@functools.lru_cache(maxsize=8192)
def _statement_counts(kd, ks, operand_shapes, result_shape, anchor_shape) -> dict[int, int]:
    """Backends ask for one kernel's traffic several times (per link, per model variant)."""
    return statement_traffic(kd, ks, list(operand_shapes), result_shape, anchor_shape)


def _kd_or_none(op: Op) -> KernelDomain | None:
    try:
        return kernel_domain(op)
    except NotTileable:
        return None


def link_overlaps(profile: HardwareProfile, link: Link) -> bool:
    """Transfers over a link overlap compute when its inner level is double buffered or a
    cache (hardware prefetch, out-of-order cores)."""
    inner = profile.level(link[1])
    return inner.double_buffered or inner.is_cache


def innermost_tiles(ks: KernelSchedule, kd: KernelDomain | None) -> int:
    """How many innermost tiles the nest computes (1 for an untiled kernel)."""
    if ks.untiled or kd is None or not ks.tilings:
        return 1
    per_dim = (nested_tile_sizes(e, tuple(t.tile[d] for t in ks.tilings))
               for d, e in enumerate(kd.extents))
    return max(1, math.prod(sum(count for _, count in sizes) for sizes in per_dim))


def pipeline(compute_s: float, link_s: Mapping[Link, float], overlaps: Mapping[Link, bool],
             n_steps: int | None = None) -> tuple[float, str]:
    """Time and what bounds it (see the module docstring): ``n_steps`` tiles through the
    overlapped stages; None: the steady state alone (a backend that models its own start)."""
    stages = {"compute": compute_s}
    stages.update({link_name(k): t for k, t in link_s.items() if overlaps[k]})
    serial = {link_name(k): t for k, t in link_s.items() if not overlaps[k]}
    steady = max(stages.values())
    fill = (sum(stages.values()) - steady) / max(1, n_steps) if n_steps is not None else 0.0
    terms = {**stages, **serial}
    return steady + fill + sum(serial.values()), max(terms, key=terms.get)


def energy_joules(profile: HardwareProfile, flops: float, dtype: str,
                  links: Mapping[Link, LinkBytes]) -> float:
    pj = flops / 2 * profile.energy.mac_pj(dtype)
    for (outer, inner), b in links.items():
        o, i = profile.level(outer), profile.level(inner)
        pj += b.down * (o.read_pj_per_byte + i.write_pj_per_byte)
        pj += b.up * (i.read_pj_per_byte + o.write_pj_per_byte)
    return pj * 1e-12


def kernel_dtype(op: Op) -> str:
    """The dtype a kernel computes in: its first floating operand's (else its result's)."""
    from .profile import dtype_name
    for v in op.operands:
        if v is not None and v.dtype.is_float:
            return dtype_name(v.dtype)
    return dtype_name(op.results[0].dtype)


def finish(op: Op, ks: KernelSchedule, profile: HardwareProfile, compute_s: float,
           links: Mapping[Link, LinkBytes], *, link_bandwidth: Mapping[Link, float] | None = None,
           extra_s: float = 0.0, breakdown: Mapping[str, float] | None = None,
           notes: str = "", n_steps: int | None = None, pipeline_fill: bool = True
           ) -> KernelCost:
    """A KernelCost from a backend's compute time and the kernel's traffic: link times at the
    profile's bandwidths (or the backend's), the pipeline over ``n_steps`` tiles (default: the
    schedule's innermost tiles), the roofline-safe bound, energy. ``fill_s`` of the result is
    the time beyond the steady state; ``pipeline_fill=False`` leaves it out, for a backend that
    models the start of its kernels itself (in ``extra_s``)."""
    counted = op_flops(op)
    flops = int(counted) if isinstance(counted, int) else 0
    dtype = kernel_dtype(op)
    bw = dict(link_bandwidth or {})
    link_s = {link: b.total / bw.get(link, profile.bandwidth(*link)) for link, b in links.items()}
    overlaps = {link: link_overlaps(profile, link) for link in links}
    if not pipeline_fill:
        n_steps = None
    elif n_steps is None:
        n_steps = innermost_tiles(ks, _kd_or_none(op))
    time_s, bound = pipeline(compute_s, link_s, overlaps, n_steps=n_steps)
    steady = max([compute_s] + [t for k, t in link_s.items() if overlaps[k]])
    fill = time_s - steady - sum(t for k, t in link_s.items() if not overlaps[k])
    time_s += extra_s
    peak = _peak(profile, dtype)
    util = flops / (time_s * peak) if time_s > 0 and peak > 0 else 0.0
    return KernelCost(ks.result, op.type, flops, dict(links), compute_s, link_s, fill, time_s,
                      bound, util, energy_joules(profile, flops, dtype, links), dtype,
                      dict(breakdown or {}), notes)


def roofline_seconds(cost: KernelCost, profile: HardwareProfile) -> float:
    """The kernel's roofline: max of FLOPs over the dtype's peak and bytes over bandwidth at
    every link."""
    terms = [cost.flops / _peak(profile, cost.dtype)]
    terms += [b.total / profile.bandwidth(*link) for link, b in cost.links.items()]
    return max(terms)


def _peak(profile: HardwareProfile, dtype: str) -> float:
    """The dtype's peak, or the f32 peak for a dtype no unit runs (bool, integers on a GPU's
    float units): such kernels are costed as f32 work."""
    return profile.peak_flops(dtype) if profile.supports(dtype) else profile.peak_flops("f32")
