"""Write models in Python: a builder with one method per registered op.

>>> from frontends.python import GraphBuilder
>>> b = GraphBuilder("mlp", seed=0)
>>> x = b.input("x", ["batch", 784])
>>> with b.scope("fc1"):
...     h = b.relu(b.add(b.matmul(x, b.weight("w", [784, 256])), b.weight("b", [256])))
>>> g = b.build(h)
>>> [op.type for op in g.ops]
['MatMul', 'Add', 'Relu']
>>> str(h.type)
'f32[batch, 256]'

``b.<op_name>(*operands, **attributes)`` adds any registered op: the method name is the op
type in snake case (``b.layer_normalization``, ``b.conv_transpose``) or the op type itself
(``b.op("LayerNormalization", ...)``). Operands that are Python lists, scalars or NumPy arrays
become constants (ints as int64, floats as float32), so ``b.reshape(x, [0, -1])`` works.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Sequence

import numpy as np

from tensorir import DType, Graph, TensorType, Value
from tensorir.dims import Dim
from tensorir.errors import TensorIRError, UnknownOpError
from tensorir.ops import registered_ops


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class GraphBuilder:
    """Builds a :class:`tensorir.Graph` op by op; weights are seeded random or fixed constants."""

    def __init__(self, name: str = "model", seed: int = 0, dtype: DType = DType.float32) -> None:
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self._scopes: list[str] = []
        self._op_counts: dict[str, int] = {}
        # both b.mat_mul and b.matmul (and b.layer_normalization / b.layernormalization)
        self._op_names = {}
        for t in registered_ops():
            self._op_names[t.lower().replace(".", "_")] = t
            self._op_names[_snake(t).replace(".", "_")] = t

    # ----------------------------------------------------------------- naming
    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Prefix the names of ops and weights created inside with ``name/``."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def _qualified(self, name: str) -> str:
        return "/".join(self._scopes + [name])

    def _auto_name(self, op_type: str) -> str:
        base = self._qualified(_snake(op_type.split(".")[-1]))
        n = self._op_counts.get(base, 0)
        self._op_counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    # ----------------------------------------------------------------- values
    def input(self, name: str, shape: Sequence[Dim], dtype: DType | None = None) -> Value:
        return self.graph.add_input(name, TensorType(tuple(shape), dtype or self.dtype))

    def constant(self, data: Any, name: str | None = None) -> Value:
        """A constant from an array, list or scalar (Python ints become int64, floats f32)."""
        array = np.asarray(data)
        if array.dtype == np.float64 and not isinstance(data, np.ndarray):
            array = array.astype(self.dtype.numpy)
        elif array.dtype.kind == "i" and not isinstance(data, np.ndarray):
            array = array.astype(np.int64)
        base = self._qualified(name) if name else self._qualified("const")
        return self.graph.add_constant(self.graph.unique_name(base), array)

    def weight(self, name: str, shape: Sequence[int], init: str = "normal", std: float = 0.02,
               dtype: DType | None = None) -> Value:
        """A weight: ``normal`` (seeded, std ``std``), ``zeros`` or ``ones``."""
        dtype = dtype or self.dtype
        shape = tuple(int(d) for d in shape)
        if init == "normal":
            data = self.rng.standard_normal(shape) * std
        elif init == "zeros":
            data = np.zeros(shape)
        elif init == "ones":
            data = np.ones(shape)
        else:
            raise TensorIRError(f"unknown weight init {init!r}: use normal, zeros or ones")
        return self.graph.add_constant(self.graph.unique_name(self._qualified(name)),
                                       data.astype(dtype.numpy))

    def _operand(self, x: Any) -> Value | None:
        if x is None or isinstance(x, Value):
            return x
        return self.constant(x)

    # ----------------------------------------------------------------- ops
    def op(self, op_type: str, *operands: Any, name: str | None = None,
           **attributes: Any) -> Value | tuple[Value, ...]:
        """Add one op; returns its result (or a tuple of results)."""
        values = [self._operand(x) for x in operands]
        op = self.graph.add_op(op_type, values, attributes, name=name or self._auto_name(op_type))
        return op.results[0] if len(op.results) == 1 else tuple(op.results)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        op_type = self._op_names.get(attr)
        if op_type is None:
            raise UnknownOpError(f"GraphBuilder has no op {attr!r}; registered ops are "
                                 f"{', '.join(sorted(self._op_names))}")

        def add(*operands: Any, name: str | None = None, **attributes: Any):
            return self.op(op_type, *operands, name=name, **attributes)

        add.__name__ = attr
        add.__doc__ = f"Add a {op_type} op."
        return add

    # ----------------------------------------------------------------- composites
    def linear(self, x: Value, in_features: int, out_features: int, name: str,
               bias: bool = True) -> Value:
        """``x @ W + b`` as MatMul and Add, the form PyTorch's ONNX export produces."""
        with self.scope(name):
            y = self.matmul(x, self.weight("weight", [in_features, out_features]))
            if bias:
                y = self.add(y, self.weight("bias", [out_features]))
        return y

    def build(self, *outputs: Value) -> Graph:
        """Set the outputs and return the graph."""
        self.graph.set_outputs(outputs)
        return self.graph
