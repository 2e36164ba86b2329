"""A declarative pattern rewriter: a rule is a pattern, a check and a replacement.

    rule = RewriteRule(
        "matmul-add-to-gemm",
        pattern=op("Add", op("MatMul", value("a"), const("b"), name="mm"), const("c"),
                   name="add"),
        check=lambda m: None if m["a"].type.rank == 2 else "A is not 2-D",
        replace=lambda g, m: g.add_op("Gemm", [m["a"], m["b"], m["c"]]).results,
    )

Patterns match op types (one or several), attributes (values or predicates), constant operands
and commutative operands (both orders are tried for ops the registry marks commutative). An
inner op of a pattern must have no other use: its result may not be read elsewhere or be a
graph output, or fusing it away would duplicate or lose it. ``check`` returns None to accept or
a string saying why not ("bias is used elsewhere"); ``replace`` adds the new ops and returns the
values that take over the root's results. The engine rewires the uses, removes the matched ops
that became dead, and gives the new ops the union of the matched ops' provenance.

:func:`apply_rules` runs rules greedily to a fixpoint, with an iteration cap whose error names
the rule that keeps firing; a replacement that leaves the root's results in place is not
counted as a match. :func:`explain` answers "why did this not match?" for one op: each rule's
failure reason and its best partial match.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import attrs

from tensorir.errors import PassError
from tensorir.ir import Graph, Op, Value
from tensorir.ops.registry import get_op_def

from .base import Pass, PassResult

# ----------------------------------------------------------------------------- patterns


@attrs.frozen
class ValuePattern:
    """Any value (optionally only constants, or satisfying ``where``), captured as ``name``."""

    name: str | None = None
    constant: bool = False
    where: Callable[[Value], bool] | None = None


@attrs.frozen
class OpPattern:
    types: tuple[str, ...]
    operands: tuple["Pattern", ...]
    attrs: Mapping[str, Any] = attrs.field(factory=dict)
    name: str | None = None
    variadic: bool = False  # operands is a prefix: more operands may follow


Pattern = Union[ValuePattern, OpPattern]


def value(name: str | None = None, where: Callable[[Value], bool] | None = None) -> ValuePattern:
    return ValuePattern(name, False, where)


def const(name: str | None = None, where: Callable[[Value], bool] | None = None) -> ValuePattern:
    return ValuePattern(name, True, where)


def op(types: str | Sequence[str], *operands: Pattern, name: str | None = None,
       variadic: bool = False, **attributes: Any) -> OpPattern:
    """An op of one of ``types`` with these operand patterns; attribute values may be
    predicates (``axis=lambda a: a in (-1, 1)``)."""
    types = (types,) if isinstance(types, str) else tuple(types)
    return OpPattern(types, tuple(operands), dict(attributes), name, variadic)


# ----------------------------------------------------------------------------- matching


class Match(dict):
    """Captured values and ops by name; ``ops`` lists every matched op, root last."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []

    @property
    def root(self) -> Op:
        return self.ops[-1]


@attrs.define
class _Attempt:
    """The state of one match attempt: the captures so far and why it failed."""

    graph: Graph
    match: Match = attrs.field(factory=Match)
    matched_nodes: int = 0
    reason: str = ""


def _attr_ok(expected: Any, actual: Any) -> bool:
    return expected(actual) if callable(expected) else expected == actual


