"""Run any graph on NumPy.

:class:`Interpreter` walks the graph's deterministic topological order and calls each op's
registered evaluation. Variants override one method, as in torch.fx: ``run_op`` to trace,
profile or replace the evaluation of some ops.

>>> import numpy as np
>>> from tensorir import Graph, TensorType, DType
>>> from tensorir.interpreter import interpret
>>> g = Graph("double")
>>> x = g.add_input("x", TensorType((2,), DType.float32))
>>> g.set_outputs([g.add_op("Add", [x, x]).result])
>>> interpret(g, {"x": np.array([1, 2], np.float32)})["add"]
array([2., 4.], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import dims as _dims
from .errors import InterpreterError, TensorIRError, UnboundDimError
from .ir import Graph, Op, Value
from .ops.registry import get_op_def, op_context


class Interpreter:
    """Evaluates a graph op by op; subclass and override :meth:`run_op` to change one step."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.env: dict[Value, np.ndarray] = {}

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Evaluate with ``inputs`` by input name; returns the outputs by name."""
        g = self.graph
        self.env = {}
        bindings: dict[str, int] = {}
        given = dict(inputs)
        for v in g.inputs:
            if v.name not in given:
                raise InterpreterError(f"graph {g.name!r}: missing input %{v.name} ({v.type})")
            self.env[v] = self._check_input(v, given.pop(v.name), bindings)
        if given:
            raise InterpreterError(f"graph {g.name!r} has no input(s) named "
                                   f"{', '.join(sorted(given))}; inputs are "
                                   f"{', '.join(v.name for v in g.inputs)}")
        for v in g.constants:
            if v.data is None:
                raise InterpreterError(f"constant %{v.name} ({v.type}) has no data (a weight-"
                                       f"stripped model or a summarised text form); fill it "
                                       f"first, e.g. with seeded random values")
            self.env[v] = v.evaluation_data()
        for op in g.ops:
            args = [None if v is None else self.env[v] for v in op.operands]
            results = self.run_op(op, args)
            if len(results) != len(op.results):
                raise InterpreterError(f"{op.label}: evaluation gave {len(results)} results, "
                                       f"expected {len(op.results)}")
            for value, array in zip(op.results, results):
                self.env[value] = array
        return {v.name: self.env[v] for v in g.outputs}

    def run_op(self, op: Op, args: list[np.ndarray | None]) -> list[np.ndarray]:
        """Evaluate one op on NumPy arrays (override to trace or substitute)."""
        ctx = op_context(op)
        try:
            return list(get_op_def(op.type).evaluate(ctx, args))
        except TensorIRError:
            raise
        except Exception as exc:  # report which op failed, not a NumPy traceback
            shapes = ", ".join("none" if a is None else f"{a.dtype}{list(a.shape)}" for a in args)
            raise InterpreterError(f"{op.label} failed on operands ({shapes}): "
                                   f"{type(exc).__name__}: {exc}") from exc

    def _check_input(self, v: Value, array: Any, bindings: dict[str, int]) -> np.ndarray:
        array = np.asarray(array)
        if array.dtype != v.dtype.numpy:
            raise InterpreterError(f"input %{v.name}: expected dtype {v.dtype}, got {array.dtype}")
        if array.ndim != v.type.rank:
            raise InterpreterError(f"input %{v.name}: expected shape {v.type}, got "
                                   f"{list(array.shape)}")
        for dim, size in zip(v.type.shape, array.shape):
            if isinstance(dim, int):
                if dim != size:
                    raise InterpreterError(f"input %{v.name}: expected shape {v.type}, got "
                                           f"{list(array.shape)}")
            elif dim in bindings and bindings[dim] != size:
                raise InterpreterError(f"input %{v.name}: dim {dim!r} is {size} here but "
                                       f"{bindings[dim]} in another input")
            elif _dims.SYMBOL_RE.match(dim):
                bindings[dim] = size
            else:
                raise UnboundDimError(f"input %{v.name}: dim {dim!r} is a product of symbols; "
                                      f"bind the graph before running it")
        return array


def interpret(graph: Graph, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Run ``graph`` on NumPy with ``inputs`` by name; returns ``{output name: array}``."""
    return Interpreter(graph).run(inputs)
