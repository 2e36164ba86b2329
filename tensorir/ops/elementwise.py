"""Elementwise ops: arithmetic, activations, comparisons, logic, Cast, Identity, Where.

FLOP convention: one FLOP per arithmetic operation per element; transcendental functions
(exp, log, erf, tanh ...) count one FLOP each, like fvcore and onnx-tool.
"""

from __future__ import annotations

import numpy as np

from .common import register_binary, register_unary

register_binary("Add", np.add, commutative=True, doc="A + B with NumPy broadcasting")
register_binary("Sub", np.subtract, doc="A - B with NumPy broadcasting")
register_binary("Mul", np.multiply, commutative=True, doc="A * B with NumPy broadcasting")

register_unary("Relu", lambda x, ctx: np.maximum(x, 0), float_only=False,
               doc="max(x, 0)")
