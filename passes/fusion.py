"""Fusion: a convex group of ops whose intermediates nobody else reads becomes one kernel.

    {o1 .. on} (convex; only the last result is read outside)  ->  fused.K(inputs) {body = o1 .. on}

:meth:`Graph.fuse` does the rewrite (float constants become body inputs, so a kernel's operands
list its weights; integer ones, shapes and axes, stay in the body); this pass decides the
groups, in stages, bigger patterns first:

1. ``softmax``: Exp(x [- ReduceMax x]) / ReduceSum(...) -> fused.softmax (so attention finds it);
2. ``attention``: [Split] -> head-split Reshape/Transpose -> Q*s, K*s -> MatMul(Q, K^T)
   [/ or * scale] [+ mask | Where(mask, ., fill)] -> Softmax [-> Where(IsNaN(p), 0, p)]
   -> MatMul(., V) -> head-merge Transpose/Reshape -> fused.attention (one per layer);
3. ``gelu``: x*0.5*(1+erf(x/sqrt 2)) and 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))), any
   operand order and association -> fused.gelu;
4. ``layernorm``: (x - mean) / sqrt(mean((x - mean)^2) + eps) [* gamma [+ beta]] -> fused.layernorm;
5. ``epilogue``: Conv / Gemm / MatMul -> the chain of elementwise ops reading its result (bias,
   BatchNormalization, activation, residual Add ...; Reshape/Transpose between them allowed)
   -> fused.conv / fused.gemm / fused.matmul;
6. ``ffn``: contraction+activation (GELU or ReLU) -> [Reshape] -> contraction -> fused.ffn,
   whose body holds the two contraction kernels (nested fused ops);
7. ``elementwise``: maximal trees of elementwise ops whose intermediates are read only inside
   -> fused.elementwise (at most ``max-ops`` ops; ``max-ops`` bounds epilogues too).

Each rule is a pattern (the rewriter's, where the shape of the match is fixed), a plan that
extends and checks the match and returns the group or *why not*, and the shared checks of
:func:`group_problem`: at least two ops, no result but the last read outside the group, and no
path leaving the group and coming back (which would make the fused op its own ancestor).
:meth:`FusePass.explain` replays the stages on a copy and says, for one op, what every rule
decided and where the op ended up.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import attrs
import numpy as np

from tensorir.errors import PassError
from tensorir.ir import Graph, Op, Value
from tensorir.ops.fused import anchor_op
from tensorir.ops.registry import Category, get_op_def

from .base import Pass, PassResult, register_pass
from .rewriter import Match, OpPattern, const, match, op, value

CONTRACTIONS = {"Conv": "conv", "ConvTranspose": "conv", "Gemm": "gemm", "MatMul": "matmul"}
# reinterpret the shape of a contiguous tensor: no data moves
FREE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
                      "tensorir.view"})
# ops an epilogue or attention block may pass through: a kernel writes (or reads) them as an
# index remapping
LAYOUT_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"})
FFN_ACTIVATIONS = frozenset({"Gelu", "fused.gelu", "Relu"})


# ----------------------------------------------------------------------------- facts


def is_free(op_: Op) -> bool:
    """A shape-only op: Reshape and friends, inference Dropout, views, shape computations."""
    return op_.type in FREE_OPS or get_op_def(op_.type).category is Category.SHAPE


def is_pointwise(op_: Op, graph: Graph | None = None) -> bool:
    """One result, computed element by element (inference BatchNormalization with constant
    statistics is a per-channel scale and shift, so it counts; so does a Dropout whose mask
    result nobody reads, in ``graph``)."""
    if len(op_.results) != 1:
        return (op_.type == "Dropout" and graph is not None
                and not any(graph.is_used(r) for r in op_.results[1:]))
    if op_.type in ("fused.elementwise", "fused.gelu"):
        return True
    if op_.type == "BatchNormalization":
        return all(v is not None and v.is_constant for v in op_.operands[1:])
    return get_op_def(op_.type).category is Category.ELEMENTWISE


def _uses(graph: Graph, v: Value) -> int:
    return len(graph.users(v)) + sum(o is v for o in graph.outputs)


def _sole_user(graph: Graph, v: Value) -> Op | None:
    """The one op reading ``v`` (possibly in several slots), None if more or if it is an output."""
    users = graph.user_ops(v)
    if len(users) != 1 or any(o is v for o in graph.outputs):
        return None
    return users[0]


def _scalar(v: Value | None) -> float | None:
    if v is None or not v.is_constant or v.data is None or v.data.size != 1:
        return None
    return float(np.asarray(v.data).reshape(()))


def _close(v: Value, target: float, rtol: float = 1e-4) -> bool:
    x = _scalar(v)
    return x is not None and math.isclose(x, target, rel_tol=rtol)


def _const_ints(v: Value | None) -> tuple[int, ...] | None:
    if v is None or not v.is_constant or v.data is None:
        return None
    return tuple(int(a) for a in np.asarray(v.data).reshape(-1))


def _reduced_axes(op_: Op) -> tuple[int, ...] | None:
    """Normalised axes of a Reduce* op with keepdims=1, or None."""
    if not op_.attrs.get("keepdims", get_op_def(op_.type).attributes.get("keepdims", 1)):
        return None
    rank = op_.operands[0].type.rank
    axes = _const_ints(op_.operands[1]) if len(op_.operands) > 1 else None
    if axes is None:
        return None
    return tuple(sorted(a % rank for a in axes))


def _trailing(axes: tuple[int, ...] | None, rank: int) -> bool:
    return bool(axes) and axes == tuple(range(rank - len(axes), rank))


# ----------------------------------------------------------------------------- rules


@attrs.frozen
class Refusal:
    """Why a rule does not fuse at a root; ``key`` names a counted skip (None: no match)."""

    reason: str
    key: str | None = None
    partial: tuple[str, ...] = ()


@attrs.frozen
class Group:
    ops: tuple[Op, ...]
    output: Value  # the one result read outside the group


@attrs.frozen
class FusionRule:
    """``pattern`` (a rewriter pattern at the root, or None for any op), ``plan`` extending and
    checking the match into a :class:`Group` or a :class:`Refusal`."""

    name: str
    kind: str  # the fused op is fused.<kind>; "contraction" takes the anchor's kind
    plan: Callable[[Graph, Match, "FusePass.Options"], "Group | Refusal"]
    pattern: OpPattern | None = None
    doc: str = ""


def group_problem(graph: Graph, group: Group, limit: int | None = None) -> Refusal | None:
    """The checks every group passes: size, use counts and convexity."""
    ops = list(dict.fromkeys(group.ops))
    if len(ops) < 2:
        return Refusal("a group of one op is no fusion")
    if limit is not None and len(ops) > limit:
        return Refusal(f"the group has {len(ops)} ops, more than max-ops={limit}", "max_ops")
    if not graph.is_used(group.output):
        return Refusal(f"%{group.output.name} is never used (dead code: run dce first)")
    members = set(ops)
    # convexity: no operand produced by an outside op that depends on a member
    seen: set[Op] = set()
    stack = [v.producer for o in ops for v in o.operands
             if v is not None and v.producer is not None and v.producer not in members]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        for v in p.operands:
            if v is None or v.producer is None:
                continue
            if v.producer in members:
                return Refusal(f"{p.label} reads %{v.name} from the group and feeds it back: "
                               f"fusing would make a cycle", "cycle")
            stack.append(v.producer)
    for o in ops:
        for r in o.results:
            if r is group.output:
                continue
            outside = [u for u in graph.user_ops(r) if u not in members]
            is_output = any(v is r for v in graph.outputs)
            if outside or is_output:
                n = _uses(graph, r)
                where = ", ".join(u.label for u in outside) or "the graph outputs"
                return Refusal(f"%{r.name} ({o.label}) is used outside the group ({n} uses, "
                               f"read by {where})", "multi_use")
    return None


def _fresh_match(root: Op) -> Match:
    m = Match()
    m["root"] = root
    m.ops.append(root)
    return m


def attempt(graph: Graph, rule: FusionRule, root: Op, options: "FusePass.Options"
            ) -> Group | Refusal:
    """What ``rule`` would do at ``root``: the group to fuse, or why not."""
    if rule.pattern is not None:
        m, tried = match(rule.pattern, root, graph)
        if m is None:
            partial = tuple(f"{k}=%{v.name}" if isinstance(v, Value) else f"{k}={v.label}"
                            for k, v in tried.match.items())
            return Refusal(tried.reason or "no match", None, partial)
    else:
        m = _fresh_match(root)
    planned = rule.plan(graph, m, options)
    if isinstance(planned, Refusal):
        return planned
    limit = options.max_ops if rule.kind in ("elementwise", "contraction") else None
    return group_problem(graph, planned, limit) or planned


# ----------------------------------------------------------------------------- softmax


def _exp_sum(name: str) -> OpPattern:
    return op("ReduceSum", value("e"), variadic=True, name=name)


SOFTMAX_PATTERNS = {
    "softmax-div": op("Div", value("e"), _exp_sum("sum"), name="root"),
    "softmax-reciprocal": op("Mul", value("e"), op("Reciprocal", _exp_sum("sum"), name="inv"),
                             name="root"),
}


def _softmax_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    e, total = m["e"], m["sum"]
    exp = e.producer
    if exp is None or exp.type != "Exp":
        return Refusal(f"%{e.name} is not an Exp")
    rank = e.type.rank
    if rank == 0:
        return Refusal("a scalar softmax")
    axes = _reduced_axes(total)
    if axes is None or len(axes) != 1:
        return Refusal(f"{total.label} does not sum one axis with keepdims=1", "shape")
    ops = [exp] + m.ops
    z = exp.operands[0]
    sub = z.producer
    if sub is not None and sub.type == "Sub" and _sole_user(graph, z) is exp:
        mx = sub.operands[1].producer
        if mx is not None and mx.type == "ReduceMax" and mx.operands[0] is sub.operands[0] \
                and _reduced_axes(mx) == axes and _sole_user(graph, sub.operands[1]) is sub:
            ops = [mx, sub] + ops  # the stable form: x - max(x)
    return Group(tuple(ops), m.root.results[0])


# ----------------------------------------------------------------------------- attention


def _is_scale(op_: Op) -> int | None:
    """The data operand's slot of Mul/Div by a scalar constant, else None."""
    if op_.type == "Mul":
        for slot in (0, 1):
            if _scalar(op_.operands[1 - slot]) is not None:
                return slot
    if op_.type == "Div" and _scalar(op_.operands[1]) is not None:
        return 0
    return None


