"""Executing lowered kernels: the interpreter runs each kernel's loop nest over NumPy views.

:class:`ScheduleInterpreter` is the plain :class:`~tensorir.interpreter.Interpreter` with one
method overridden: ``run_op`` runs a scheduled op's loop nest (loads copy tile views from the
next outer level into the buffer's array, computes run the kernel body on the innermost tiles
with :func:`tensorir.tile_eval.evaluate_tile`, stores drain tiles outwards) instead of the
op's whole-tensor evaluation. Comparing its outputs with the plain interpreter's proves that
tiling and lowering kept the program's meaning.

It also counts the elements every load and store moves, per memory level pair, measured from
the views it copied: the traffic check of the tests compares these counts with the closed
form of :func:`tensorir.schedule.statement_traffic`.

>>> import numpy as np
>>> from frontends.python import GraphBuilder
>>> from tensorir.target import Target, MemoryLevel
>>> from passes.lowering import lower
>>> b = GraphBuilder("mm")
>>> x = b.input("x", (64, 32))
>>> w = b.constant(np.ones((32, 48), np.float32), "w")
>>> g = b.build(b.matmul(x, w))
>>> target = Target("tiny", (MemoryLevel("L1", 4096), MemoryLevel("DRAM", 1 << 30)))
>>> lowered = lower(g, target)
>>> feed = {"x": np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)}
>>> got = ScheduleInterpreter(lowered).run(feed)
>>> want = feed["x"] @ np.ones((32, 48), np.float32)
>>> bool(np.allclose(list(got.values())[0], want, rtol=1e-5, atol=1e-5))
True
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from .errors import InterpreterError
from .interpreter import Interpreter
from .ir import Graph, Op
from .kernel import EPILOGUE, KernelDomain, kernel_domain
from .ops.domain import AffineMap
from .ops.registry import op_domain
from .schedule import (ACC, ALL, Compute, Epilogue, Init, KernelSchedule, Load, Loop, Store)
from .tile_eval import clip_box, evaluate_tile, operand_box

Box = tuple[tuple[int, int], ...]
_IDENTITY = {"add": 0, "max": -np.inf, "min": np.inf}


def map_box(amap: AffineMap, ctx: Sequence[tuple[int, int]], shape: Sequence[int]) -> Box:
    """The box of tensor elements ``amap`` reaches over ``ctx``, clipped to the tensor."""
    return clip_box(operand_box(amap, ctx), shape)[0]


def _sub(box: Box, origin: Box) -> tuple[slice, ...]:
    return tuple(slice(b[0] - o[0], b[1] - o[0]) for b, o in zip(box, origin))


class _Tile:
    __slots__ = ("data", "origin")

    def __init__(self, data: np.ndarray, origin: Box) -> None:
        self.data = data
        self.origin = origin


class KernelRun:
    """One execution of a kernel's nest; ``moved`` counts elements per (statement index)."""

    def __init__(self, op: Op, kd: KernelDomain, ks: KernelSchedule,
                 args: list[np.ndarray | None]) -> None:
        self.op, self.kd, self.ks, self.args = op, kd, ks, args
        self.buffers: dict[str, _Tile] = {}
        self.index = {id(s): i for i, (s, _) in enumerate(ks.statements())}
        self.moved: Counter = Counter()
        self.levels = {t.level: i for i, t in enumerate(ks.tilings)}
        self.result_shape = tuple(op.results[0].type.shape)
        self.result = np.empty(self.result_shape, dtype=op.results[0].type.dtype.numpy)
        anchor = kd.steps[kd.anchor].op.results[0] if kd.anchor is not None else None
        self.acc_shape = tuple(anchor.type.shape) if anchor is not None else None
        self.split = set(kd.split_reductions())
        self.domains = [op_domain(step.op) for step in kd.steps]
        # each step's loop dims as one map over the kernel dims: its loop box per tile
        self.loop_maps = [AffineMap(step.loops) for step in kd.steps]

    def run(self) -> np.ndarray:
        ctx = [(0, e) for e in self.kd.extents]
        self.exec(self.ks.body, ctx)
        return self.result

    # -- statements
    def exec(self, stmts, ctx: list[tuple[int, int]]) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                start, stop = ctx[s.dim]
                for lo in range(start, stop, s.step):
                    ctx[s.dim] = (lo, min(lo + s.step, stop))
                    self.exec(s.body, ctx)
                ctx[s.dim] = (start, stop)
            elif isinstance(s, Load):
                self.load(s, ctx)
            elif isinstance(s, Init):
                buf = self.ks.buffer(s.buffer)
                if buf.role == ACC:
                    box = map_box(self.kd.accumulator_map, ctx, self.acc_shape)
                    fill = _IDENTITY[self.kd.combiner]
                else:
                    box = map_box(self.kd.result_map, ctx, self.result_shape)
                    fill = 0
                data = np.full([b - a for a, b in box], fill, dtype=buf.dtype.numpy)
                self.buffers[s.buffer] = _Tile(data, box)
            elif isinstance(s, Compute):
                self.compute(s, ctx)
            elif isinstance(s, Epilogue):
                level = self.levels[self.ks.buffer(s.buffer).level]
                acc = self.buffers[s.source]
                env = {self.kd.anchor: acc}
                tile = self.evaluate(EPILOGUE, level, ctx, env)
                self.buffers[s.buffer] = tile
            elif isinstance(s, Store):
                self.store(s)

    def load(self, s: Load, ctx) -> None:
        buf = self.ks.buffer(s.buffer)
        access = self.kd.accesses[buf.access]
        full = self.args[access.operand]
        box = map_box(access.map, ctx, full.shape)
        if s.source.startswith("%"):
            data = full[tuple(slice(a, b) for a, b in box)]
        else:
            src = self.buffers[s.source]
            data = src.data[_sub(box, src.origin)]
        self.buffers[s.buffer] = _Tile(np.array(data, copy=True), box)
        self.moved[self.index[id(s)]] += data.size

    def store(self, s: Store) -> None:
        src = self.buffers[s.buffer]
        if s.target.startswith("%"):
            region = tuple(slice(a, b) for a, b in src.origin)
            self.result[region] = src.data.astype(self.result.dtype, copy=False)
        else:
            dst = self.buffers[s.target]
            view = _sub(src.origin, dst.origin)
            if s.accumulate:
                _combine(self.kd.combiner, dst.data, view, src.data)
            else:
                dst.data[view] = src.data
        self.moved[self.index[id(s)]] += src.data.size

    def compute(self, s: Compute, ctx) -> None:
        innermost = len(self.ks.tilings) - 1
        if s.stage == ALL:
            self.buffers[s.buffer] = self.evaluate(ALL, innermost, ctx, {})
            return
        env: dict[int, _Tile] = {}
        first = all(ctx[d][0] == 0 for d in self.split)
        part = self.evaluate("main", innermost, ctx, env, first=first)
        acc = self.buffers[s.buffer]
        _combine(self.kd.combiner, acc.data, _sub(part.origin, acc.origin), part.data)

    def evaluate(self, stage: str, level: int, ctx, env: dict[int, _Tile],
                 first: bool = True) -> _Tile:
        """Run the body steps of ``stage`` ("main", "epilogue" or "all") on the tile ``ctx``,
        reading kernel operands from their buffers at ``level``. Returns the tile of the last
        step run (the anchor for "main", the root otherwise)."""
        level_name = self.ks.tilings[level].level
        last = None
        for i, step in enumerate(self.kd.steps):
            if stage != ALL and step.stage != stage or i in env:
                continue
            op = step.op
            dom = self.domains[i]
            loop_box = map_box(self.loop_maps[i], ctx, [int(d.extent) for d in dom.dims])
            operands: list[np.ndarray | None] = []
            for slot, source in enumerate(step.sources):
                v = op.operands[slot]
                if v is None:
                    operands.append(None)
                    continue
                amap = dom.inputs[slot] if slot < len(dom.inputs) else None
                if source is None and amap is not None and v.kind == "const":
                    box = map_box(amap, loop_box, v.type.shape)
                    operands.append(v.evaluation_data()[tuple(slice(a, b) for a, b in box)])
                    continue
                if source is None or amap is None:
                    operands.append(self._whole(op, slot, source))
                    continue
                kind, ref = source
                tile = self.buffers[f"a{ref}.{level_name}"] if kind == "input" else env[ref]
                box = map_box(amap, loop_box, v.type.shape)
                operands.append(tile.data[_sub(box, tile.origin)])
            results = evaluate_tile(op, loop_box, operands, first_reduction_tile=first)
            out_box = map_box(dom.outputs[0], loop_box, op.results[0].type.shape)
            env[i] = last = _Tile(np.asarray(results[0]), out_box)
        if last is None:
            raise InterpreterError(f"kernel %{self.ks.result}: stage {stage} has no ops")
        return last

    def _whole(self, op: Op, slot: int, source) -> np.ndarray:
        v = op.operands[slot]
        if v.kind == "const":
            return v.evaluation_data()
        if source is not None and source[0] == "input":
            return self.args[self.kd.accesses[source[1]].operand]
        raise InterpreterError(f"kernel %{self.ks.result}: operand %{v.name} of {op.type} is "
                               f"read through an opaque map but is computed in the kernel")


def _combine(combiner: str | None, dst: np.ndarray, view, src: np.ndarray) -> None:
    if combiner == "max":
        dst[view] = np.maximum(dst[view], src)
    elif combiner == "min":
        dst[view] = np.minimum(dst[view], src)
    else:
        dst[view] += src


class ScheduleInterpreter(Interpreter):
    """Runs a lowered graph: scheduled kernels run their loop nests, the rest run whole.

    ``traffic`` accumulates, per kernel result name, the elements each load/store moved.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__(graph)
        if graph.schedule is None:
            raise InterpreterError("the graph is not lowered: run passes.lowering.lower first")
        self.traffic: dict[str, Counter] = {}

    def run_op(self, op: Op, args: list[np.ndarray | None]) -> list[np.ndarray]:
        ks = self.graph.schedule.kernel(op.results[0].name) if op.results else None
        if ks is None or ks.untiled:
            return super().run_op(op, args)
        run = KernelRun(op, kernel_domain(op), ks, args)
        out = run.run()
        self.traffic[ks.result] = run.moved
        return [out]
