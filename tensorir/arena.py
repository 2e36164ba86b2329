"""DRAM arena planning for the values that flow between kernels: liveness, then offsets.

    live(v)  = [step that defines v, last step that reads v]      (steps: indices in an op order)
    minimise peak = max(offset_b + size_b)
    s.t.     [offset_a, offset_a + size_a) and [offset_b, offset_b + size_b) are disjoint
             whenever live(a) and live(b) share a step

Every graph input and op result gets DRAM memory in one arena, except constants (the weights
region, reported apart) and *aliases*: a ``tensorir.view`` (and, by default, the ops that only
reinterpret a buffer: Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference Dropout) uses
its operand's storage and extends its lifetime. Inputs live from step 0, outputs to the last
step. An elementwise op may write its result over an operand that dies at that op (same bytes,
same element layout, not an input or output): the two buffers merge into one *block*.

Offsets (Pisarchyk & Lee 2020, "Efficient Memory Management for Deep Neural Net Inference"):
blocks are visited in an order and each is put at an offset where it overlaps no placed block
whose interval overlaps its own. *greedy-by-size* visits by size (largest first) and takes the
lowest offset that fits; *best-fit* takes the smallest gap that fits (else the top);
*breadth* visits the steps with the most bytes live first (their blocks largest first) and
takes the best fit. :func:`plan_arena` runs them all and keeps the smallest peak (ties: the
first). The *lower bound* is the most bytes live at one step without in-place merging; in-place
merging can take the peak below it.

>>> from tensorir import Graph, TensorType, DType
>>> g = Graph("chain")
>>> x = g.add_input("x", TensorType((256,), DType.float32))          # 1 KiB
>>> y = g.add_op("Exp", [x], result_names=["y"]).result
>>> z = g.add_op("Relu", [y], result_names=["z"]).result             # in place over y
>>> g.set_outputs([g.add_op("Neg", [z], result_names=["w"]).result])  # in place over z
>>> plan = plan_arena(g)
>>> plan.peak, plan.lower_bound, plan.naive, [(p.result, p.operand) for p in plan.in_place]
(2048, 2048, 4096, [('z', 'y'), ('w', 'z')])
>>> verify_arena(plan)
[]
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections import OrderedDict
from typing import Callable, Iterable, Mapping, Sequence

import attrs
import numpy as np

from .errors import GraphError, TensorIRError, UnboundDimError, VerificationError
from .ir import INPUT, Graph, Op, Value
from .ops.registry import Category, get_op_def
from .table import binary_bytes
from .view import TensorView

VIEW_OP = "tensorir.view"
# ops whose result is their first operand's bytes in the same row-major order
RESHAPE_ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity",
                               "Dropout"})
# fused kernels that compute element by element (the fusion pass builds them only from
# pointwise ops)
POINTWISE_KERNELS = frozenset({"fused.elementwise", "fused.gelu"})
DEFAULT_ALIGNMENT = 64


# =============================================================================================
# pure algorithms: intervals and sizes in, offsets out (NumPy int64 arrays, intervals inclusive)


def align_up(sizes: np.ndarray, alignment: int) -> np.ndarray:
    """Each size rounded up to a multiple of ``alignment``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return -(-sizes // alignment) * alignment


def live_bytes(sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               n_steps: int | None = None) -> np.ndarray:
    """Bytes live at every step: the sum of the sizes whose interval contains the step."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if n_steps is None:
        n_steps = int(ends.max()) + 1 if ends.size else 0
    delta = np.zeros(n_steps + 1, dtype=np.int64)
    np.add.at(delta, starts, sizes)
    np.add.at(delta, ends + 1, -sizes)
    return np.cumsum(delta[:-1])


def lower_bound(sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """The most bytes live at one step: no placement of these intervals has a smaller peak."""
    live = live_bytes(sizes, starts, ends)
    return int(live.max()) if live.size else 0


def conflicts(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``m[i, j]``: intervals i and j share a step (a symmetric bool matrix, diagonal true)."""
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    return (s[:, None] <= e[None, :]) & (s[None, :] <= e[:, None])


def size_order(sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Largest first; ties by earlier start, then by index (a stable, deterministic order)."""
    return np.lexsort((np.arange(len(sizes)), starts, -np.asarray(sizes, dtype=np.int64)))


def breadth_order(sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Greedy by breadth: steps by bytes live (most first); at each, its unvisited blocks
    largest first. A block's rank is that of the best-ranked step in its interval (a range
    minimum, from a sparse table)."""
    n = len(sizes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    live = live_bytes(sizes, starts, ends)
    step_rank = np.empty(live.size, dtype=np.int64)
    step_rank[np.lexsort((np.arange(live.size), -live))] = np.arange(live.size)
    table = [step_rank]
    while (1 << len(table)) <= live.size:
        prev, half = table[-1], 1 << (len(table) - 1)
        table.append(np.minimum(prev[:-half], prev[half:]))
    length = ends - starts + 1
    level = np.floor(np.log2(length)).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    for k in np.unique(level):
        sel = level == k
        t = table[k]
        rank[sel] = np.minimum(t[starts[sel]], t[ends[sel] - (1 << k) + 1])
    return np.lexsort((np.arange(n), -sizes, rank))


def place(sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray, order: np.ndarray, *,
          best_fit: bool, alignment: int = DEFAULT_ALIGNMENT,
          conflict: np.ndarray | None = None) -> np.ndarray:
    """Offsets for blocks visited in ``order``: each goes where it overlaps no placed block
    whose interval overlaps its own, at the lowest such offset (first fit) or in the smallest
    gap between conflicting blocks that holds it, else above them all (best fit).

    Sizes are rounded up to ``alignment`` for placement, so every offset is a multiple of it.
    Empty blocks get offset 0.
    """
    aligned = align_up(sizes, alignment)
    if conflict is None:
        conflict = conflicts(starts, ends)
    n = len(aligned)
    offsets = np.zeros(n, dtype=np.int64)
    by_offset = np.zeros(n, dtype=np.int64)   # placed blocks [:k], sorted by offset
    sorted_offsets = np.zeros(n, dtype=np.int64)
    k = 0
    for i in order:
        size = aligned[i]
        if size == 0:
            continue
        placed = by_offset[:k]
        near = placed[conflict[i, placed]]
        off = 0
        if near.size:
            lo = offsets[near]
            top = np.maximum.accumulate(lo + aligned[near])
            below = np.concatenate(([0], top[:-1]))       # highest end below each block
            gaps = lo - below
            fit = np.flatnonzero(gaps >= size)
            if fit.size == 0:
                off = int(top[-1])
            elif best_fit:
                off = int(below[fit[np.argmin(gaps[fit])]])
            else:
                off = int(below[fit[0]])
        offsets[i] = off
        pos = int(np.searchsorted(sorted_offsets[:k], off, side="right"))
        by_offset[pos + 1:k + 1] = by_offset[pos:k]
        sorted_offsets[pos + 1:k + 1] = sorted_offsets[pos:k]
        by_offset[pos], sorted_offsets[pos] = i, off
        k += 1
    return offsets


def peak_of(offsets: np.ndarray, sizes: np.ndarray) -> int:
    """The arena size a placement needs: the highest end of a block."""
    return int((np.asarray(offsets) + np.asarray(sizes)).max()) if len(sizes) else 0


@attrs.frozen
class Strategy:
    """A visiting order and a placement rule (first fit or best fit)."""

    name: str
    order: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    best_fit: bool

    def __call__(self, sizes, starts, ends, alignment: int = DEFAULT_ALIGNMENT,
                 conflict: np.ndarray | None = None) -> np.ndarray:
        return place(sizes, starts, ends, self.order(sizes, starts, ends),
                     best_fit=self.best_fit, alignment=alignment, conflict=conflict)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("greedy-by-size", size_order, best_fit=False),
    Strategy("best-fit", size_order, best_fit=True),
    Strategy("breadth", breadth_order, best_fit=True),
)}


def overlapping_pairs(offsets: np.ndarray, sizes: np.ndarray, starts: np.ndarray,
                      ends: np.ndarray) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, live at a common step with overlapping byte ranges
    (empty blocks overlap nothing); an int64 (k, 2) array."""
    o = np.asarray(offsets, dtype=np.int64)
    z = np.asarray(sizes, dtype=np.int64)
    bytes_overlap = (o[:, None] < (o + z)[None, :]) & (o[None, :] < (o + z)[:, None])
    both = conflicts(starts, ends) & bytes_overlap & (z > 0)[:, None] & (z > 0)[None, :]
    return np.argwhere(np.triu(both, 1))


# =============================================================================================
# liveness of a graph's values


@attrs.frozen
class InPlace:
    """``result`` is written over ``operand`` (the buffer that dies at ``op``, step ``step``)."""

    result: str
    operand: str
    op: str
    step: int


@attrs.frozen(eq=False)
class Liveness:
    """Buffers (values that own storage), their intervals and the blocks in-place merges make.

    ``storage`` maps every arena value to the buffer it lives in (itself, or the base of the
    alias chain it reads); ``intervals`` gives each arena value its own ``(first, last)`` step.
    Per-buffer arrays are indexed like ``buffers``; ``block`` maps a buffer to its block.
    """

    order: tuple[Op, ...]
    buffers: tuple[str, ...]
    sizes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    block: np.ndarray
    storage: Mapping[str, str]
    intervals: Mapping[str, tuple[int, int]]
    in_place: tuple[InPlace, ...]
    weights: int

    @property
    def n_steps(self) -> int:
        return max(len(self.order), 1)

    def blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sizes, starts, ends) per block: merged buffers share one size and span the union
        of their intervals."""
        nb = int(self.block.max()) + 1 if self.block.size else 0
        sizes = np.zeros(nb, dtype=np.int64)
        np.maximum.at(sizes, self.block, self.sizes)
        starts = np.full(nb, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(starts, self.block, self.starts)
        ends = np.full(nb, -1, dtype=np.int64)
        np.maximum.at(ends, self.block, self.ends)
        return sizes, starts, ends


def _is_alias(op: Op, alias_reshapes: bool) -> bool:
    return op.type == VIEW_OP or (alias_reshapes and op.type in RESHAPE_ALIAS_OPS)


def _is_pointwise(op: Op) -> bool:
    """Result element i depends on operand elements at (the broadcast of) index i only."""
    if op.type in POINTWISE_KERNELS:
        return True
    if op.type == "BatchNormalization":  # inference, constant statistics: scale and shift
        return len(op.results) == 1 and all(v is not None and v.is_constant
                                            for v in op.operands[1:])
    return get_op_def(op.type).category is Category.ELEMENTWISE


def _view_keeps_layout(op: Op) -> bool:
    """A tensorir.view that is its whole base in row-major order (offset 0, contiguous)."""
    from .ops.view_op import view_of
    view: TensorView = view_of(op)
    base = op.operands[0]
    return view.offset == 0 and view.is_contiguous and view.numel == base.type.numel


def resolve_order(graph: Graph, order: str | Sequence[Op] | None = None, *,
                  alias_reshapes: bool = True) -> list[Op]:
    """The op order to plan in: None or ``"topo"`` (``graph.ops``), ``"memory"``
    (:func:`memory_order`), or a given sequence of the graph's ops, checked to be a
    topological order of all of them."""
    if order is None or (isinstance(order, str) and order == "topo"):
        return graph.ops
    if isinstance(order, str):
        if order == "memory":
            return memory_order(graph, alias_reshapes=alias_reshapes)
        raise TensorIRError(f"unknown op order {order!r}; expected 'topo', 'memory' or a "
                            f"sequence of ops")
    order = list(order)
    ops = graph.ops
    problems = []
    if len(order) != len(ops) or set(map(id, order)) != set(map(id, ops)):
        problems.append(f"the order has {len(order)} ops but graph {graph.name!r} has "
                        f"{len(ops)}, or they are not the same ops")
    seen: set[int] = set()
    for op in order:
        for v in op.operands:
            if v is not None and v.producer is not None and id(v.producer) not in seen:
                problems.append(f"{op.label} runs before {v.producer.label}, which defines "
                                f"its operand %{v.name}")
        seen.add(id(op))
    if problems:
        raise GraphError(f"not a topological order of graph {graph.name!r}: "
                         + "; ".join(problems[:5]))
    return order


def _nbytes(v: Value) -> int:
    if not v.type.is_static:
        raise UnboundDimError(f"%{v.name}: {v.type} has symbolic dims "
                              f"{sorted(v.type.symbols)}; the arena needs static sizes "
                              f"(bind the graph first, e.g. graph.bind({{'batch': 1}}))")
    return v.type.nbytes


def liveness(graph: Graph, order: str | Sequence[Op] | None = None, *, in_place: bool = True,
             alias_reshapes: bool = True) -> Liveness:
    """Buffers and intervals of ``graph``'s values over ``order`` (see the module docstring).

    Raises UnboundDimError naming the value when a size is symbolic.
    """
    ops = resolve_order(graph, order, alias_reshapes=alias_reshapes)
    last = max(len(ops) - 1, 0)
    storage: dict[Value, Value] = {}      # arena value -> the value owning its bytes
    same_layout: dict[Value, bool] = {}   # its elements are its buffer's, in row-major order
    for v in graph.inputs:
        storage[v], same_layout[v] = v, True
    for op in ops:
        alias = _is_alias(op, alias_reshapes)
        for k, r in enumerate(op.results):
            base = op.operands[0] if op.operands else None
            if alias and k == 0 and base is not None:
                if base not in storage:
                    continue                   # a view of a weight: in the weights region
                storage[r] = storage[base]
                same_layout[r] = same_layout[base] and (op.type != VIEW_OP
                                                        or _view_keeps_layout(op))
            else:
                storage[r], same_layout[r] = r, True
    unbound = [v for v in storage if not v.type.is_static]
    if unbound:
        names = ", ".join(f"%{v.name}: {v.type}" for v in unbound[:5])
        more = f" and {len(unbound) - 5} more" if len(unbound) > 5 else ""
        raise UnboundDimError(f"graph {graph.name!r}: the arena needs static sizes, but "
                              f"{names}{more} have symbolic dims; bind the graph first")

    owners = list(dict.fromkeys(storage.values()))
    index = {b: i for i, b in enumerate(owners)}
    n = len(owners)
    sizes = np.array([_nbytes(b) for b in owners], dtype=np.int64)
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    first: dict[Value, int] = {v: 0 for v in graph.inputs}
    last_use: dict[Value, int] = {}
    for step, op in enumerate(ops):
        for r in op.results:
            if r in storage:
                first[r] = step
        for v in op.operands:
            if v is not None and v in storage:
                last_use[v] = step
    outputs = {v for v in graph.outputs if v in storage}
    for v in outputs:
        last_use[v] = last
    intervals = {v: (first[v], max(first[v], last_use.get(v, first[v]))) for v in storage}
    for i, b in enumerate(owners):
        starts[i] = intervals[b][0]
    for v, (_, e) in intervals.items():
        i = index[storage[v]]
        ends[i] = max(ends[i], e)
    holds_output = np.zeros(n, dtype=bool)
    for v in outputs:
        holds_output[index[storage[v]]] = True

    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    merges: list[InPlace] = []
    if in_place:
        for step, op in enumerate(ops):
            if _is_alias(op, alias_reshapes) or not _is_pointwise(op):
                continue
            taken: set[int] = set()
            for r in op.results:
                ri = index.get(r)
                if ri is None or sizes[ri] == 0:
                    continue
                for v in op.operands:
                    why = _why_not_in_place(v, r, step, storage, same_layout, index, sizes,
                                            ends, holds_output, taken, op)
                    if why is None:
                        bi = index[storage[v]]
                        taken.add(bi)
                        parent[find(ri)] = find(bi)
                        merges.append(InPlace(r.name, storage[v].name, op.label, step))
                        break
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, block = np.unique(roots, return_inverse=True)
    weights = sum(_nbytes(c) for c in graph.constants)
    return Liveness(tuple(ops), tuple(b.name for b in owners), sizes, starts, ends,
                    block.astype(np.int64).reshape(-1),
                    {v.name: storage[v].name for v in storage},
                    {v.name: iv for v, iv in intervals.items()}, tuple(merges), weights)


def _why_not_in_place(v, r, step, storage, same_layout, index, sizes, ends, holds_output,
                      taken, op) -> str | None:
    """Why ``r`` may not be written over operand ``v`` at ``step`` (None: it may)."""
    if v is None or v not in storage:
        return "not an arena value"
    b = storage[v]
    bi = index[b]
    if b.kind == INPUT:
        return "a graph input"
    if holds_output[bi]:
        return "a graph output"
    if ends[bi] != step:
        return "still live after this op"
    if bi in taken:
        return "already written over by another result"
    if sizes[bi] != sizes[index[r]] or v.dtype.bits != r.dtype.bits \
            or v.type.numel != r.type.numel:
        return "a different size"
    # every operand in this buffer must read it in row-major order: result i overwrites
    # element i only after the op has read element i
    for w in op.operands:
        if w is not None and w in storage and storage[w] is b and not same_layout[w]:
            return "read through a strided view"
    return None


# =============================================================================================
# a memory-aware op order


def memory_order(graph: Graph, *, alias_reshapes: bool = True) -> list[Op]:
    """A topological order with a lower bound (most bytes live at one step) no higher than
    ``graph.ops``'s: the best of ``graph.ops`` and two list schedules (:func:`list_schedule`),
    *eager* (the next op of ``graph.ops`` unless a ready op frees more bytes than it
    allocates) and *greedy* (the ready op that frees the most bytes net of what it
    allocates). Ties keep the earlier of that list."""
    candidates = [graph.ops] + [list_schedule(graph, rule, alias_reshapes=alias_reshapes)
                                for rule in ("eager", "greedy")]
    bounds = []
    for order in candidates:
        live = liveness(graph, order, in_place=False, alias_reshapes=alias_reshapes)
        bounds.append(lower_bound(live.sizes, live.starts, live.ends))
    return candidates[int(np.argmin(bounds))]


def list_schedule(graph: Graph, rule: str = "eager", *,
                  alias_reshapes: bool = True) -> list[Op]:
    """A topological order built one ready op at a time. An op's *gain* is the bytes of the
    buffers it reads for the last time (not inputs or outputs) minus the bytes of the buffers
    it makes (aliases make none and free nothing: their buffer frees when its last reader
    runs). ``"greedy"`` runs the ready op of highest gain, ``"eager"`` the first ready op of
    ``graph.ops`` among those of positive gain (or aliases) if any, else the first ready op;
    ties go to the earlier op of ``graph.ops``."""
    if rule not in ("eager", "greedy"):
        raise TensorIRError(f"unknown list-scheduling rule {rule!r}; expected 'eager' or "
                            f"'greedy'")
    ops = graph.ops
    pos = {op: i for i, op in enumerate(ops)}
    owner: dict[Value, Value] = {v: v for v in graph.inputs}
    for op in ops:
        alias = _is_alias(op, alias_reshapes)
        for k, r in enumerate(op.results):
            base = op.operands[0] if op.operands else None
            if alias and k == 0 and base is not None:
                if base in owner:
                    owner[r] = owner[base]
            else:
                owner[r] = r
    size = {b: _nbytes(b) for b in set(owner.values())}
    pinned = {owner[v] for v in graph.outputs if v in owner} | set(graph.inputs)
    reads: dict[Op, set[Value]] = {}
    remaining = dict.fromkeys(size, 0)   # readers of each buffer not yet run (aliases aside)
    users: dict[Op, list[Op]] = {op: [] for op in ops}
    waiting: dict[Op, int] = {}
    for op in ops:
        reads[op] = {owner[v] for v in op.operands if v is not None and v in owner}
        if not _is_alias(op, alias_reshapes):
            for b in reads[op]:
                remaining[b] += 1
        producers = {v.producer for v in op.operands if v is not None and v.producer is not None}
        waiting[op] = len(producers)
        for p in producers:
            users[p].append(op)

    def gain(op: Op) -> int:
        if _is_alias(op, alias_reshapes):
            return 0
        made = sum(size[r] for r in op.results if owner.get(r) is r)
        freed = sum(size[b] for b in reads[op] if remaining[b] == 1 and b not in pinned)
        return freed - made

    ready = {op for op in ops if waiting[op] == 0}
    out: list[Op] = []
    while ready:
        if rule == "greedy":
            op = max(ready, key=lambda o: (gain(o), -pos[o]))
        else:
            freeing = [o for o in ready if _is_alias(o, alias_reshapes) or gain(o) > 0]
            op = min(freeing or ready, key=pos.__getitem__)
        ready.remove(op)
        out.append(op)
        if not _is_alias(op, alias_reshapes):
            for b in reads[op]:
                remaining[b] -= 1
        for u in users[op]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.add(u)
    return out


# =============================================================================================
# the plan


@attrs.frozen
class Allocation:
    """Where one value lives: ``offset`` and ``size`` of its buffer (the value named
    ``buffer``: itself, or the base it aliases), the steps ``[start, end]`` its bytes are kept
    (for a buffer, its whole lifetime, aliases included; for an alias, its own uses) and the
    block of its buffer (buffers merged by in-place writes share one block)."""

    value: str
    offset: int
    size: int
    start: int
    end: int
    buffer: str
    block: int


@attrs.frozen
class Occupancy:
    """Per step: the op, the bytes of blocks live, and the arena's high-water mark so far (the
    highest block end reached at any step up to this one)."""

    ops: tuple[str, ...]
    bytes_live: np.ndarray = attrs.field(eq=False)
    high_water: np.ndarray = attrs.field(eq=False)

    def rows(self) -> list[dict]:
        return [{"step": t, "op": op, "bytes_live": int(b), "arena_high_water": int(h)}
                for t, (op, b, h) in enumerate(zip(self.ops, self.bytes_live, self.high_water))]


OCCUPANCY_COLUMNS = ("step", "op", "bytes_live", "arena_high_water")


@attrs.frozen(eq=False)
class ArenaPlan:
    """An arena layout of a graph's values for one op order (see :func:`plan_arena`).

    ``peak`` is the arena size (bytes); ``naive`` the bytes with no reuse (every buffer its
    own memory); ``lower_bound`` the most bytes live at one step without in-place merging;
    ``merged_bound`` the same over the in-place blocks (the floor for ``peak``);
    ``greedy_by_size`` the baseline, greedy by size without in-place; ``weights`` the bytes of
    the constants, which live in their own region.
    """

    graph_name: str
    order: tuple[Op, ...]
    allocations: Mapping[str, Allocation]
    peak: int
    strategy: str
    strategy_peaks: Mapping[str, int]
    naive: int
    lower_bound: int
    merged_bound: int
    greedy_by_size: int
    weights: int
    alignment: int
    in_place: tuple[InPlace, ...]

    def __getitem__(self, value: str) -> Allocation:
        return self.allocations[value]

    @property
    def n_steps(self) -> int:
        return max(len(self.order), 1)

    def buffers(self) -> list[Allocation]:
        """The allocations of the values that own their bytes (not aliases)."""
        return [a for a in self.allocations.values() if a.buffer == a.value]

    def blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, sizes, starts, ends) per block."""
        bufs = self.buffers()
        nb = max((a.block for a in bufs), default=-1) + 1
        offsets = np.zeros(nb, dtype=np.int64)
        sizes = np.zeros(nb, dtype=np.int64)
        starts = np.full(nb, np.iinfo(np.int64).max, dtype=np.int64)
        ends = np.full(nb, -1, dtype=np.int64)
        for a in bufs:
            offsets[a.block], sizes[a.block] = a.offset, max(sizes[a.block], a.size)
            starts[a.block] = min(starts[a.block], a.start)
            ends[a.block] = max(ends[a.block], a.end)
        return offsets, sizes, starts, ends

    def occupancy(self) -> Occupancy:
        offsets, sizes, starts, ends = self.blocks()
        n = self.n_steps
        live = live_bytes(sizes, starts, ends, n)
        top = np.zeros(n + 1, dtype=np.int64)
        # highest end of a block live at each step, then the running maximum
        for t0, t1, hi in zip(starts, ends, offsets + sizes):
            top[t0:t1 + 1] = np.maximum(top[t0:t1 + 1], hi)
        labels = tuple(op.label for op in self.order) or ("",)
        return Occupancy(labels, live, np.maximum.accumulate(top[:n]))

    def to_csv(self) -> str:
        """The occupancy over time, one row per step (columns :data:`OCCUPANCY_COLUMNS`)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=OCCUPANCY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.occupancy().rows())
        return buf.getvalue()

    def to_json(self) -> str:
        """The plan's totals and the occupancy over time (``steps``: one object per step)."""
        return json.dumps({
            "graph": self.graph_name, "peak": self.peak, "strategy": self.strategy,
            "naive": self.naive, "lower_bound": self.lower_bound,
            "merged_bound": self.merged_bound, "greedy_by_size": self.greedy_by_size,
            "weights": self.weights, "alignment": self.alignment,
            "in_place": len(self.in_place), "steps": self.occupancy().rows()}, indent=1)

    def summary(self) -> str:
        """One line: the peak and the strategy, the bounds and baselines, in-place writes."""
        return (f"arena {self.graph_name!r}: peak {binary_bytes(self.peak)} ({self.strategy}), "
                f"lower bound {binary_bytes(self.lower_bound)}, greedy by size "
                f"{binary_bytes(self.greedy_by_size)}, naive {binary_bytes(self.naive)}, "
                f"{len(self.in_place)} in place; weights {binary_bytes(self.weights)}")