def _leads_to_matmul(v: Value, depth: int = 4) -> bool:
    p = v.producer
    if p is None or depth == 0:
        return False
    if p.type == "MatMul":
        return True
    if p.type in ("Add", "Where", "Mul", "Div"):
        return any(o is not None and not o.is_constant and _leads_to_matmul(o, depth - 1)
                   for o in p.operands)
    return False


def _private_producers(graph: Graph, v: Value, members: set[Op], depth: int = 3) -> list[Op]:
    """Elementwise producers of ``v`` read only by ``members`` (recursively): a mask chain."""
    p = v.producer
    if p is None or depth == 0 or p in members or not is_pointwise(p, graph):
        return []
    if any(u not in members for u in graph.user_ops(p.results[0])) or \
            any(o is p.results[0] for o in graph.outputs):
        return []
    members.add(p)
    found = [p]
    for o in p.operands:
        if o is not None and not o.is_constant:
            found = _private_producers(graph, o, members, depth - 1) + found
    return found


def _head_chain(graph: Graph, v: Value, reader: Op) -> tuple[list[Op], Value]:
    """Head split ops (Reshape/Transpose, scale by a constant) producing ``v`` for ``reader``."""
    ops: list[Op] = []
    while v.producer is not None and _sole_user(graph, v) is reader:
        p = v.producer
        slot = 0 if p.type in LAYOUT_OPS else _is_scale(p)
        if slot is None:
            break
        data = p.operands[slot]
        ops.insert(0, p)
        reader, v = p, data
    return ops, v


