"""Hypothesis strategies for the fusion pass: random DAGs that fusion has something to do on.

The graphs are made of what fusion groups: elementwise ops (unary, binary with another value or
with a bias constant, a decomposed GELU in either form), MatMuls (by a weight or by another
value's transpose), Reshapes and Transposes; values are reused freely, so intermediates with
several readers (which must not be fused away) and graph outputs in the middle of chains are
common.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from tensorir import DType, Graph, TensorType, Value

F32 = DType.float32
UNARY = ["Relu", "Tanh", "Sigmoid", "Neg", "Gelu", "Abs"]
BINARY = ["Add", "Sub", "Mul", "Max"]


def _const(g: Graph, data: np.ndarray, base: str = "c") -> Value:
    return g.add_constant(g.unique_name(base), np.asarray(data, np.float32))


def _gelu_erf(g: Graph, x: Value, order: int) -> Value:
    """x * 0.5 * (1 + erf(x / sqrt 2)) in one of three associations."""
    div = g.add_op("Div", [x, _const(g, math.sqrt(2.0))]).result
    one_plus = g.add_op("Add", [_const(g, 1.0), g.add_op("Erf", [div]).result]).result
    half = _const(g, 0.5)
    if order == 0:
        return g.add_op("Mul", [g.add_op("Mul", [x, one_plus]).result, half]).result
    if order == 1:
        return g.add_op("Mul", [one_plus, g.add_op("Mul", [half, x]).result]).result
    return g.add_op("Mul", [x, g.add_op("Mul", [one_plus, half]).result]).result


def _gelu_tanh(g: Graph, x: Value) -> Value:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), GPT-2's form."""
    cube = g.add_op("Pow", [x, _const(g, 3.0)]).result
    poly = g.add_op("Add", [x, g.add_op("Mul", [cube, _const(g, 0.044715)]).result]).result
    t = g.add_op("Tanh", [g.add_op("Mul", [poly, _const(g, math.sqrt(2 / math.pi))]).result])
    one_plus = g.add_op("Add", [t.result, _const(g, 1.0)]).result
    return g.add_op("Mul", [g.add_op("Mul", [x, _const(g, 0.5)]).result, one_plus]).result


@st.composite
def fusable_graphs(draw, max_ops: int = 12) -> Graph:
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="seed"))
    g = Graph("fz")
    shape = (draw(st.integers(1, 2)), draw(st.sampled_from([2, 3])), draw(st.sampled_from([2, 4])))
    values = [g.add_input("x", TensorType(shape, F32))]
    if draw(st.booleans(), label="second input"):
        values.append(g.add_input("y", TensorType(shape, F32)))
    for _ in range(draw(st.integers(2, max_ops), label="steps")):
        # mostly extend the newest value (chains), sometimes reuse an older one (branches)
        x = draw(st.sampled_from(values[-1:] * len(values) + values), label="operand")
        kind = draw(st.sampled_from(["unary", "binary", "bias", "matmul", "matmul_t", "reshape",
                                     "transpose", "gelu"]), label="kind")
        if kind == "unary":
            out = g.add_op(draw(st.sampled_from(UNARY)), [x]).result
        elif kind == "binary":
            same = [v for v in values if v.shape == x.shape]
            other = draw(st.sampled_from(same), label="other")
            pair = [x, other] if draw(st.booleans()) else [other, x]
            out = g.add_op(draw(st.sampled_from(BINARY)), pair).result
        elif kind == "bias":
            bias = _const(g, rng.standard_normal(x.shape[-1:]), "bias")
            pair = [x, bias] if draw(st.booleans()) else [bias, x]
            out = g.add_op(draw(st.sampled_from(["Add", "Mul"])), pair).result
        elif kind == "matmul":
            k = draw(st.sampled_from([2, 3, 4]))
            w = _const(g, rng.standard_normal((x.shape[-1], k)) / math.sqrt(x.shape[-1]), "w")
            out = g.add_op("MatMul", [x, w]).result
        elif kind == "matmul_t":  # x @ x^T: a MatMul of two computed values
            if len(x.shape) < 2:
                continue
            perm = list(range(len(x.shape) - 2)) + [len(x.shape) - 1, len(x.shape) - 2]
            xt = g.add_op("Transpose", [x], {"perm": perm}).result
            out = g.add_op("MatMul", [x, xt]).result
        elif kind == "reshape":
            if len(x.shape) >= 3:
                target = [int(np.prod(x.shape[:-1])), x.shape[-1]]
            else:
                target = [1] + list(x.shape)
            out = g.add_op("Reshape", [x, g.add_constant(g.unique_name("shape"),
                                                         np.array(target, np.int64))]).result
        elif kind == "transpose":
            if len(x.shape) < 2:
                continue
            perm = list(range(len(x.shape)))
            perm[-1], perm[-2] = perm[-2], perm[-1]
            out = g.add_op("Transpose", [x], {"perm": perm}).result
        else:
            form = draw(st.integers(0, 3), label="gelu form")
            out = _gelu_tanh(g, x) if form == 3 else _gelu_erf(g, x, form)
        values.append(out)
    computed = [v for v in values if v.producer is not None]
    extra = draw(st.lists(st.sampled_from(computed), max_size=2, unique=True), label="outputs")
    g.set_outputs([values[-1]] + [v for v in extra if v is not values[-1]])
    return g


def feeds_for(g: Graph, seed: int = 0, bind: dict | None = None) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs; symbolic dims take their value from ``bind``."""
    rng = np.random.default_rng(seed)
    bind = bind or {}
    feeds = {}
    for v in g.inputs:
        shape = tuple(bind.get(d, 2) if isinstance(d, str) else d for d in v.shape)
        feeds[v.name] = rng.standard_normal(shape).astype(v.dtype.numpy)
    return feeds
