"""The verifier: checks a graph's invariants and lists every problem it finds.

- SSA: each value has one producer, and the networkx view agrees with the operand lists;
- every operand and output is a value of this graph; the graph is acyclic;
- each op is known to the registry, its attributes and arity are valid, and its result types
  are what the registry's type rule infers from its operands (views in bounds included: the
  ``tensorir.view`` rule checks them);
- constants' data match their declared types;
- after lowering, the schedule's invariants (:mod:`tensorir.schedule_verify`).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .errors import TensorIRError, VerificationError
from .ir import CONST, INPUT, RESULT, Graph, Op
from .ops.registry import infer_types


def _op_where(op: Op) -> str:
    first = f" -> %{op.results[0].name}" if op.results else ""
    return f"{op.label}{first}"


def check(g: Graph) -> list[str]:
    """Every problem found in ``g`` (an empty list for a valid graph)."""
    problems: list[str] = []
    values = {v.name: v for v in g.values()}
    if not nx.is_directed_acyclic_graph(g.nx):
        cycle = nx.find_cycle(g.nx)
        names = [n.label if isinstance(n, Op) else f"%{n.name}" for n, *_ in cycle]
        problems.append(f"the graph has a cycle through {' -> '.join(names)}")
        ops: list[Op] = [n for n in g.nx if isinstance(n, Op)]
    else:
        ops = g.ops
    produced: dict[str, Op] = {}
    for op in ops:
        where = _op_where(op)
        for i, v in enumerate(op.operands):
            if v is None:
                continue
            if values.get(v.name) is not v:
                problems.append(f"{where}: operand {i} %{v.name} is not a value of this graph")
            elif not g.nx.has_edge(v, op, key=i):
                problems.append(f"{where}: operand {i} %{v.name} has no edge in the graph")
        n_edges = sum(1 for _ in g.nx.in_edges(op))
        if n_edges != sum(v is not None for v in op.operands):
            problems.append(f"{where}: {n_edges} operand edges for "
                            f"{sum(v is not None for v in op.operands)} operands")
        for r in op.results:
            if r.name in produced:
                problems.append(f"%{r.name} is produced twice: by {produced[r.name].label} and "
                                f"{op.label}")
            produced[r.name] = op
            if r.producer is not op or r.kind != RESULT:
                problems.append(f"{where}: result %{r.name} does not record it as its producer")
        for key, attr in op.attrs.items():
            if isinstance(attr, Graph):  # a fused op's body: its own invariants hold too
                problems.extend(f"{where}: {key}: {p}" for p in check(attr))
        try:
            inferred = infer_types(op.type, op.attrs, op.operands, name=op.name)
        except TensorIRError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if len(inferred) != len(op.results):
            problems.append(f"{where}: has {len(op.results)} results, the type rule gives "
                            f"{len(inferred)}")
        for r, t in zip(op.results, inferred):
            if r.type != t:
                problems.append(f"{where}: result %{r.name} is {r.type} but the type rule "
                                f"gives {t}")
    for v in g.values():
        if v.kind == CONST and v.data is not None:
            if tuple(v.data.shape) != v.type.shape or v.data.dtype != v.dtype.numpy:
                problems.append(f"constant %{v.name}: data is "
                                f"{np.dtype(v.data.dtype)}{list(v.data.shape)}, type says {v.type}")
        if v.kind == RESULT and v.producer is None:
            problems.append(f"%{v.name} is an op result without a producer")
    for v in g.inputs:
        if v.kind != INPUT:
            problems.append(f"graph input %{v.name} is a {v.kind}")
    for v in g.outputs:
        if values.get(v.name) is not v:
            problems.append(f"graph output %{v.name} is not a value of this graph")
    if g.schedule is not None and not problems:
        from .schedule_verify import check_schedule
        problems += [f"schedule: {p}" for p in check_schedule(g)]
    return problems


def verify(g: Graph) -> None:
    """Raise :class:`VerificationError` listing every problem, or return quietly."""
    problems = check(g)
    if problems:
        raise VerificationError(problems, graph_name=g.name)