def _softmax_is_last_axis(sm: Op) -> bool:
    rank = sm.results[0].type.rank
    if sm.type == "Softmax":
        return sm.attrs.get("axis", -1) % rank == rank - 1
    sums = [o for o in sm.attrs["body"].ops if o.type == "ReduceSum"]
    return bool(sums) and _reduced_axes(sums[0]) == (rank - 1,)


ATTENTION_PATTERN = op(("Softmax", "fused.softmax"), value("scores"), name="softmax")


def _attention_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    sm = m["softmax"]
    if sm.results[0].type.rank < 2 or not _softmax_is_last_axis(sm):
        return Refusal(f"{sm.label} does not normalise the last axis of a matrix")
    ops: list[Op] = [sm]
    members = set(ops)
    # downstream: an optional NaN guard Where(IsNaN(p), 0, p), then MatMul(p, V)
    probs = sm.results[0]
    readers = graph.user_ops(probs)
    if len(readers) == 2 and {r.type for r in readers} == {"IsNaN", "Where"}:
        isnan = next(r for r in readers if r.type == "IsNaN")
        where = next(r for r in readers if r.type == "Where")
        if where.operands[0] is isnan.results[0] and where.operands[2] is probs:
            ops += [isnan, where]
            probs = where.results[0]
    pv = _sole_user(graph, probs)
    if pv is None or pv.type != "MatMul" or pv.operands[0] is not probs:
        return Refusal(f"the probabilities %{probs.name} do not feed one MatMul(P, V) "
                       f"({_uses(graph, probs)} uses)")
    ops.append(pv)
    # upstream: [mask and scale steps] back to MatMul(Q, K^T)
    x, reader = sm.operands[0], sm
    for _ in range(6):
        p = x.producer
        if p is None:
            return Refusal(f"%{x.name} is not computed from MatMul(Q, K^T)")
        if p.type == "MatMul":
            break
        if _sole_user(graph, x) is not reader:
            return Refusal(f"%{x.name} ({p.label}) is used outside the attention block",
                           "multi_use")
        slot = _is_scale(p)
        if slot is not None:
            data = p.operands[slot]
        elif p.type in ("Add", "Where"):
            candidates = [o for o in (p.operands[1:] if p.type == "Where" else p.operands)
                          if o is not None and _leads_to_matmul(o)]
            if len(candidates) != 1:
                return Refusal(f"{p.label}: cannot tell the scores from the mask")
            data = candidates[0]
        else:
            return Refusal(f"{p.label} between MatMul(Q, K^T) and the softmax is not a scale "
                           f"or a mask")
        ops.append(p)
        members.add(p)
        for o in p.operands:
            if o is not None and o is not data and not o.is_constant:
                ops += _private_producers(graph, o, members | set(ops))
        x, reader = data, p
    else:
        return Refusal("no MatMul(Q, K^T) within six steps of the softmax")
    qk = x.producer
    if _sole_user(graph, x) is not reader:
        return Refusal(f"the scores %{x.name} are used outside the attention block", "multi_use")
    ops.append(qk)
    starts = []
    for operand, reader_op in ((qk.operands[0], qk), (qk.operands[1], qk), (pv.operands[1], pv)):
        chain, start = _head_chain(graph, operand, reader_op)
        ops += chain
        starts.append(start)
    split = starts[0].producer
    if split is not None and split.type == "Split" and all(s.producer is split for s in starts):
        members = set(ops)
        if all(u in members for r in split.results for u in graph.user_ops(r)):
            ops.append(split)
    # head merge: Transpose/Reshape readers of the result
    out = pv.results[0]
    while (u := _sole_user(graph, out)) is not None and u.type in LAYOUT_OPS \
            and u.operands[0] is out:
        ops.append(u)
        out = u.results[0]
    return Group(tuple(dict.fromkeys(ops)), out)


