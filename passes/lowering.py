"""Tiling and lowering: every kernel of a graph becomes an explicit loop nest for one target.

``lower`` (and the ``lower`` pass) picks, for each op, its kernel domain
(:mod:`tensorir.kernel`), a tiling per on-chip level of the target
(:func:`passes.tiling.choose_kernel_tiling`) and generates the loop nest
(:func:`tensorir.schedule.lower_kernel`); the graph's ``schedule`` holds the result. Ops with
no kernel domain (data movement such as Reshape or Concat, shape ops) are recorded as untiled,
with the reason, and run whole from main memory.
"""

from __future__ import annotations

from typing import Mapping

import attrs

from tensorir.errors import PassError, TensorIRError
from tensorir.ir import Graph, Op
from tensorir.kernel import kernel_domain_or_reason
from tensorir.ops.registry import Category, get_op_def
from tensorir.schedule import KernelSchedule, Schedule, lower_kernel
from tensorir.structure import domain_key, op_key
from tensorir.target import Target, resolve_target

from .base import Pass, PassResult, register_pass
from .tiling import choose_kernel_tiling

def lower_op(op: Op, target: Target, fixed: Mapping[int, int] | None = None) -> KernelSchedule:
    """The schedule of one op for ``target``. A fused kernel must fit every level, caches
    included: one that does not is better run as its body's kernels (a cache would stream a
    whole FFN weight matrix per row), and ``PassError`` here makes the pass unfuse it.

    Kernels of the same structure (:mod:`tensorir.structure`: a model's repeated blocks) are
    tiled and lowered once per target; the others get that schedule under their own names."""
    result = op.results[0].name
    kd = kernel_domain_or_reason(op)
    if isinstance(kd, str):
        return KernelSchedule(result, op.type, untiled=kd)
    key = (op_key(op), domain_key(kd), target, tuple(sorted(fixed.items())) if fixed else None)
    found = _LOWERED.get(key)
    if found is None:
        found = _LOWERED[key] = _lower_template(op, kd, target, fixed)
        if len(_LOWERED) > _LOWERED_LIMIT:
            _LOWERED.pop(next(iter(_LOWERED)))
    if isinstance(found, str):
        raise PassError(f"kernel %{result} ({op.type}, domain {kd.format()}) does not fit "
                        f"target {target.name!r}: {found}", "lower")
    return found.renamed(result, _value_names(op, reverse=True))


#: Schedules by kernel structure and target, their values named ``%operandI`` (or why the
#: kernel does not fit); content-keyed, so valid across graphs; bounded, oldest dropped first.
_LOWERED: dict[tuple, KernelSchedule | str] = {}
_LOWERED_LIMIT = 8192


def _lower_template(op: Op, kd, target: Target, fixed: Mapping[int, int] | None
                    ) -> KernelSchedule | str:
    levels = list(reversed(target.on_chip))  # outermost on-chip level first
    types = [None if v is None else v.type for v in op.operands]
    try:
        tilings = choose_kernel_tiling(kd, types, op.results[0].type, levels, fixed,
                                       strict=get_op_def(op.type).category is Category.FUSED)
    except TensorIRError as exc:
        return str(exc)
    return lower_kernel(op, kd, tilings, levels).renamed("", _value_names(op))


def _value_names(op: Op, reverse: bool = False) -> dict[str, str]:
    """``%name`` of each operand and the result -> ``%operandI`` / ``%result`` (or back)."""
    names = {f"%{v.name}": f"%operand{i}" for i, v in enumerate(op.operands) if v is not None}
    names[f"%{op.results[0].name}"] = "%result"
    return {v: k for k, v in names.items()} if reverse else names


def lower(graph: Graph, target: Target | str, *,
          fixed: Mapping[str, Mapping[int, int]] | None = None) -> Graph:
    """A copy of ``graph`` whose ``schedule`` lowers every op for ``target`` (a Target, a
    profile path or a preset name). ``fixed`` maps a kernel's result name to the tile sizes
    the user chose for its dims (dim index -> size)."""
    out = graph.copy()
    LowerPass(target=target, fixed=fixed)(out)
    return out


@register_pass
class LowerPass(Pass):
    name = "lower"
    description = "tile every kernel for a target's memory levels and lower it to a loop nest"
    preserves = frozenset({"types"})

    @attrs.frozen
    class Options:
        target: object = "kpu-16x16"
        fixed: object = None

    def run(self, graph: Graph) -> PassResult:
        target = resolve_target(self.options.target)
        fixed = self.options.fixed or {}
        counts = {"tiled": 0, "untiled": 0, "unfused": 0}
        lowered: dict[str, KernelSchedule] = {}
        work = list(graph.ops)
        while work:
            op = work.pop(0)
            try:
                ks = lower_op(op, target, fixed.get(op.results[0].name))
            except PassError:
                if get_op_def(op.type).category is not Category.FUSED:
                    raise
                # the fused kernel's working set does not fit on chip (an FFN whose hidden
                # layer is whole): run its body's ops as separate kernels instead
                work[:0] = graph.inline(op)
                counts["unfused"] += 1
                continue
            counts["untiled" if ks.untiled else "tiled"] += 1
            lowered[ks.result] = ks
        kernels = tuple(lowered[op.results[0].name] for op in graph.ops)
        graph.schedule = Schedule(target, kernels)
        return PassResult(graph, True, counts)
