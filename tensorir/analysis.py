"""Per-op and whole-graph statistics read from the op registry: FLOPs, bytes, parameters.

Conventions: one multiply-add is 2 FLOPs (``macs = flops / 2`` for contractions); bytes read are
the sizes of an op's operands, bytes written the sizes of its results (no caching assumed: this
is the traffic of running each op on its own); parameters are the elements of floating-point
constants, each counted once in the graph, at the first op that uses it.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from . import dims as _dims
from .errors import UnboundDimError
from .ir import Graph, Op
from .ops.registry import Category, get_op_def, op_context


@attrs.frozen
class OpStats:
    name: str
    op_type: str
    category: str
    result_types: tuple[str, ...]
    flops: int
    macs: int
    bytes_read: int
    bytes_written: int
    params: int


@attrs.frozen
class GraphStats:
    name: str
    ops: tuple[OpStats, ...]

    @property
    def flops(self) -> int:
        return sum(o.flops for o in self.ops)

    @property
    def contraction_macs(self) -> int:
        """Multiply-adds of MatMul/Gemm/Conv-like ops, the usual "MACs" of a model."""
        return sum(o.macs for o in self.ops)

    @property
    def params(self) -> int:
        return sum(o.params for o in self.ops)

    @property
    def activation_bytes(self) -> int:
        """Bytes of every op result: what running op by op writes to memory."""
        return sum(o.bytes_written for o in self.ops)

    def by_op_type(self) -> list[tuple[str, int, int]]:
        """(op type, count, FLOPs) sorted by FLOPs."""
        acc: dict[str, list[int]] = {}
        for o in self.ops:
            entry = acc.setdefault(o.op_type, [0, 0])
            entry[0] += 1
            entry[1] += o.flops
        return sorted(((k, n, f) for k, (n, f) in acc.items()), key=lambda r: (-r[2], r[0]))


def _static(value: _dims.Dim, what: str) -> int:
    if not isinstance(value, int):
        raise UnboundDimError(f"{what} depends on the symbolic size {value!r}; bind the graph's "
                              f"symbols (e.g. --batch 1) to count it")
    return value


def op_stats(op: Op, seen_constants: set | None = None) -> OpStats:
    ctx = op_context(op)
    opdef = get_op_def(op.type)
    flops = _static(opdef.flops(ctx), f"the FLOPs of {op.label}")
    # a contraction's domain has one point per multiply-add (bias adds are not MACs)
    macs = (_static(opdef.domain(ctx).size, f"the MACs of {op.label}")
            if opdef.category is Category.CONTRACTION else 0)
    read = sum(_static(v.type.dtype.nbytes(_static(_dims.prod(v.shape), "size")), "bytes")
               for v in op.operands if v is not None)
    written = sum(r.type.nbytes for r in op.results)
    params = 0
    for v in op.operands:
        if v is not None and v.is_constant and v.dtype.is_float:
            if seen_constants is None or v not in seen_constants:
                params += v.type.numel
                if seen_constants is not None:
                    seen_constants.add(v)
    return OpStats(op.name or op.results[0].name, op.type, opdef.category.value,
                   tuple(str(r.type) for r in op.results), flops, macs, read, written, params)


def graph_stats(g: Graph) -> GraphStats:
    """Statistics of every op of a graph whose shapes are static."""
    if g.symbols:
        raise UnboundDimError(f"graph {g.name!r} has symbolic dims {sorted(g.symbols)}; bind "
                              f"them (e.g. --batch 1) to count FLOPs and bytes")
    seen: set = set()
    return GraphStats(g.name, tuple(op_stats(op, seen) for op in g.ops))


def stats_rows(stats: Sequence[OpStats]) -> list[list]:
    from .table import binary_bytes, si
    return [[o.name, o.op_type, ", ".join(o.result_types), si(o.flops), binary_bytes(o.bytes_read),
             binary_bytes(o.bytes_written), si(o.params) if o.params else ""] for o in stats]