# ----------------------------------------------------------------------------- gelu


def _one_plus(inner: OpPattern) -> OpPattern:
    return op("Add", inner, const("c_one"), name="one_plus")


def _gelu_roots(prefix: str, one_plus: OpPattern) -> dict[str, OpPattern]:
    """x * (1 + f) * 0.5 in the three associations (operand order is the rewriter's job)."""
    return {
        f"{prefix}": op("Mul", op("Mul", value("x"), one_plus, name="x_sum"), const("c_half"),
                        name="root"),
        f"{prefix}-half-x": op("Mul", op("Mul", value("x"), const("c_half"), name="half_x"),
                               one_plus, name="root"),
        f"{prefix}-half-sum": op("Mul", value("x"), op("Mul", one_plus, const("c_half"),
                                                        name="half_sum"), name="root"),
    }


_ERF = op("Erf", op(("Div", "Mul"), value("x"), const("c_scale"), name="scale"), name="erf")
_CUBES = {"pow": op("Pow", value("x"), const("c_three"), name="cube"),
          "mul": op("Mul", op("Mul", value("x"), value("x"), name="square"), value("x"),
                    name="cube")}


def _tanh(cube: OpPattern) -> OpPattern:
    poly = op("Add", value("x"), op("Mul", cube, const("c_coef"), name="coef_cube"), name="poly")
    return op("Tanh", op("Mul", poly, const("c_k"), name="tanh_arg"), name="tanh")


