"""``simulate(graph, profile) -> Report`` and ``compare(graph, profiles) -> Comparison``.

``simulate`` lowers the graph for the profile if it is not lowered for it yet (the default
graph pipeline, then ``lower{target=...}`` and ``allocate``, on a copy), then asks the
profile's backend (``cpu``, ``kpu`` or ``gpu``) for each kernel's cost and collects them in a
:class:`~backends.report.Report`. Backends read the schedule; they never rewrite the graph.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

import attrs

from tensorir.errors import TensorIRError
from tensorir.ir import Graph
from tensorir.kernel import kernel_domain_or_reason
from tensorir.structure import kernel_key
from tensorir.table import binary_bytes, format_table, si

from .cost import KernelCost
from .profile import HardwareProfile, load_profile
from .report import Report, _time

BACKENDS = {"cpu": "backends.cpu", "kpu": "backends.kpu", "gpu": "backends.gpu"}


def lower_for(graph: Graph, profile: HardwareProfile, pipeline: str = "default") -> Graph:
    """``graph`` lowered and allocated for ``profile`` (a copy; the graph itself if it already
    is). The graph passes of ``pipeline`` run first unless the graph is already lowered."""
    from passes import PassManager
    from passes.allocation import AllocatePass
    from passes.lowering import LowerPass
    s = graph.schedule
    if s is not None and s.target == profile.target and s.arena is not None:
        return graph
    g = graph.copy()
    if s is None and pipeline:
        PassManager(pipeline, verify=False).run(g)
    LowerPass(target=profile.target)(g)
    AllocatePass()(g)
    return g


def backend_for(profile: HardwareProfile):
    try:
        return importlib.import_module(BACKENDS[profile.kind])
    except KeyError:
        raise TensorIRError(f"{profile.name}: no backend for kind {profile.kind!r}") from None


def simulate(graph: Graph, profile: HardwareProfile | str, *, pipeline: str = "default",
             model: str | None = None, **options: Any) -> Report:
    """Simulate ``graph`` on ``profile`` (a HardwareProfile, a preset name or a file).

    ``options`` go to the profile's backend (``dataflow="ws"`` or ``mode="scalesim"`` for the
    KPU, ``allow_tf32=True`` for the GPU, ``exact=True`` for the CPU's cache replay)."""
    from passes.allocation import occupancy_rows
    profile = load_profile(profile)
    lowered = lower_for(graph, profile, pipeline)
    backend = backend_for(profile)
    schedule = lowered.schedule
    producers = {op.results[0].name: op for op in lowered.ops if op.results}
    costs: list[KernelCost] = []
    for ks in schedule.kernels:
        op = producers[ks.result]
        kd = None if ks.untiled else kernel_domain_or_reason(op)
        costs.append(_kernel_cost(backend, op, ks, None if isinstance(kd, str) else kd, profile,
                                  options))
    occupancy = tuple(occupancy_rows(schedule))
    peaks: dict[str, int] = {}
    for row in occupancy:
        peaks[row["level"]] = max(peaks.get(row["level"], 0), row["bytes"])
    return Report(model or graph.name, profile.name, profile.kind, profile.clock_hz,
                  tuple(costs), tuple(lv.name for lv in profile.levels), occupancy, peaks,
                  {lv.name: lv.capacity_bytes for lv in profile.levels})


#: Kernel costs by :func:`tensorir.structure.kernel_key`, profile and options: a model's
#: repeated blocks (BERT's layers, ResNet's bottlenecks) are costed once. The key holds the
#: content, not the objects, so it is valid across graphs; bounded, oldest dropped first.
_COSTS: dict[tuple, KernelCost] = {}
_COSTS_LIMIT = 8192


def _kernel_cost(backend, op, ks, kd, profile: HardwareProfile,
                 options: dict[str, Any]) -> KernelCost:
    # a backend whose costs read settings besides their arguments (the GPU's options context)
    # names them in cost_context()
    context = backend.cost_context() if hasattr(backend, "cost_context") else None
    try:
        key = (backend.__name__, kernel_key(op, kd, ks), profile, tuple(sorted(options.items())),
               context)
        hash(key)
    except TypeError:      # an option or attribute with no hashable form: no memo
        return backend.kernel_cost(op, ks, kd, profile, **options)
    found = _COSTS.get(key)
    if found is None:
        found = _COSTS[key] = backend.kernel_cost(op, ks, kd, profile, **options)
        if len(_COSTS) > _COSTS_LIMIT:
            _COSTS.pop(next(iter(_COSTS)))
    # under this kernel's name, with mappings of its own
    return attrs.evolve(found, name=ks.result, links=dict(found.links),
                        link_s=dict(found.link_s), breakdown=dict(found.breakdown))


