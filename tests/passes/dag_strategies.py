"""Hypothesis strategies for the graph-pass tests: random DAGs the passes have work on.

:func:`random_dags` mixes elementwise, matmul, reshape and transpose ops whose operands are
earlier values (so results are reused, and some ops read only constants), with constants that
are random, all ones or zeros, or one value broadcast (as weight-stripped models hold); it
repeats ops and constants (for CSE), adds ops that leave their operand as it is (for simplify)
and makes graph outputs of inputs and constants now and then.

:func:`conv_bn_graphs` builds Conv -> BatchNormalization -> per-channel arithmetic chains, with
the variations fold-batchnorm must refuse (a shared Conv result, a non-constant weight, a BN
after a Relu, a constant that is not one value per channel).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tensorir import DType, Graph, TensorType
from tensorir.ops.registry import get_op_def

F32 = DType.float32


def _shape(draw, rank_max: int = 3) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=rank_max)))


def _const(draw, g: Graph, shape: tuple[int, ...], name: str = "c"):
    kind = draw(st.sampled_from(["random", "random", "ones", "zeros", "uniform"]))
    if kind == "random":
        seed = draw(st.integers(0, 2**16))
        data = np.random.default_rng(seed).uniform(0.5, 1.5, shape).astype(np.float32)
        if draw(st.booleans()):
            data = -data
    elif kind == "ones":
        data = np.ones(shape, np.float32)
    elif kind == "zeros":
        data = np.zeros(shape, np.float32)
    else:  # a weight-stripped constant: one value, zero strides
        data = np.broadcast_to(np.float32(draw(st.sampled_from([0.02, 1.0, -0.5]))), shape)
    return g.add_constant(g.unique_name(name), data)


def _suffix_shape(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to ``shape`` (a suffix of it, some dims replaced by 1)."""
    if not shape:
        return ()
    suffix = shape[draw(st.integers(0, len(shape) - 1)):]
    return tuple(1 if draw(st.booleans()) else d for d in suffix)


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


UNARY = [("Relu", {}), ("Neg", {}), ("Tanh", {}), ("Sigmoid", {}), ("Identity", {}),
         ("Cast", {"to": 1}), ("Dropout", {}), ("Dropout", {"num_outputs": 2})]
BINARY = ["Add", "Sub", "Mul", "Div", "Max"]


def _reshape_specs(shape: tuple[int, ...]) -> list[list[int]]:
    specs = [[-1], list(shape), [1, *shape], [*shape, 1]]
    if len(shape) >= 2:
        specs += [[0, -1], [-1, shape[-1]]]
    return specs


@st.composite
def random_dags(draw, max_ops: int = 10):
    """A graph of up to ``max_ops`` ops over 1-2 inputs, with static shapes (see the module)."""
    g = Graph("dag")
    pool = [g.add_input(f"x{i}", TensorType(_shape(draw), F32))
            for i in range(draw(st.integers(1, 2)))]
    for _ in range(draw(st.integers(0, 2))):  # constant leaves: ops reading only constants
        pool.append(_const(draw, g, _shape(draw), "leaf"))
    for _ in range(draw(st.integers(1, max_ops))):
        # the latest value half of the time, so that chains (transpose and reshape pairs) form
        x = pool[-1] if draw(st.booleans()) else draw(st.sampled_from(pool))
        kind = draw(st.sampled_from(["unary", "binary", "binary", "matmul", "reshape",
                                     "transpose", "transpose", "shape-op", "repeat"]))
        if kind == "unary":
            op_type, attrs = draw(st.sampled_from(UNARY))
            op = g.add_op(op_type, [x], attrs)
        elif kind == "binary":
            partners = [v for v in pool if _broadcasts(v.shape, x.shape)]
            if draw(st.booleans()):
                y = draw(st.sampled_from(partners))
            else:
                y = _const(draw, g, _suffix_shape(draw, x.shape))
            op_type = draw(st.sampled_from(BINARY))
            op = g.add_op(op_type, [x, y] if draw(st.booleans()) else [y, x])
        elif kind == "matmul":
            if not x.shape:
                continue
            k = x.shape[-1]
            others = [v for v in pool if len(v.shape) == 2 and v.shape[0] == k]
            w = (draw(st.sampled_from(others)) if others and draw(st.booleans())
                 else _const(draw, g, (k, draw(st.integers(1, 4))), "w"))
            op = g.add_op("MatMul", [x, w])
        elif kind == "reshape":
            spec = draw(st.sampled_from(_reshape_specs(x.shape)))
            op = g.add_op("Reshape", [x, g.add_constant(g.unique_name("s"),
                                                         np.array(spec, np.int64))])
        elif kind == "transpose":
            perm = draw(st.permutations(range(len(x.shape))))
            op = g.add_op("Transpose", [x], {"perm": list(perm)})
        elif kind == "shape-op":
            which = draw(st.sampled_from(["unsqueeze", "squeeze", "expand", "flatten"]))
            if which == "unsqueeze":
                axes = np.array([draw(st.integers(0, len(x.shape)))], np.int64)
                op = g.add_op("Unsqueeze", [x, g.add_constant(g.unique_name("axes"), axes)])
            elif which == "squeeze":
                op = g.add_op("Squeeze", [x])
            elif which == "expand":
                target = x.shape if draw(st.booleans()) else (2, *x.shape)
                op = g.add_op("Expand", [x, g.add_constant(g.unique_name("shape"),
                                                            np.array(target, np.int64))])
            else:
                op = g.add_op("Flatten", [x], {"axis": draw(st.integers(0, len(x.shape)))})
        else:  # repeat an earlier op (commuted if commutative) or a constant: CSE's work
            earlier = g.ops
            if earlier and draw(st.booleans()):
                o = draw(st.sampled_from(earlier))
                operands = list(o.operands)
                if get_op_def(o.type).commutative:
                    operands.reverse()
                op = g.add_op(o.type, operands, dict(o.attrs))
            else:
                c = draw(st.sampled_from([v for v in g.constants if v.dtype == F32] or [None]))
                if c is None:
                    continue
                pool.append(g.add_constant(g.unique_name(c.name), c.data.copy()))
                continue
        pool.extend(r for r in op.results if r.dtype == F32)
    results = [v for v in pool if v.kind == "result"] or pool
    outs = draw(st.lists(st.sampled_from(results), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 9)) == 0:  # an input or a constant as a graph output
        outs.append(draw(st.sampled_from([v for v in pool if v.kind != "result"])))
    g.set_outputs(outs)
    return g