GELU_PATTERNS: dict[str, OpPattern] = {
    **_gelu_roots("gelu-erf", _one_plus(_ERF)),
    **_gelu_roots("gelu-tanh", _one_plus(_tanh(_CUBES["pow"]))),
    **_gelu_roots("gelu-tanh-cube-mul", _one_plus(_tanh(_CUBES["mul"]))),
}


def _gelu_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    checks = [("c_one", 1.0), ("c_half", 0.5)]
    if "erf" in m:
        scale = m["scale"]
        checks.append(("c_scale", math.sqrt(2.0) if scale.type == "Div" else
                       1.0 / math.sqrt(2.0)))
    else:
        checks += [("c_coef", 0.044715), ("c_k", math.sqrt(2.0 / math.pi))]
        if "c_three" in m:
            checks.append(("c_three", 3.0))
    for key, want in checks:
        if not _close(m[key], want):
            got = _scalar(m[key])
            got_text = "not a scalar" if got is None else f"{got:.6g}"
            return Refusal(f"constant %{m[key].name} is {got_text}, GELU needs {want:.6g}",
                           "constants")
    return Group(tuple(m.ops), m.root.results[0])


# ----------------------------------------------------------------------------- layernorm


def _layernorm_patterns() -> dict[str, OpPattern]:
    squares = {"pow": op("Pow", value("d"), const("c_two"), name="square"),
               "mul": op("Mul", value("d"), value("d"), name="square")}
    out = {}
    for sq_name, sq in squares.items():
        var = op("ReduceMean", sq, variadic=True, name="var")
        std = op("Sqrt", op("Add", var, const("eps"), name="var_eps"), name="std")
        norms = {"div": op("Div", value("d"), std, name="norm"),
                 "rsqrt": op("Mul", value("d"), op("Reciprocal", std, name="inv_std"),
                             name="norm")}
        for n_name, norm in norms.items():
            scale = op("Mul", norm, const("gamma"), name="scale")
            out[f"layernorm-{sq_name}-{n_name}-affine"] = op("Add", scale, const("beta"),
                                                               name="shift")
            out[f"layernorm-{sq_name}-{n_name}-scale"] = scale
            out[f"layernorm-{sq_name}-{n_name}"] = norm
    return out


LAYERNORM_PATTERNS = _layernorm_patterns()


def _layernorm_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    d = m["d"]
    sub = d.producer
    if sub is None or sub.type != "Sub":
        return Refusal(f"%{d.name} is not x - mean(x)")
    x, mean_v = sub.operands
    mean = mean_v.producer
    if mean is None or mean.type != "ReduceMean" or mean.operands[0] is not x:
        return Refusal(f"%{d.name} is not x - ReduceMean(x)")
    rank = x.type.rank
    axes = _reduced_axes(mean)
    if not _trailing(axes, rank) or _reduced_axes(m["var"]) != axes:
        return Refusal("the two means do not reduce the same trailing axes with keepdims=1",
                       "shape")
    if "c_two" in m and not _close(m["c_two"], 2.0):
        return Refusal(f"%{m['c_two'].name} is not 2", "constants")
    eps = _scalar(m["eps"])
    if eps is None or not 0 <= eps < 1e-1:
        return Refusal(f"%{m['eps'].name} is not a small epsilon", "constants")
    if m.root.results[0].type.shape != x.type.shape:
        return Refusal(f"gamma or beta broadcast the result beyond {x.type}", "shape")
    return Group(tuple([mean, sub] + m.ops), m.root.results[0])


