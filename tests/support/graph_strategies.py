"""Hypothesis strategies that build random, valid tensorir graphs.

The graphs mix elementwise, matmul, reshape, transpose, split, concat and clip ops, constants
both small (printed inline) and large (printed as a digest), symbolic dims, optional operands,
multi-result ops, attributes of every kind, and names that need quoting.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tensorir import DType, Graph, TensorType

F32 = DType.float32
NAMES = st.sampled_from(["x", "h", "onnx::Gather_1", "/layer.0/Add_output_0", "t", "w", "a b",
                         "é", "0"])


def _shape(data, rank_max=3, symbolic=False):
    rank = data.draw(st.integers(1, rank_max), label="rank")
    shape = [data.draw(st.integers(1, 4), label="dim") for _ in range(rank)]
    if symbolic and data.draw(st.booleans(), label="symbolic"):
        shape[0] = "batch"
    return tuple(shape)


def _const(g, data, shape, large=None):
    """A seeded random float constant; ``large`` forces the digest form in the text."""
    if large is None:
        large = data.draw(st.booleans(), label="large const")
    if large:
        shape = tuple(shape) if np.prod(shape) > 16 else tuple(shape) + (17,)
    seed = data.draw(st.integers(0, 2**16), label="seed")
    arr = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if data.draw(st.booleans(), label="specials") and arr.size:
        arr.flat[0] = data.draw(st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30]))
    return g.add_constant(g.unique_name(data.draw(NAMES, label="cname")), arr)


def _name(g, data):
    return g.unique_name(data.draw(NAMES, label="name"))


@st.composite
def random_graphs(draw, max_ops: int = 8, symbolic: bool = True):
    data = draw(st.data())
    g = Graph(draw(st.sampled_from(["g", "model", "my graph"])))
    n_inputs = draw(st.integers(1, 2))
    values = [g.add_input(_name(g, data), TensorType(_shape(data, symbolic=symbolic), F32))
              for _ in range(n_inputs)]
    for _ in range(draw(st.integers(1, max_ops))):
        x = draw(st.sampled_from(values))
        kind = draw(st.sampled_from(["unary", "binary", "matmul", "transpose", "reshape",
                                     "split", "concat", "clip", "self"]))
        loc = draw(st.sampled_from(["", "node/1", 'quo"te', "ünï"]))
        name = dict(name=loc, result_names=None)
        if kind == "unary":
            op_type, attrs = draw(st.sampled_from([
                ("Relu", {}), ("Exp", {}), ("Tanh", {}), ("Sigmoid", {}),
                ("Gelu", {"approximate": "tanh"}), ("LeakyRelu", {"alpha": 0.125}),
                ("Elu", {"alpha": 1e-5})]))
            op = g.add_op(op_type, [x], attrs, **name)
        elif kind == "binary":
            trailing = x.shape[draw(st.integers(0, len(x.shape) - 1)):]
            if any(isinstance(d, str) for d in trailing):
                trailing = x.shape[-1:] if isinstance(x.shape[-1], int) else ()
            other = _const(g, data, trailing or (1,), large=False)
            op_type = draw(st.sampled_from(["Add", "Sub", "Mul"]))
            op = g.add_op(op_type, [x, other] if draw(st.booleans()) else [other, x], **name)
        elif kind == "matmul":
            if not isinstance(x.shape[-1], int):
                continue
            w = _const(g, data, (x.shape[-1], draw(st.integers(1, 5))), large=False)
            if draw(st.booleans()):
                w = _const(g, data, (x.shape[-1], 17))  # large: digest form
            op = g.add_op("MatMul", [x, w], **name)
        elif kind == "transpose":
            perm = draw(st.permutations(range(len(x.shape))))
            op = g.add_op("Transpose", [x], {"perm": list(perm)}, **name)
        elif kind == "reshape":
            shape = g.add_constant(_name(g, data), np.array([0, -1], np.int64)) \
                if len(x.shape) >= 2 else g.add_constant(_name(g, data), np.array([-1], np.int64))
            op = g.add_op("Reshape", [x, shape], **name)
        elif kind == "split":
            axis = len(x.shape) - 1
            if not isinstance(x.shape[axis], int) or x.shape[axis] % 2:
                continue
            op = g.add_op("Split", [x], {"axis": axis, "num_outputs": 2}, **name)
        elif kind == "concat":
            op = g.add_op("Concat", [x, x], {"axis": -1}, **name)
        elif kind == "clip":
            hi = g.add_constant(_name(g, data), np.array(0.5, np.float32))
            op = g.add_op("Clip", [x, None, hi], **name)
        else:  # an op reading the same value twice: two edges
            op = g.add_op("Mul", [x, x], **name)
        values.extend(op.results)
    n_out = draw(st.integers(1, min(3, len(values))))
    g.set_outputs(draw(st.permutations(values))[:n_out])
    return g
