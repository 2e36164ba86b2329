"""Algebraic simplification: ops that compute their operand, or compose, are removed or merged.

    Identity(x) = Dropout(x) = x*1 = x+0 = x-0 = x/1 = op(x) of the same type -> x
    Transpose(Transpose(x, p), q) -> Transpose(x, p∘q),  Reshape(Reshape(x, a), b) -> Reshape(x, b)

One :class:`RewriteRule` per identity, its ``doc`` the identity (listed in :data:`RULES`).

Graph outputs keep their names: when the value a rule removes is a graph output, the op result
that takes its place is renamed to the output's name (``Graph.replace_op``). Where x cannot be
renamed (a graph input or a constant, whose names stay, or a graph output itself) the rule
refuses and the pass counts ``skipped_graph_output``.

``x + 0 -> x`` holds up to the sign of zero (-0.0 + 0.0 is +0.0), which no comparison sees.
"""

from __future__ import annotations

from typing import Callable

import attrs
import numpy as np

from tensorir.ir import RESULT, Graph, Op, Value

from ._rewire import first_element, is_uniform
from .base import PassResult, register_pass
from .rewriter import (Match, RewritePass, RewriteRule, TraceEntry, apply_rules, const, explain,
                       op, value)

# ----------------------------------------------------------------------------- checks


def _keeps_type(m: Match) -> str | None:
    """None when the root's result has x's type, so x can stand in for it."""
    x, r = m["x"], m.root.results[0]
    if r.type != x.type:
        return f"{m.root.label} changes {x.type} to {r.type}"
    return None


def _all_equal_to(scalar: float) -> Callable[[Match], str | None]:
    """Check: constant c holds only ``scalar``, and x op c has x's type (c does not broadcast
    x bigger or change its dtype)."""

    def check(m: Match) -> str | None:
        c = m["c"].data
        if is_uniform(c) and c.size:
            c = first_element(c)
        if not np.all(c == scalar):
            return f"%{m['c'].name} is not all {scalar:g}"
        return _keeps_type(m)

    return check


def _scalar(v: Value | None) -> float | None:
    """The value of a constant one-element operand, None if not known before run time."""
    if v is None or v.data is None or v.data.size != 1:
        return None
    return float(v.data.reshape(-1)[0])


def _inference_dropout(m: Match) -> str | None:
    operands = m.root.operands
    training = operands[2] if len(operands) > 2 else None
    if training is not None and _scalar(training) != 0:
        ratio = operands[1] if len(operands) > 1 else None
        if ratio is None or _scalar(ratio) != 0:  # an absent ratio is 0.5
            return "training_mode is not a constant false (the dropout may be random)"
    return None


def _dropout_and_mask(g: Graph, m: Match) -> list[Value]:
    mask = m.root.results[1]
    true = np.broadcast_to(np.ones((), np.bool_), mask.shape)  # one element, no copy
    return [m["x"], g.add_constant(g.unique_name(f"{mask.name}_true"), true)]


def _perm(o: Op) -> list[int]:
    perm = o.attrs.get("perm")
    rank = o.operands[0].type.rank
    return list(range(rank))[::-1] if perm is None else [int(p) for p in perm]


def _composed(m: Match) -> list[int]:
    """T(T(x, p), q) = T(x, r) with r[j] = p[q[j]]."""
    p, q = _perm(m["inner"]), _perm(m["outer"])
    return [p[j] for j in q]


def _identity_perm(m: Match) -> str | None:
    perm = _perm(m["t"])
    return None if perm == sorted(perm) else f"perm {perm} is not the identity"


def _cancels(m: Match) -> str | None:
    r = _composed(m)
    return None if r == sorted(r) else f"p∘q = {r} is not the identity"


def _composes(m: Match) -> str | None:
    r = _composed(m)
    return "p∘q is the identity (transpose-pair-cancels)" if r == sorted(r) else None


def _spec(m: Match) -> tuple[list[int], int]:
    b, outer = m["b"], m["outer"]
    return [int(s) for s in b.data.reshape(-1)], int(outer.attrs.get("allowzero", 0))


def _reshape_pair(m: Match) -> str | None:
    spec, allowzero = _spec(m)
    if 0 in spec and not allowzero and not m["outer"].results[0].type.is_static:
        return (f"b = {spec} copies dims of the middle shape (0 entries) and the result shape "
                f"{m['outer'].results[0].shape} is symbolic")
    return None


def _reshape_of_x(g: Graph, m: Match) -> Op:
    """Reshape(x, b) when b does not read the middle shape, else Reshape(x, static shape)."""
    outer, out = m["outer"], m["outer"].results[0]
    spec, allowzero = _spec(m)
    if 0 not in spec or allowzero:  # -1 depends only on the element count, x's as well
        return g.add_op("Reshape", [m["x"], m["b"]], dict(outer.attrs), name=outer.name)
    shape = np.array(out.shape, np.int64)
    c = g.add_constant(g.unique_name(f"{out.name}_shape"), shape)
    return g.add_op("Reshape", [m["x"], c], {"allowzero": 1} if 0 in shape else {},
                    name=outer.name)


# ----------------------------------------------------------------------------- rules