# ----------------------------------------------------------------------------- epilogues


CONTRACTION_PATTERN = op(tuple(CONTRACTIONS), value("a"), variadic=True, name="anchor")


def _epilogue_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    anchor = m["anchor"]
    ops, pending = [anchor], []
    cur = anchor.results[0]
    reason, key = "", None
    while True:
        user = _sole_user(graph, cur)
        if user is None:
            n = _uses(graph, cur)
            if n > 1:
                readers = ", ".join(u.label for u in graph.user_ops(cur)) or "none"
                reason = (f"%{cur.name} is used {n} times ({readers}"
                          f"{', a graph output' if cur in graph.outputs else ''}): an epilogue "
                          f"would leave it unwritten for the other readers")
                key = "multi_use"
            else:
                reason = f"%{cur.name} is {'a graph output' if n else 'not used'}"
            break
        if len(ops) + len(pending) >= options.max_ops:
            reason, key = f"the epilogue reached max-ops={options.max_ops}", "max_ops"
            break
        if user.type in LAYOUT_OPS and user.operands[0] is cur:
            pending.append(user)
            cur = user.results[0]
            continue
        if not is_pointwise(user, graph):
            reason = f"{user.label} reading %{cur.name} is not elementwise"
            break
        if user.results[0].type.shape != cur.type.shape:
            reason = (f"{user.label} broadcasts %{cur.name} from {cur.type} to "
                      f"{user.results[0].type}")
            key = "shape"
            break
        ops += pending + [user]
        pending = []
        cur = user.results[0]
    if len(ops) == 1:
        return Refusal(f"{anchor.label} has no epilogue: {reason}", key)
    return Group(tuple(ops), ops[-1].results[0])


# ----------------------------------------------------------------------------- ffn


FFN_PATTERN = op(("fused.matmul", "fused.gemm", "MatMul", "Gemm"), value("a"), variadic=True,
                 name="second")


def _data_operand(kernel: Op) -> Value | None:
    """The value a (fused) MatMul/Gemm kernel multiplies by its weights."""
    if kernel.type in ("MatMul", "Gemm"):
        return kernel.operands[0]
    body = kernel.attrs["body"]
    anchor = anchor_op(body)
    if anchor is None or anchor.type not in ("MatMul", "Gemm"):
        return None
    a = anchor.operands[0]
    names = [v.name for v in body.inputs]
    return kernel.operands[names.index(a.name)] if a.name in names else None


def _ffn_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    second = m["second"]
    x = _data_operand(second)
    if x is None:
        return Refusal(f"{second.label} does not multiply an input by weights")
    ops, reader = [second], second
    while x.producer is not None and x.producer.type in LAYOUT_OPS:
        if _sole_user(graph, x) is not reader:
            break
        reader = x.producer
        ops.insert(0, reader)
        x = reader.operands[0]
    first = x.producer
    if first is None or first.type not in ("fused.matmul", "fused.gemm"):
        return Refusal(f"%{x.name} does not come from a MatMul/Gemm kernel")
    acts = [o.type for o in first.attrs["body"].ops if o.type in FFN_ACTIVATIONS]
    if not acts:
        return Refusal(f"{first.label} has no GELU or ReLU activation")
    if _sole_user(graph, x) is not reader:
        return Refusal(f"the hidden activation %{x.name} is used {_uses(graph, x)} times",
                       "multi_use")
    return Group(tuple([first] + ops), second.results[0])


# ----------------------------------------------------------------------------- elementwise


def _elementwise_plan(graph: Graph, m: Match, options) -> Group | Refusal:
    root = m["root"]
    if not is_pointwise(root, graph):
        return Refusal(f"{root.label} is not elementwise")
    ops = [root]
    members = {root}
    frontier = [v for v in root.operands if v is not None]
    while frontier:
        v = frontier.pop(0)
        p = v.producer
        if p is None or p in members or not is_pointwise(p, graph):
            continue
        if any(u not in members for u in graph.user_ops(v)) or any(o is v for o in graph.outputs):
            continue
        if len(ops) >= options.max_ops:
            break  # the rest forms its own group when its root is visited
        ops.insert(0, p)
        members.add(p)
        frontier += [o for o in p.operands if o is not None]
    if len(ops) == 1:
        return Refusal(f"no elementwise producer of {root.label} is read only by it")
    return Group(tuple(ops), root.results[0])


