"""Allocation: where every buffer of a lowered program lives, and how full each level gets.

- **DRAM arena** for the values between kernels: :func:`tensorir.arena.plan_arena` (liveness
  over the kernel order, in-place reuse, greedy by size / best fit, the smaller kept).
- **Scratchpads** inside each kernel: every buffer of a kernel is live for the whole kernel, so
  a level's buffers are packed one after another, each aligned to the level's line size and
  taking both of its copies when the level is double buffered. A kernel whose buffers do not
  fit a scratchpad is an error naming the kernel, the level and both sizes (tiling chose tiles
  that fit, so this fires only for hand-edited schedules). Caches need no offsets.
- **Occupancy over time**: per step of the kernel order and per level, the bytes in use: the
  arena's live bytes for main memory, the kernel's buffers for each on-chip level.
  :func:`occupancy_rows` gives the table; ``to_csv`` / ``to_json`` write it.
"""

from __future__ import annotations

import csv
import io
import json

import attrs

from tensorir.arena import plan_arena
from tensorir.errors import PassError
from tensorir.ir import Graph
from tensorir.schedule import KernelSchedule, Schedule
from tensorir.target import Managed, Target

from .base import Pass, PassResult, register_pass


def _scratchpad_offsets(ks: KernelSchedule, target: Target) -> dict[str, int]:
    """The offset of every buffer of ``ks`` in a scratchpad level, by buffer name."""
    offsets: dict[str, int] = {}
    used: dict[str, int] = {}
    levels = {lv.name: lv for lv in target.levels}
    for b in ks.buffers:
        level = levels.get(b.level) or target.level(b.level)  # unknown: its error
        if level.managed is not Managed.SCRATCHPAD:
            continue
        line = level.line_bytes
        start = -(-used.get(b.level, 0) // line) * line
        offsets[b.name] = start
        used[b.level] = start + b.nbytes
        if used[b.level] > level.capacity_bytes:
            need = sum(x.nbytes for x in ks.buffers if x.level == b.level)
            raise PassError(f"kernel %{ks.result} ({ks.op_type}): its buffers need {need} "
                            f"bytes of {b.level}, which holds {level.capacity_bytes}",
                            "allocate")
    return offsets


def _with_scratchpads(kernels: tuple[KernelSchedule, ...], target: Target
                      ) -> tuple[KernelSchedule, ...]:
    """Every kernel with an offset for each buffer in a scratchpad level (caches only: the
    kernel as it is), placing each buffers tuple once: the
    kernels lowered from one template (a model's repeated blocks) share it, and their
    offsets depend on nothing else (the ids stay valid: ``kernels`` holds them all)."""
    placed: dict[int, dict[str, int]] = {}
    out = []
    for ks in kernels:
        offsets = placed.get(id(ks.buffers))
        if offsets is None:
            offsets = placed[id(ks.buffers)] = _scratchpad_offsets(ks, target)
        out.append(ks.with_offsets(offsets) if offsets else ks)
    return tuple(out)


OCCUPANCY_COLUMNS = ("step", "kernel", "level", "bytes", "capacity")


def occupancy_rows(schedule: Schedule) -> list[dict]:
    """Bytes in use per step (kernel) and level; main memory from the arena plan."""
    rows = []
    arena = schedule.arena
    dram = schedule.target.main_memory
    live = arena.occupancy().bytes_live if arena is not None else None
    for step, ks in enumerate(schedule.kernels):
        for level in schedule.target.on_chip:
            used = sum(b.nbytes for b in ks.buffers if b.level == level.name)
            rows.append({"step": step, "kernel": ks.result, "level": level.name,
                         "bytes": used, "capacity": level.capacity_bytes})
        if live is not None:
            rows.append({"step": step, "kernel": ks.result, "level": dram.name,
                         "bytes": int(live[step]) if step < len(live) else 0,
                         "capacity": dram.capacity_bytes})
    return rows


def occupancy_csv(schedule: Schedule) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=OCCUPANCY_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(occupancy_rows(schedule))
    return out.getvalue()


def occupancy_json(schedule: Schedule) -> str:
    peaks = {}
    for r in occupancy_rows(schedule):
        peaks[r["level"]] = max(peaks.get(r["level"], 0), r["bytes"])
    return json.dumps({"target": schedule.target.name, "peak_bytes": peaks,
                       "steps": occupancy_rows(schedule)}, indent=1)


@register_pass
class AllocatePass(Pass):
    name = "allocate"
    description = "place kernel buffers in scratchpads and values in a DRAM arena"
    preserves = frozenset({"types"})

    @attrs.frozen
    class Options:
        in_place: bool = True
        order: str = "graph"   # or "memory": a memory-aware op order (lowers the bound itself)

    def requires(self, graph: Graph) -> None:
        if graph.schedule is None:
            raise PassError("allocate needs a lowered graph: run the lower pass first",
                            self.name)

    def run(self, graph: Graph) -> PassResult:
        s: Schedule = graph.schedule
        if self.options.order not in ("graph", "memory"):
            raise PassError(f"allocate: order must be 'graph' or 'memory', got "
                            f"{self.options.order!r}", self.name)
        kernels = _with_scratchpads(s.kernels, s.target)
        arena = plan_arena(graph, None if self.options.order == "graph" else "memory",
                           in_place=self.options.in_place)
        if self.options.order == "memory":
            # the kernels run in the arena's order
            by_result = {ks.result: ks for ks in kernels}
            kernels = tuple(by_result[op.results[0].name] for op in arena.order)
        graph.schedule = attrs.evolve(s, kernels=kernels, arena=arena)
        return PassResult(graph, True, {"arena_bytes": arena.peak,
                                        "buffers": sum(len(k.buffers) for k in kernels)})
