"""Batch-norm folding: an inference BatchNormalization after a Conv becomes the Conv's weights.

    BN(Conv(x, W, b), s, β, μ, σ², ε) -> Conv(x, W·a, (b - μ)·a + β),  a = s / sqrt(σ² + ε)

per output channel (``a`` scales W along its first axis), computed in float64 and cast back
(W chunk by chunk inside the ufunc: a float64 copy of every weight cost more than the fold).
The light ONNX models (Caffe2 exports) follow each BN with a per-channel Mul and Add; those fold
the same way, into the Conv before them or into a BN that has no Conv to fold into:

    Conv(x, W, b) ⊙ c -> Conv(x, W ⊙ c, b ⊙ c)      for ⊙ in *, /   and c per channel
    Conv(x, W, b) ⊕ c -> Conv(x, W, b ⊕ c)          for ⊕ in +, -
    BN(x, s, β, μ, σ²) ⊙ c -> BN(x, s ⊙ c, β ⊙ c, μ, σ²)
    BN(x, s, β, μ, σ²) ⊕ c -> BN(x, s, β ⊕ c, μ, σ²)

A fold needs the folded op's result to have no other use (nor be a graph output) and every
weight to be a constant with data. Counters: ``folded`` (Conv + BN), ``affine_into_conv``,
``affine_into_bn``, and ``refused_<reason>`` for BNs and for Mul/Add/Sub/Div after a Conv or BN
that stay: ``not_after_conv``, ``used_elsewhere``, ``not_constant``, ``not_per_channel``,
``divides_by_zero``.
"""

from __future__ import annotations

import logging

import numpy as np

from tensorir.ir import CONST, Graph, Op, Value

from ._rewire import forward
from .base import Pass, PassResult, register_pass

logger = logging.getLogger(__name__)

_AFFINE = ("Mul", "Div", "Add", "Sub")


class _Refusal(Exception):
    """Why a fold does not apply: ``key`` names the counter, the message the details."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _stored(v: Value | None, what: str) -> np.ndarray:
    """A constant operand's data as stored."""
    if v is None or v.kind != CONST or v.data is None:
        name = "absent" if v is None else f"%{v.name}"
        raise _Refusal("not_constant", f"{what} ({name}) is not a constant with data")
    return v.data


def _data(v: Value | None, what: str) -> np.ndarray:
    """A constant operand's data in float64."""
    return np.asarray(_stored(v, what), dtype=np.float64)


def _channelwise(ufunc: np.ufunc, t: np.ndarray, per_channel: np.ndarray,
                 dtype: np.dtype) -> np.ndarray:
    """``ufunc(t, c)`` with ``c[i]`` applied along ``t``'s first axis, computed in float64 and
    stored as ``dtype``: bit for bit ``ufunc(float64(t), c).astype(dtype)``, without the
    float64 copies (the ufunc casts its operands and its result in small chunks)."""
    c = per_channel.reshape((-1,) + (1,) * (t.ndim - 1))
    return ufunc(t, c, out=np.empty(t.shape, dtype), dtype=np.float64, casting="unsafe")


def _sole_use(graph: Graph, producer: Op, user: Op) -> None:
    r = producer.results[0]
    uses = graph.users(r)
    if len(producer.results) != 1 or graph.is_output(r) or [u for u, _ in uses] != [user]:
        raise _Refusal("used_elsewhere", f"%{r.name} ({producer.label}) has other uses")


def _per_channel(c: Value, y: Value, result: Value) -> np.ndarray:
    """Constant ``c`` as a vector over dim 1 of ``y`` (all its other dims broadcast)."""
    data = _data(c, "the constant operand")
    if result.type != y.type:
        raise _Refusal("not_per_channel", f"%{c.name}: {c.type} broadcasts {y.type} to "
                                          f"{result.type}")
    rank = y.type.rank
    aligned = data.reshape((1,) * (rank - data.ndim) + data.shape)
    if rank < 2 or any(n != 1 for i, n in enumerate(aligned.shape) if i != 1):
        raise _Refusal("not_per_channel", f"%{c.name}: {c.type} is not one value per channel "
                                          f"of {y.type}")
    return np.broadcast_to(aligned, (1, y.shape[1]) + (1,) * (rank - 2)).reshape(-1)


def _conv_weights(conv: Op) -> tuple[np.ndarray, np.ndarray]:
    """The Conv's weight as stored and its bias in float64 (zeros when it has none)."""
    w = _stored(conv.operands[1], "the Conv weight")
    b = conv.operands[2] if len(conv.operands) > 2 else None
    bias = np.zeros(w.shape[0]) if b is None else _data(b, "the Conv bias")
    return w, bias


def _bn_params(bn: Op) -> list[np.ndarray]:
    return [_data(v, what) for v, what in zip(bn.operands[1:], ("scale", "B", "mean", "var"))]