# ----------------------------------------------------------------------------- stages


def _rules(patterns: dict[str, OpPattern], kind: str, plan, doc: str) -> tuple:
    return tuple(FusionRule(name, kind, plan, pattern, doc) for name, pattern in patterns.items())


STAGES: tuple[tuple[str, tuple[FusionRule, ...]], ...] = (
    ("softmax", _rules(SOFTMAX_PATTERNS, "softmax", _softmax_plan,
                       "Exp(x [- ReduceMax x]) / ReduceSum(Exp ...)")),
    ("attention", (FusionRule("attention", "attention", _attention_plan, ATTENTION_PATTERN,
                              "MatMul(Q, K^T) -> scale -> mask -> Softmax -> MatMul(., V)"),)),
    ("gelu", _rules(GELU_PATTERNS, "gelu", _gelu_plan, "decomposed GELU, erf or tanh form")),
    ("layernorm", _rules(LAYERNORM_PATTERNS, "layernorm", _layernorm_plan,
                         "decomposed LayerNorm")),
    ("epilogue", (FusionRule("contraction-epilogue", "contraction", _epilogue_plan,
                             CONTRACTION_PATTERN, "Conv/Gemm/MatMul -> elementwise chain"),)),
    ("ffn", (FusionRule("ffn", "ffn", _ffn_plan, FFN_PATTERN,
                        "MatMul+bias+activation -> MatMul+bias"),)),
    ("elementwise", (FusionRule("elementwise", "elementwise", _elementwise_plan, None,
                                "a tree of elementwise ops"),)),
)


def _kind(rule: FusionRule, group: Group) -> str:
    if rule.kind == "contraction":
        return CONTRACTIONS[group.ops[0].type]
    return rule.kind


@attrs.frozen
class FusionTrace:
    """One line of :meth:`FusePass.explain`: what ``rule`` decided for the op at ``stage``."""

    stage: str
    rule: str
    outcome: str  # "fuses", "no", or "fused" (the op is already inside a kernel)
    reason: str = ""
    partial: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.outcome == "no":
            got = f" (matched {', '.join(self.partial)})" if self.partial else ""
            return f"{self.stage}/{self.rule}: no: {self.reason}{got}"
        return f"{self.stage}/{self.rule}: {self.outcome}: {self.reason}"