def dag_feeds(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.shape).astype(v.dtype.numpy) for v in g.inputs}


@st.composite
def conv_bn_graphs(draw):
    """Conv -> BatchNormalization -> per-channel Mul/Add/Sub/Div chains over one NCHW input."""
    g = Graph("convbn")
    c_in = draw(st.sampled_from([2, 4]))
    x = g.add_input("x", TensorType((1, c_in, 5, 5), F32))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    h, extra_outputs = x, []
    for layer in range(draw(st.integers(1, 3))):
        channels = h.shape[1]
        group = draw(st.sampled_from([g_ for g_ in (1, 2) if channels % g_ == 0]))
        m = draw(st.sampled_from([2, 4]))
        fan_in = channels // group * 9  # He initialisation keeps the values near 1
        w = g.add_constant(g.unique_name("w"), (rng.standard_normal((m, channels // group, 3, 3))
                                                * np.sqrt(2 / fan_in)).astype(np.float32))
        operands = [h, w]
        if draw(st.booleans()):
            operands.append(g.add_constant(g.unique_name("b"),
                                           rng.standard_normal(m).astype(np.float32)))
        if draw(st.integers(0, 5)) == 0:  # a weight computed at run time: refused
            operands[1] = g.add_op("Neg", [w]).result
        conv = g.add_op("Conv", operands, {"pads": [1, 1, 1, 1], "group": group}).result
        if draw(st.integers(0, 5)) == 0:  # the Conv result read elsewhere: refused
            extra_outputs.append(g.add_op("Relu", [conv]).result)
        bn_in = g.add_op("Relu", [conv]).result if draw(st.integers(0, 5)) == 0 else conv
        params = [rng.uniform(0.5, 1.5, m), rng.standard_normal(m), rng.standard_normal(m),
                  rng.uniform(0.5, 1.5, m)]
        bn = g.add_op("BatchNormalization",
                      [bn_in, *(g.add_constant(g.unique_name(n), p.astype(np.float32))
                                for n, p in zip(("scale", "beta", "mean", "var"), params))],
                      {"epsilon": draw(st.sampled_from([1e-5, 1e-3]))}).result
        h = bn
        for _ in range(draw(st.integers(0, 2))):
            op_type = draw(st.sampled_from(["Mul", "Add", "Sub", "Div"]))
            shape = draw(st.sampled_from([(m, 1, 1), (1, m, 1, 1), (), (1,), (1, 1, 1, 5)]))
            data = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            c = g.add_constant(g.unique_name("c"), data)
            swap = op_type in ("Mul", "Add") and draw(st.booleans())
            h = g.add_op(op_type, [c, h] if swap else [h, c]).result
        h = g.add_op("Relu", [h]).result if draw(st.booleans()) else h
    g.set_outputs([h, *extra_outputs])
    return g