@attrs.frozen
class Comparison:
    """Reports of one graph on several profiles, side by side."""

    reports: tuple[Report, ...]

    def rows(self) -> list[dict[str, Any]]:
        return [{"profile": r.profile, "kind": r.kind, "latency_s": r.latency_s,
                 "throughput_per_s": r.throughput, "energy_j": r.energy_j,
                 "achieved_flops": r.achieved_flops,
                 "peak_dram_bytes": r.peak_bytes.get(r.levels[-1], 0), "bound": r.bound}
                for r in self.reports]

    def table(self) -> str:
        rows = [[r["profile"], r["kind"], _time(r["latency_s"]),
                 f"{r['throughput_per_s']:.1f}", f"{r['energy_j'] * 1e3:.2f}",
                 si(r["achieved_flops"], "FLOP/s"), binary_bytes(r["peak_dram_bytes"]),
                 r["bound"]] for r in self.rows()]
        return format_table(["profile", "kind", "latency", "inf/s", "energy mJ", "achieved",
                             "peak DRAM", "bound"], rows, align="llrrrrrl")

    def kernel_table(self, top: int = 15) -> str:
        """The slowest kernels (by their worst time over the profiles), time per profile."""
        names = {}
        for r in self.reports:
            for k in r.kernels:
                names[k.name] = max(names.get(k.name, 0.0), k.time_s)
        chosen = sorted(names, key=lambda n: -names[n])[:top]
        by = [{k.name: k for k in r.kernels} for r in self.reports]
        rows = []
        for n in chosen:
            op = next(b[n].op_type for b in by if n in b)
            rows.append([n[-32:], op] + [
                f"{_time(b[n].time_s)} {b[n].bound}" if n in b else "-" for b in by])
        return format_table(["kernel", "op"] + [r.profile for r in self.reports], rows,
                            align="ll" + "r" * len(self.reports))

    def to_markdown(self) -> str:
        head = self.rows()
        md_rows = [[r["profile"], r["kind"], _time(r["latency_s"]), f"{r['throughput_per_s']:.1f}",
                    f"{r['energy_j'] * 1e3:.2f}", si(r["achieved_flops"], "FLOP/s"),
                    binary_bytes(r["peak_dram_bytes"]), r["bound"]] for r in head]
        return format_table(["profile", "kind", "latency", "inf/s", "energy mJ", "achieved",
                             "peak DRAM", "bound"], md_rows, align="llrrrrrl", markdown=True)


def compare(graph: Graph, profiles: Sequence[HardwareProfile | str], *,
            pipeline: str = "default", model: str | None = None, jobs: int = 1) -> Comparison:
    """One report per profile for the same graph (each lowered for its profile).

    ``jobs > 1`` simulates the profiles in that many worker processes (forked, so they share
    the graph without copying it; where processes cannot be forked it runs in this one). The
    reports are the same as with ``jobs=1``, in the order of ``profiles``."""
    from passes import PassManager
    base = graph
    if graph.schedule is None and pipeline:
        base = graph.copy()
        PassManager(pipeline, verify=False).run(base)
    name = model or graph.name
    if jobs > 1 and len(profiles) > 1 and _can_fork():
        return Comparison(_in_workers(base, list(profiles), name, jobs))
    return Comparison(tuple(simulate(base, p, pipeline="", model=name) for p in profiles))


def _can_fork() -> bool:
    import multiprocessing
    return "fork" in multiprocessing.get_all_start_methods()


#: what the forked workers of ``_in_workers`` simulate (inherited, never pickled)
_WORK: tuple[Graph, str] | None = None


def _in_workers(base: Graph, profiles: list, name: str, jobs: int) -> tuple[Report, ...]:
    import concurrent.futures
    import multiprocessing
    global _WORK
    # the kernel domains depend on the graph alone: composed here once, the workers inherit
    # them instead of each composing its own
    for op in base.ops:
        kernel_domain_or_reason(op)
    _WORK = (base, name)
    try:
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(profiles)),
                                                    mp_context=context) as pool:
            return tuple(pool.map(_simulate_one, profiles))
    finally:
        _WORK = None


def _simulate_one(profile: HardwareProfile | str) -> Report:
    graph, name = _WORK
    return simulate(graph, profile, pipeline="", model=name)