@register_pass
class FusePass(Pass):
    name = "fuse"
    description = "fuse attention, GELU, LayerNorm, softmax, contraction epilogues, FFNs and " \
                  "elementwise chains into fused.* kernels"
    preserves = frozenset({"types"})

    @attrs.frozen
    class Options:
        max_ops: int = 16

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.skipped: list[tuple[str, str, str]] = []  # (op label, rule, reason) of the last run

    def run(self, graph: Graph) -> PassResult:
        if self.options.max_ops < 2:
            raise PassError(f"pass 'fuse': max-ops must be at least 2, got "
                            f"{self.options.max_ops}", self.name)
        stats: dict[str, int] = {}
        self.skipped = []
        for stage, rules in STAGES:
            self._run_stage(graph, rules, stats)
        counted = {k: v for k, v in stats.items() if not k.startswith("skipped")}
        total_skipped = sum(v for k, v in stats.items() if k.startswith("skipped_"))
        ordered = dict(sorted(counted.items()))
        ordered["skipped"] = total_skipped
        ordered.update(sorted((k, v) for k, v in stats.items() if k.startswith("skipped_")))
        return PassResult(graph, bool(counted), ordered)

    def _run_stage(self, graph: Graph, rules: Sequence[FusionRule], stats: dict[str, int],
                   record: bool = True) -> None:
        for root in reversed(graph.ops):  # consumers first: the largest group wins
            if root not in graph.nx:
                continue  # fused by an earlier group of this sweep
            for rule in rules:
                outcome = attempt(graph, rule, root, self.options)
                if isinstance(outcome, Refusal):
                    if outcome.key is not None and record:
                        stats[f"skipped_{outcome.key}"] = stats.get(f"skipped_{outcome.key}",
                                                                    0) + 1
                        self.skipped.append((root.label, rule.name, outcome.reason))
                    continue
                kind = _kind(rule, outcome)
                # attempt() checked convexity (group_problem): no cycle check needed
                graph.fuse(outcome.ops, f"fused.{kind}", check_cycle=False)
                stats[kind] = stats.get(kind, 0) + 1
                break

    def explain(self, graph: Graph, target: Op) -> list[FusionTrace]:
        """Why ``target`` is (not) fused: every rule's decision at it, stage by stage.

        The stages run on a copy of ``graph``; once ``target`` is inside a kernel the last
        entry names that kernel. Rules whose pattern starts at another op type are summarised
        in one line per stage.
        """
        g = graph.copy()
        name = target.results[0].name
        entries: list[FusionTrace] = []
        here = g.value(name).producer
        for stage, rules in STAGES:
            roots: list[str] = []
            for rule in rules:
                outcome = attempt(g, rule, here, self.options)
                if isinstance(outcome, Refusal):
                    if rule.pattern is not None and not outcome.partial and \
                            here.type not in rule.pattern.types:
                        roots += [t for t in rule.pattern.types if t not in roots]
                        continue  # summarised below: the rule does not start at this op type
                    entries.append(FusionTrace(stage, rule.name, "no", outcome.reason,
                                               outcome.partial))
                else:
                    entries.append(FusionTrace(stage, rule.name, "fuses",
                                               f"{len(outcome.ops)} ops into "
                                               f"fused.{_kind(rule, outcome)}"))
            if roots:
                entries.append(FusionTrace(stage, "*", "no", f"{here.type} is not the root of "
                                           f"any {stage} rule ({', '.join(roots)})"))
            self._run_stage(g, rules, {}, record=False)
            current = _locate(g, name)
            if current is None or current[1] or current[0] is not here:
                where = current[0].label if current is not None else "nothing (removed)"
                entries.append(FusionTrace(stage, "-", "fused",
                                           f"%{name} is now computed inside {where}"))
                return entries
        entries.append(FusionTrace("end", "-", "no", f"{target.label} stays unfused"))
        return entries


def _locate(g: Graph, name: str) -> tuple[Op, bool] | None:
    """(top-level op computing value ``name``, whether it is inside that op's body)."""
    if g.has_value(name):
        producer = g.value(name).producer
        return (producer, False) if producer is not None else None
    for o in g.ops:
        if o.type.startswith("fused.") and _body_has(o.attrs["body"], name):
            return o, True
    return None


def _body_has(body: Graph, name: str) -> bool:
    if body.has_value(name):
        return True
    return any(o.type.startswith("fused.") and _body_has(o.attrs["body"], name)
               for o in body.ops)


# ----------------------------------------------------------------------------- metrics


def kernel_count(graph: Graph) -> int:
    """Top-level ops that run as kernels: all but the free shape ops (:data:`FREE_OPS`)."""
    return sum(1 for o in graph.ops if not is_free(o))


def fused_counts(graph: Graph, nested: bool = True) -> dict[str, int]:
    """fused.* ops by kind, including those nested in other kernels' bodies."""
    counts: dict[str, int] = {}

    def visit(g: Graph) -> None:
        for o in g.ops:
            if o.type.startswith("fused."):
                kind = o.type.split(".", 1)[1]
                counts[kind] = counts.get(kind, 0) + 1
                if nested:
                    visit(o.attrs["body"])

    visit(graph)
    return dict(sorted(counts.items()))


def internal_bytes(graph: Graph) -> int:
    """Bytes of the values that fused kernels keep to themselves (no longer written to memory).

    Every result computed inside a body and not returned by it counts, nested bodies included,
    except the results of free shape ops (a Reshape's result is its operand's buffer).
    """
    total = 0

    def visit(body: Graph) -> int:
        n = 0
        outputs = set(body.outputs)
        for o in body.ops:
            if o.type.startswith("fused."):
                n += visit(o.attrs["body"])
            if is_free(o):
                continue
            n += sum(int(r.type.nbytes) for r in o.results if r not in outputs)
        return n

    for o in graph.ops:
        if o.type.startswith("fused."):
            total += visit(o.attrs["body"])
    return total
