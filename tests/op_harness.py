"""Shared helpers for op tests: one-op graphs through our interpreter and onnx.reference."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tensorir import DType, Graph, TensorType
from tensorir.interpreter import interpret
from tensorir.ops import op_context, get_op_def

ONNX_OPSET = 21


def build_op(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
             const_inputs: Sequence[int] = (), n_results: int | None = None) -> tuple[Graph, Any]:
    """A graph holding one op; operands in ``const_inputs`` become constants, the rest inputs."""
    g = Graph(op_type.lower())
    operands = []
    for i, a in enumerate(arrays):
        if a is None:
            operands.append(None)
        elif i in const_inputs:
            operands.append(g.add_constant(f"c{i}", np.asarray(a)))
        else:
            a = np.asarray(a)
            operands.append(g.add_input(f"x{i}", TensorType(a.shape, DType.from_numpy(a.dtype))))
    op = g.add_op(op_type, operands, attrs or {})
    g.set_outputs(op.results)
    return g, op


def run_op(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
           const_inputs: Sequence[int] = ()) -> list[np.ndarray]:
    """Evaluate one op through the interpreter and check results match the inferred types."""
    g, op = build_op(op_type, arrays, attrs, const_inputs)
    feeds = {v.name: np.asarray(arrays[int(v.name[1:])]) for v in g.inputs}
    out = interpret(g, feeds)
    results = [out[r.name] for r in op.results]
    for r, a in zip(op.results, results):
        assert tuple(a.shape) == tuple(r.type.shape), (op_type, r.type, a.shape)
        assert a.dtype == r.type.dtype.numpy, (op_type, r.type, a.dtype)
    return results


def onnx_reference(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
                   n_outputs: int = 1, opset: int = ONNX_OPSET, domain: str = "") -> list[np.ndarray]:
    """Evaluate the same node with onnx's reference implementation."""
    names = ["" if a is None else f"x{i}" for i, a in enumerate(arrays)]
    onnx_attrs = {}
    for k, v in (attrs or {}).items():
        onnx_attrs[k] = numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v
    node = helper.make_node(op_type, names, [f"y{i}" for i in range(n_outputs)], domain=domain,
                            **onnx_attrs)
    sess = ReferenceEvaluator(node, opsets={"": opset})
    feeds = {n: np.asarray(a) for n, a in zip(names, arrays) if a is not None}
    return list(sess.run(None, feeds))


def flops_of(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
             const_inputs: Sequence[int] = ()) -> int:
    g, op = build_op(op_type, arrays, attrs, const_inputs)
    return get_op_def(op_type).flops(op_context(op))