# (strategy, alignment, sizes, starts, ends as bytes) -> offsets (read-only); the oldest
# dropped first. The presets a model is lowered for mostly plan the same arena (only the
# kernels a target unfuses differ), so each placement is computed once for them all.
_PLACEMENTS: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_PLACEMENTS_LIMIT = 256


def _placed(name: str, sizes: np.ndarray, starts: np.ndarray, ends: np.ndarray,
            alignment: int, conflict: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """``STRATEGIES[name]`` on these blocks, memoised by content (a complete key: the
    offsets depend on nothing else); ``conflict`` gives their conflict matrix, which
    strategies of one plan share (asked for only when a placement is computed)."""
    strategy = STRATEGIES[name]
    sizes, starts, ends = (np.asarray(a, dtype=np.int64) for a in (sizes, starts, ends))
    key = (strategy, alignment, sizes.tobytes(), starts.tobytes(), ends.tobytes())
    offsets = _PLACEMENTS.get(key)
    if offsets is not None:
        _PLACEMENTS.move_to_end(key)
        return offsets
    offsets = strategy(sizes, starts, ends, alignment, None if conflict is None else conflict())
    offsets.setflags(write=False)  # shared by every plan that finds it here
    _PLACEMENTS[key] = offsets
    if len(_PLACEMENTS) > _PLACEMENTS_LIMIT:
        _PLACEMENTS.popitem(last=False)
    return offsets


def _best(sizes, starts, ends, names: Iterable[str], alignment: int,
          known: Mapping[str, np.ndarray] | None = None):
    """(name, offsets) of the strategy with the smallest peak (ties: the first), and every
    strategy's peak; ``known`` holds offsets already computed for these blocks."""
    peaks: dict[str, int] = {}
    best = None
    conflict = functools.cache(lambda: conflicts(starts, ends))
    for name in names:
        offsets = (known or {}).get(name)
        if offsets is None:
            offsets = _placed(name, sizes, starts, ends, alignment, conflict)
        peaks[name] = peak_of(offsets, sizes)
        if best is None or peaks[name] < peaks[best[0]]:
            best = (name, offsets)
    return best, peaks


def plan_arena(graph: Graph, order: str | Sequence[Op] | None = None, *,
               alignment: int = DEFAULT_ALIGNMENT, in_place: bool = True,
               alias_reshapes: bool = True,
               strategies: Sequence[str] = tuple(STRATEGIES)) -> ArenaPlan:
    """Plan the DRAM arena of ``graph``'s values over ``order`` (None: ``graph.ops``;
    ``"memory"``: :func:`memory_order`; or a topological order of its ops).

    Runs ``strategies`` on the blocks (buffers merged by in-place writes when ``in_place``)
    and keeps the smallest peak (ties: the first). The result is never above the baseline,
    greedy by size without in-place: should the merged blocks place worse, the plan is the
    baseline (and ``in_place`` is empty). ``alias_reshapes``: Reshape, Flatten, Squeeze,
    Unsqueeze, Identity and Dropout use their operand's bytes (``tensorir.view`` always does).
    Raises UnboundDimError naming the values whose sizes are symbolic.
    """
    if alignment < 1:
        raise TensorIRError(f"alignment must be a positive number of bytes, got {alignment}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise TensorIRError(f"unknown arena strategies {unknown}; known: "
                            f"{', '.join(STRATEGIES)}")
    ops = resolve_order(graph, order, alias_reshapes=alias_reshapes)
    live = liveness(graph, ops, in_place=in_place, alias_reshapes=alias_reshapes)
    sizes, starts, ends = live.sizes, live.starts, live.ends
    base_offsets = _placed("greedy-by-size", sizes, starts, ends, alignment)
    greedy = peak_of(base_offsets, sizes)
    bound = lower_bound(sizes, starts, ends)
    block, merges = live.block, live.in_place
    if merges:
        bsizes, bstarts, bends = live.blocks()
        (chosen, block_offsets), peaks = _best(bsizes, bstarts, bends, strategies, alignment)
        merged = lower_bound(bsizes, bstarts, bends)
        if peaks[chosen] > greedy:  # merging made the placement worse: keep the baseline
            chosen, block_offsets, merged = "greedy-by-size", base_offsets, bound
            block, merges = np.arange(len(sizes)), ()
    else:
        (chosen, block_offsets), peaks = _best(sizes, starts, ends, strategies, alignment,
                                               {"greedy-by-size": base_offsets})
        merged = bound
    offset_of = block_offsets[block]
    index = {b: i for i, b in enumerate(live.buffers)}
    allocations = {}
    for name, owner in live.storage.items():
        i = index[owner]
        s, e = (int(starts[i]), int(ends[i])) if name == owner else live.intervals[name]
        allocations[name] = Allocation(name, int(offset_of[i]), int(sizes[i]), s, e, owner,
                                       int(block[i]))
    return ArenaPlan(graph.name, live.order, allocations, peak_of(offset_of, sizes), chosen,
                     peaks, int(sizes.sum()), bound, merged, greedy, live.weights, alignment,
                     merges)


# =============================================================================================
# verification


def verify_arena(plan: ArenaPlan) -> list[str]:
    """Every problem with a plan: buffers live at a common step whose bytes overlap (unless
    one is written in place over the other at the step where it dies), a buffer outside
    ``[0, peak)``, a misaligned offset, an alias not at its buffer's offset or outliving it,
    an in-place pair of different sizes or offsets or not meeting at its step."""
    problems: list[str] = []
    bufs = plan.buffers()
    by_name = {a.value: a for a in bufs}
    off = np.array([a.offset for a in bufs], dtype=np.int64)
    size = np.array([a.size for a in bufs], dtype=np.int64)
    start = np.array([a.start for a in bufs], dtype=np.int64)
    end = np.array([a.end for a in bufs], dtype=np.int64)
    for k in np.flatnonzero((off < 0) | ((off + size > plan.peak) & (size > 0))):
        a = bufs[k]
        problems.append(f"%{a.value}: bytes [{a.offset}, {a.offset + a.size}) lie outside the "
                        f"arena [0, {plan.peak})")
    for k in np.flatnonzero(off % plan.alignment != 0):
        a = bufs[k]
        problems.append(f"%{a.value}: offset {a.offset} is not a multiple of the alignment "
                        f"{plan.alignment}")
    allowed = set()
    for p in plan.in_place:
        a, b = by_name.get(p.operand), by_name.get(p.result)
        if a is None or b is None:
            problems.append(f"in place at {p.op}: %{p.result} over %{p.operand}, but one of "
                            f"them is not a buffer of the plan")
            continue
        if (a.offset, a.size) != (b.offset, b.size):
            problems.append(f"in place at {p.op}: %{p.result} [{b.offset}, +{b.size}) is not "
                            f"exactly the bytes of %{p.operand} [{a.offset}, +{a.size})")
        if not a.end == b.start == p.step:
            problems.append(f"in place at {p.op} (step {p.step}): %{p.operand} lives "
                            f"[{a.start}, {a.end}] and %{p.result} [{b.start}, {b.end}]; the "
                            f"operand must die where the result is made")
        allowed.add(frozenset((a.value, b.value)))
    for i, j in overlapping_pairs(off, size, start, end):
        a, b = bufs[i], bufs[j]
        if frozenset((a.value, b.value)) in allowed and (a.end == b.start or b.end == a.start):
            continue
        lo, hi = max(a.start, b.start), min(a.end, b.end)
        problems.append(f"%{a.value} [{a.offset}, {a.offset + a.size}) and %{b.value} "
                        f"[{b.offset}, {b.offset + b.size}) overlap while both live (steps "
                        f"{lo}..{hi})")
    for a in plan.allocations.values():
        if a.buffer == a.value:
            continue
        base = by_name.get(a.buffer)
        if base is None:
            problems.append(f"%{a.value} aliases %{a.buffer}, which has no allocation")
        elif (a.offset, a.size) != (base.offset, base.size) or not \
                base.start <= a.start <= a.end <= base.end:
            problems.append(f"%{a.value} aliases %{a.buffer} but sits at [{a.offset}, "
                            f"+{a.size}) steps [{a.start}, {a.end}], not within its buffer "
                            f"[{base.offset}, +{base.size}) steps [{base.start}, {base.end}]")
    return problems


def check_arena(plan: ArenaPlan) -> ArenaPlan:
    """The plan, or a VerificationError listing every problem :func:`verify_arena` finds."""
    problems = verify_arena(plan)
    if problems:
        raise VerificationError(problems, f"arena of {plan.graph_name!r}")
    return plan