def _forward(name: str, doc: str, pattern, check=lambda m: None) -> RewriteRule:
    """A rule whose replacement is the captured operand x."""
    return RewriteRule(name, pattern, replace=lambda g, m: m["x"], check=check, doc=doc)


def _same_type(op_type: str, doc: str) -> RewriteRule:
    return _forward(f"{op_type.lower()}-noop", doc, op(op_type, value("x"), variadic=True),
                    _keeps_type)


RULES: tuple[RewriteRule, ...] = (
    _forward("identity", "Identity(x) -> x", op("Identity", value("x"))),
    _forward("dropout", "Dropout(x) -> x  (inference, one result)",
             op("Dropout", value("x"), variadic=True, num_outputs=1), _inference_dropout),
    RewriteRule("dropout-mask", op("Dropout", value("x"), variadic=True, num_outputs=2),
                replace=_dropout_and_mask, check=_inference_dropout,
                doc="Dropout(x) -> (x, true)  (inference, with its mask: all true)"),
    _same_type("Cast", "Cast(x, to=dtype(x)) -> x"),
    _same_type("CastLike", "CastLike(x, t) -> x  when dtype(t) = dtype(x)"),
    _same_type("Reshape", "Reshape(x, s) -> x  when the result type is x's"),
    _same_type("Flatten", "Flatten(x) -> x  when the result type is x's"),
    _same_type("Squeeze", "Squeeze(x, axes) -> x  when the result type is x's"),
    _same_type("Unsqueeze", "Unsqueeze(x, axes) -> x  when the result type is x's"),
    _same_type("Expand", "Expand(x, s) -> x  when the result type is x's"),
    _forward("transpose-identity", "Transpose(x, id) -> x",
             op("Transpose", value("x"), name="t"), _identity_perm),
    _forward("transpose-pair-cancels", "Transpose(Transpose(x, p), q) -> x  when p∘q = id",
             op("Transpose", op("Transpose", value("x"), name="inner"), name="outer"), _cancels),
    RewriteRule("transpose-pair-composes",
                op("Transpose", op("Transpose", value("x"), name="inner"), name="outer"),
                replace=lambda g, m: g.add_op("Transpose", [m["x"]], {"perm": _composed(m)},
                                              name=m["outer"].name),
                check=_composes, doc="Transpose(Transpose(x, p), q) -> Transpose(x, p∘q)"),
    RewriteRule("reshape-pair",
                op("Reshape", op("Reshape", value("x"), value(), name="inner"), const("b"),
                   name="outer"),
                replace=_reshape_of_x, check=_reshape_pair,
                doc="Reshape(Reshape(x, a), b) -> Reshape(x, b)  (b's 0 entries resolved "
                    "against the static result shape)"),
    _forward("mul-one", "x * 1 -> x", op("Mul", value("x"), const("c")), _all_equal_to(1)),
    _forward("add-zero", "x + 0 -> x", op("Add", value("x"), const("c")), _all_equal_to(0)),
    _forward("sub-zero", "x - 0 -> x", op("Sub", value("x"), const("c")), _all_equal_to(0)),
    _forward("div-one", "x / 1 -> x", op("Div", value("x"), const("c")), _all_equal_to(1)),
)

# rules whose replacement is x (and, for further results, new constants)
FORWARDING = frozenset(r.name for r in RULES if r.name not in
                       ("transpose-pair-composes", "reshape-pair"))


# ----------------------------------------------------------------------------- output names


def keeping_output_names(rule: RewriteRule, graph: Graph, refused: set[Op]) -> RewriteRule:
    """``rule`` on ``graph``, refusing to forward x to a graph output that x cannot take the
    name of (``Graph.replace_op`` renames only op results that are not outputs already)."""
    if rule.name not in FORWARDING:
        return rule  # a new op's result always takes the output's name

    def check(m: Match) -> str | None:
        why = rule.check(m)
        if why:
            return why
        x, (y, *others) = m["x"], m.root.results
        mask = next((r for r in others if graph.is_output(r)), None)
        if mask is not None:
            refused.add(m.root)
            return f"%{mask.name} is a graph output and its replacement a new constant"
        if graph.is_output(y) and (x.kind != RESULT or graph.is_output(x)):
            refused.add(m.root)
            what = ("a graph output" if graph.is_output(x) else
                    "a graph input" if x.kind == "input" else "a constant")
            return f"%{y.name} is a graph output and %{x.name}, {what}, cannot take its name"
        return None

    return attrs.evolve(rule, check=check)


@register_pass
class Simplify(RewritePass):
    name = "simplify"
    description = "remove ops that compute their operand; merge transpose and reshape pairs"
    preserves = frozenset({"types"})
    rules = RULES

    def _bound(self, graph: Graph, refused: set[Op]) -> list[RewriteRule]:
        return [keeping_output_names(r, graph, refused) for r in self.rules]

    def run(self, graph: Graph) -> PassResult:
        refused: set[Op] = set()
        counts = apply_rules(graph, self._bound(graph, refused), self.options.max_iterations)
        stats = dict(counts)
        stats["skipped_graph_output"] = sum(1 for o in refused if o in graph.nx)
        return PassResult(graph, bool(counts), stats)

    def explain(self, graph: Graph, root: Op) -> list[TraceEntry]:
        return explain(graph, root, self._bound(graph, set()))