def _match_op(p: OpPattern, o: Op, attempt: _Attempt, root: bool) -> bool:
    if o.type not in p.types:
        attempt.reason = f"{o.label} is not {' or '.join(p.types)}"
        return False
    opdef = get_op_def(o.type)
    for key, expected in p.attrs.items():
        actual = o.attrs.get(key, opdef.attributes.get(key))
        if not _attr_ok(expected, actual):
            attempt.reason = f"{o.label}: attribute {key}={actual!r} does not match"
            return False
    if not root:
        r = o.results[0]
        uses = len(attempt.graph.users(r)) + sum(v is r for v in attempt.graph.outputs)
        if len(o.results) != 1 or uses != 1:
            attempt.reason = f"%{r.name} ({o.label}) is used elsewhere ({uses} uses)"
            return False
    n = len(p.operands)
    if (len(o.operands) < n) if p.variadic else (len(o.operands) != n):
        attempt.reason = f"{o.label} has {len(o.operands)} operands, the pattern {n}"
        return False
    orders = [list(range(n))]
    if opdef.commutative and n == 2:
        orders.append([1, 0])
    saved_match, saved_nodes = Match(), attempt.matched_nodes
    saved_match.update(attempt.match)
    saved_match.ops = list(attempt.match.ops)
    best: tuple[int, str, Match] | None = None
    for order in orders:
        if all(_match(p.operands[i], o.operands[j], attempt) for i, j in enumerate(order)):
            attempt.match.ops.append(o)
            if p.name:
                attempt.match[p.name] = o
            attempt.matched_nodes += 1
            return True
        # keep the order that got furthest: its reason and captures explain the failure best
        if best is None or attempt.matched_nodes > best[0]:
            best = (attempt.matched_nodes, attempt.reason, attempt.match)
        attempt.match = Match()
        attempt.match.update(saved_match)
        attempt.match.ops = list(saved_match.ops)
        attempt.matched_nodes = saved_nodes
    attempt.matched_nodes, attempt.reason, attempt.match = best
    return False


def _match(p: Pattern, v: Value | None, attempt: _Attempt) -> bool:
    if v is None:
        attempt.reason = "an optional operand is absent"
        return False
    if isinstance(p, ValuePattern):
        if p.constant and not (v.kind == "const" and v.data is not None):
            attempt.reason = f"%{v.name} is not a constant"
            return False
        if p.where is not None and not p.where(v):
            attempt.reason = f"%{v.name} does not satisfy the pattern's condition"
            return False
        if p.name:
            if p.name in attempt.match and attempt.match[p.name] is not v:
                attempt.reason = f"{p.name} would be both %{attempt.match[p.name].name} and %{v.name}"
                return False
            attempt.match[p.name] = v
        attempt.matched_nodes += 1
        return True
    if v.producer is None:
        attempt.reason = f"%{v.name} is not produced by {' or '.join(p.types)}"
        return False
    return _match_op(p, v.producer, attempt, root=False)


def match(pattern: OpPattern, root: Op, graph: Graph) -> tuple[Match | None, _Attempt]:
    attempt = _Attempt(graph)
    ok = _match_op(pattern, root, attempt, root=True)
    return (attempt.match if ok else None), attempt


# ----------------------------------------------------------------------------- rules


@attrs.frozen
class RewriteRule:
    """``pattern`` to find, ``check`` returning why not (or None), ``replace`` to rebuild."""

    name: str
    pattern: OpPattern
    replace: Callable[[Graph, Match], Sequence[Value] | Value | Op | None]
    check: Callable[[Match], str | None] = lambda m: None
    doc: str = ""


def _replacement_values(result: Any, root: Op) -> list[Value] | None:
    if result is None:
        return None
    if isinstance(result, Op):
        return list(result.results)
    if isinstance(result, Value):
        return [result]
    return list(result)


def _reads_only_the_match(m: Match, new_values: Sequence[Value], added: Sequence[Op]) -> bool:
    """Whether the replacement is built only from values the match reached (operands of
    matched ops: ancestors of the root), constants and inputs, and results of the ops it
    added: then it cannot depend on the root's results, and needs no cycle check (which walks
    the whole graph above it)."""
    reached = {id(v) for o in m.ops for v in o.operands if v is not None}
    new_ops = set(added)

    def safe(v: Value) -> bool:
        return v.producer is None or id(v) in reached or v.producer in new_ops

    return all(safe(v) for v in new_values) and \
        all(safe(v) for o in added for v in o.operands if v is not None)


