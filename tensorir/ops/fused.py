"""Fused kernels: one op whose ``body`` attribute is a subgraph of ordinary ops.

    fused.K(x1 .. xn) {body = graph(%x1 .. %xn) { ... }}  ==  body(x1 .. xn)

The fusion pass builds them; the printer prints the body nested and the parser reads it back;
the interpreter runs the body. Every fact comes from the body through the registry:

- type rule: the body's input types must match the operands (a symbol in the body may stand for
  a concrete size of the operand, e.g. after binding); results are the body's output types;
- FLOPs: the sum of the body ops' FLOPs;
- iteration domain: the domain of the body's *anchor* (its contraction, or else its reduction
  or normalization op, or else its last op). An operand the anchor reads keeps the anchor's map;
  an operand read by an elementwise epilogue whose result has the anchor's result shape is
  read at (epilogue map) ∘ (anchor's result map); anything else is opaque (None).

Kinds (the part after ``fused.``) name what was recognised: elementwise chains, contraction
epilogues (conv, matmul, gemm), layernorm, gelu, softmax, attention, ffn.
"""

from __future__ import annotations

import numpy as np

from .. import dims as _dims
from ..errors import InvalidOpError
from ..types import TensorType
from .domain import AffineMap, IterationDomain
from .registry import (REQUIRED, Category, OpContext, OpDef, get_op_def, op_context, op_flops,
                       register)

FUSED_KINDS = ("elementwise", "conv", "matmul", "gemm", "layernorm", "gelu", "softmax",
               "attention", "ffn")
_ANCHOR_ORDER = (Category.CONTRACTION, Category.REDUCTION, Category.NORMALIZATION,
                 Category.POOLING)


def _body(ctx: OpContext):
    from ..ir import Graph
    body = ctx.attr("body")
    if not isinstance(body, Graph):
        raise InvalidOpError(f"{ctx.label}: attribute 'body' must be a graph")
    return body


def _unify(ctx: OpContext, body) -> dict[str, int]:
    """Bindings that make the body's input types equal the operand types, or a ShapeError."""
    if len(body.inputs) != ctx.num_operands:
        raise ctx.fail(f"the body takes {len(body.inputs)} inputs but the op has "
                       f"{ctx.num_operands} operands")
    env: dict[str, int] = {}
    for i, v in enumerate(body.inputs):
        t = ctx.type(i)
        if t.dtype != v.dtype or t.rank != v.type.rank:
            raise ctx.fail(f"body input %{v.name} is {v.type}", operand=i)
        for want, got in zip(v.type.shape, t.shape):
            if want == got:
                continue
            if isinstance(want, str) and _dims.SYMBOL_RE.match(want) and isinstance(got, int) \
                    and env.get(want, got) == got:
                env[want] = got
                continue
            raise ctx.fail(f"body input %{v.name} is {v.type}", operand=i)
    return env


def _bound_body(ctx: OpContext):
    body = _body(ctx)
    env = _unify(ctx, body)
    return body.bind(env) if env else body


def _infer(ctx: OpContext) -> list[TensorType]:
    body = _body(ctx)
    env = _unify(ctx, body)
    return [v.type.bind(env) if env else v.type for v in body.outputs]


def _evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    from ..interpreter import Interpreter
    body = _body(ctx)
    outputs = Interpreter(body).run({v.name: a for v, a in zip(body.inputs, inputs)})
    return [outputs[v.name] for v in body.outputs]


def _flops(ctx: OpContext):
    total: _dims.Dim = 0
    # per body op through op_flops's memo: the copies of a graph (one per target) share
    # their fused ops' bodies, so each body op is counted once
    for op in _bound_body(ctx).ops:
        total = _dims.add(total, op_flops(op))
    return total


def anchor_op(body):
    """The op whose loop nest the fused kernel runs (see the module docstring)."""
    ops = body.ops
    for category in _ANCHOR_ORDER:
        found = [op for op in ops if get_op_def(op.type).category is category]
        if found:
            return found[0]
    return ops[-1] if ops else None


def _domain(ctx: OpContext) -> IterationDomain | None:
    body = _bound_body(ctx)
    anchor = anchor_op(body)
    if anchor is None:
        return None
    base = get_op_def(anchor.type).domain(op_context(anchor))
    if base is None:
        return None
    result_map = base.outputs[0] if base.outputs else None
    anchor_shape = anchor.results[0].type.shape
    maps: dict[str, AffineMap | None] = {}
    for slot, v in enumerate(anchor.operands):
        if v is not None and v.kind == "input":
            maps.setdefault(v.name, base.inputs[slot] if slot < len(base.inputs) else None)
    produced_like_anchor: set = {anchor.results[0].name}
    for op in body.ops:
        if op is anchor or get_op_def(op.type).category is not Category.ELEMENTWISE:
            continue
        if op.results[0].type.shape != anchor_shape or result_map is None:
            continue
        d = get_op_def(op.type).domain(op_context(op))
        if d is None:
            continue
        if any(v is not None and v.name in produced_like_anchor for v in op.operands):
            produced_like_anchor.add(op.results[0].name)
        for slot, v in enumerate(op.operands):
            if v is not None and v.kind == "input" and v.name not in maps and d.inputs[slot]:
                m = d.inputs[slot]  # a scalar's map has no results: nothing to compose
                maps[v.name] = m.compose(result_map) if m.exprs else m
    inputs = tuple(maps.get(v.name) for v in body.inputs)
    outputs = tuple(result_map if v.name in produced_like_anchor else None for v in body.outputs)
    return IterationDomain(base.dims, inputs, outputs)


for _kind in FUSED_KINDS:
    register(OpDef(f"fused.{_kind}", Category.FUSED, _infer, _evaluate, _domain,
                   flops_fn=_flops, attributes={"body": REQUIRED}, min_inputs=0,
                   max_inputs=1 << 30,
                   doc=f"a fused {_kind} kernel: runs its body subgraph; facts from the body"))
