"""Shared helpers for op tests: one-op graphs through our interpreter, onnx.reference and
onnxruntime, and the comparison of their results."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnxruntime as ort
from hypothesis import strategies as st
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tensorir import DType, Graph, TensorType
from tensorir.interpreter import interpret
from tensorir.ops import op_context, get_op_def

ONNX_OPSET = 21


def i64(*values: int) -> np.ndarray:
    """A 1-D int64 array: the form of ONNX's shape, axes and index operands."""
    return np.array(values, dtype=np.int64)


@st.composite
def shape_and_axes(draw, min_dim: int = 1, max_dim: int = 4, max_rank: int = 4):
    """A shape of rank 1 to ``max_rank`` and a non-empty list of distinct axes of it, each
    drawn from [-rank, rank) (so negative and positive spellings both occur)."""
    shape = tuple(draw(st.lists(st.integers(min_dim, max_dim), min_size=1, max_size=max_rank)))
    rank = len(shape)
    axes = draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                         unique_by=lambda a: a % rank))
    return shape, axes


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


def ort_reference(op_type: str, arrays: Sequence[np.ndarray | None],
                  attrs: dict | None = None, opset: int = ONNX_OPSET) -> list[np.ndarray]:
    """The node through onnxruntime (used where onnx.reference has known bugs); ``None``
    arrays are omitted optional inputs. The one result has the first operand's dtype."""
    names = ["" if a is None else f"x{i}" for i, a in enumerate(arrays)]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in zip(names, arrays) if a is not None]
    out = helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(arrays[0].dtype),
                                        None)
    node = helper.make_node(op_type, names, ["y"], **(attrs or {}))
    model = helper.make_model(helper.make_graph([node], "g", ins, [out]),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: a for n, a in zip(names, arrays) if a is not None})


def assert_results_match(ours: Sequence[np.ndarray], ref: Sequence[Any], rtol: float = 0.0,
                         atol: float = 0.0) -> None:
    """Same number of results, each of the same shape and dtype, and equal values: exactly
    (NaN equal to NaN) at the default zero tolerances, else within ``rtol`` and ``atol``."""
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        b = np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        if rtol == 0 and atol == 0:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def check_op(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
             ref: Callable[..., list] = onnx_reference, *, rtol: float,
             atol: float) -> np.ndarray:
    """The one result of a one-op graph against ``ref``'s (same shape and dtype, values within
    ``rtol``/``atol``); returns ours."""
    (ours,) = run_op(op_type, arrays, attrs)
    (want,) = ref(op_type, arrays, attrs)
    assert_results_match([ours], [want], rtol=rtol, atol=atol)
    return ours


def flops_of(op_type: str, arrays: Sequence[np.ndarray | None], attrs: dict | None = None,
             const_inputs: Sequence[int] = ()) -> int:
    g, op = build_op(op_type, arrays, attrs, const_inputs)
    return get_op_def(op_type).flops(op_context(op))