def _affine(op: Op) -> tuple[Value, Value]:
    """(y, c) of ``y ⊙ c``: c must be the right operand of Sub and Div."""
    a, b = op.operands
    if op.type in ("Mul", "Add") and a.kind == CONST and b.kind != CONST:
        return b, a
    return a, b


class _Folder:
    """One sweep over the graph; each ``fold_*`` returns the counter of what it did or raises
    a :class:`_Refusal`."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def _constant(self, like: Value, data: np.ndarray, suffix: str) -> Value:
        g = self.graph
        return g.add_constant(g.unique_name(f"{like.name}_{suffix}"),
                              data.astype(like.dtype.numpy, copy=False))

    def _replace(self, old_ops: list[Op], op_type: str, operands: list[Value | None],
                 template: Op) -> None:
        """A new ``op_type`` op (``template``'s attributes) takes over the last op's result."""
        g = self.graph
        last = old_ops[-1]
        source = tuple(dict.fromkeys(s for o in old_ops for s in o.source))
        new = g.add_op(op_type, operands, dict(template.attrs), name=template.name,
                       source=source)
        forward(g, last.results[0], new.results[0], take_name=True)
        for o in reversed(old_ops):
            g.remove_op(o)

    def fold_bn(self, bn: Op) -> str:
        conv = bn.operands[0].producer
        if conv is None or conv.type != "Conv":
            what = "an input" if conv is None else conv.label
            raise _Refusal("not_after_conv", f"{bn.label} reads {what}, not a Conv")
        _sole_use(self.graph, conv, bn)
        w, b = _conv_weights(conv)
        scale, beta, mean, var = _bn_params(bn)
        a = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        weight = conv.operands[1]
        w2 = _channelwise(np.multiply, w, a, weight.dtype.numpy)
        b2 = (b - mean) * a + beta
        self._replace([conv, bn], "Conv", [conv.operands[0], self._constant(weight, w2, "bn"),
                                           self._constant(weight, b2, "bn_bias")], conv)
        return "folded"

    def fold_affine(self, op: Op) -> str | None:
        y, c = _affine(op)
        producer = y.producer
        if c.kind != CONST or producer is None or producer.type not in ("Conv",
                                                                        "BatchNormalization"):
            return None  # not a candidate: no constant, or nothing to fold into
        v = _per_channel(c, y, op.results[0])
        if op.type == "Div" and not np.all(v != 0):
            raise _Refusal("divides_by_zero", f"%{c.name} has a zero channel")
        _sole_use(self.graph, producer, op)
        scaling = op.type in ("Mul", "Div")
        ufunc = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[op.type]

        def apply(t: np.ndarray, like: Value) -> np.ndarray:
            return _channelwise(ufunc, t, v, like.dtype.numpy)

        if producer.type == "Conv":
            w, b = _conv_weights(producer)
            weight = producer.operands[1]
            new_w = self._constant(weight, apply(w, weight), "scaled") if scaling else weight
            self._replace([producer, op], "Conv",
                          [producer.operands[0], new_w,
                           self._constant(weight, apply(b, weight), "bias")], producer)
            return "affine_into_conv"
        scale, beta, _, _ = _bn_params(producer)
        s, bias = producer.operands[1], producer.operands[2]
        new_s = self._constant(s, apply(scale, s), "scaled") if scaling else s
        self._replace([producer, op], "BatchNormalization",
                      [producer.operands[0], new_s,
                       self._constant(bias, apply(beta, bias), "shifted"),
                       *producer.operands[3:]], producer)
        return "affine_into_bn"


@register_pass
class FoldBatchNorm(Pass):
    name = "fold-batchnorm"
    description = "fold inference BatchNormalization and per-channel arithmetic into a Conv"
    preserves = frozenset({"types"})

    def run(self, graph: Graph) -> PassResult:
        stats = dict.fromkeys(("folded", "affine_into_conv", "affine_into_bn",
                               "refused_not_after_conv", "refused_used_elsewhere",
                               "refused_not_constant", "refused_not_per_channel",
                               "refused_divides_by_zero"), 0)
        folder = _Folder(graph)
        for o in graph.ops:  # producers first: a BN folds before the Mul after it is visited
            if o not in graph.nx:
                continue  # folded into an op before it
            try:
                if o.type == "BatchNormalization":
                    outcome = folder.fold_bn(o)
                elif o.type in _AFFINE:
                    outcome = folder.fold_affine(o)
                else:
                    continue
            except _Refusal as why:
                stats[f"refused_{why.key}"] += 1
                logger.debug("fold-batchnorm: %s not folded: %s", o.label, why)
                continue
            if outcome:
                stats[outcome] += 1
        changed = stats["folded"] + stats["affine_into_conv"] + stats["affine_into_bn"]
        return PassResult(graph, changed > 0, stats)