def apply_rule_at(graph: Graph, rule: RewriteRule, root: Op) -> str | None:
    """Try ``rule`` at ``root``: None when it rewrote the graph, else why it did not."""
    m, attempt = match(rule.pattern, root, graph)
    if m is None:
        return attempt.reason or "no match"
    refusal = rule.check(m)
    if refusal:
        return refusal
    mark = graph.mark()
    new_values = _replacement_values(rule.replace(graph, m), root)
    if new_values is None or all(a is b for a, b in zip(new_values, root.results)):
        return "the replacement changes nothing"
    if len(new_values) != len(root.results):
        raise PassError(f"rule {rule.name!r} returned {len(new_values)} values for "
                        f"{len(root.results)} results of {root.label}")
    source: dict[str, None] = {}
    for o in m.ops:
        source.update(dict.fromkeys(o.source))
    added = graph.ops_added_since(mark)
    for node in added:
        node.source = tuple(source)
        node.name = node.name or root.name
    graph.replace_op(root, new_values,
                     check_cycle=not _reads_only_the_match(m, new_values, added))
    for o in reversed(m.ops[:-1]):
        if o in graph.nx and not any(graph.is_used(r) for r in o.results):
            graph.remove_op(o)
    return None


def _rules_by_root_type(rules: Sequence[RewriteRule]) -> dict[str, list[RewriteRule]]:
    """The rules whose pattern can match at an op of each type, in their order: a rule whose
    root is another type fails at once, changing nothing."""
    by_type: dict[str, list[RewriteRule]] = {}
    for rule in rules:
        for t in dict.fromkeys(rule.pattern.types):
            by_type.setdefault(t, []).append(rule)
    return by_type


def apply_rules(graph: Graph, rules: Sequence[RewriteRule], max_iterations: int = 20,
                ) -> Counter:
    """Apply ``rules`` greedily until nothing matches; returns matches per rule name."""
    counts: Counter = Counter()
    by_root = _rules_by_root_type(rules)
    for _ in range(max_iterations):
        fired: Counter = Counter()
        for root in graph.ops:
            if root not in graph.nx:
                continue  # removed by an earlier rewrite in this sweep
            for rule in by_root.get(root.type, ()):
                if apply_rule_at(graph, rule, root) is None:
                    fired[rule.name] += 1
                    break
        counts.update(fired)
        if not fired:
            return counts
    culprit, n = fired.most_common(1)[0]
    raise PassError(f"rewriting did not reach a fixpoint after {max_iterations} sweeps: rule "
                    f"{culprit!r} keeps firing ({n} matches in the last sweep)")


# ----------------------------------------------------------------------------- tracing


@attrs.frozen
class TraceEntry:
    rule: str
    matched: bool
    reason: str
    partial: tuple[str, ...]  # captures of the best partial match

    def __str__(self) -> str:
        state = "would rewrite" if self.matched else f"no: {self.reason}"
        got = f" (matched {', '.join(self.partial)})" if self.partial and not self.matched else ""
        return f"{self.rule}: {state}{got}"


def explain(graph: Graph, root: Op, rules: Iterable[RewriteRule]) -> list[TraceEntry]:
    """For each rule: would it rewrite ``root``, and if not, why, and how far it got."""
    entries = []
    for rule in rules:
        m, attempt = match(rule.pattern, root, graph)
        if m is None:
            partial = tuple(f"{k}=%{v.name}" if isinstance(v, Value) else f"{k}={v.label}"
                            for k, v in attempt.match.items())
            entries.append(TraceEntry(rule.name, False, attempt.reason or "no match", partial))
            continue
        refusal = rule.check(m)
        entries.append(TraceEntry(rule.name, refusal is None, refusal or "",
                                  tuple(sorted(m))))
    return entries


# ----------------------------------------------------------------------------- passes


class RewritePass(Pass):
    """A pass made of rewrite rules: subclasses set ``name``, ``description`` and ``rules``.

    Its statistics count the matches of each rule.
    """

    rules: tuple[RewriteRule, ...] = ()

    @attrs.frozen
    class Options:
        max_iterations: int = 20

    def run(self, graph: Graph) -> PassResult:
        counts = apply_rules(graph, self.rules, self.options.max_iterations)
        return PassResult(graph, bool(counts), dict(counts))

    def explain(self, graph: Graph, root: Op) -> list[TraceEntry]:
        """Why each of this pass's rules does or does not rewrite ``root``."""
        return explain(graph, root, self.rules)
