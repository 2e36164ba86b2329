"""tensorir: a compiler-style scheduling IR for ML models.

The core: element types, tensor types, the graph of ops and values, the op registry, tensor
views, the text form (print/parse), the verifier and the NumPy interpreter.
"""

from . import ops  # registers every op kind
from .dims import Dim
from .dtypes import DType
from .errors import (GraphError, InterpreterError, InvalidOpError, ModelLoadError, ParseError,
                     PassError, ProfileError,
                     ShapeError,
                     TensorIRError, UnboundDimError, UnknownOpError, UnsupportedOpsError,
                     VerificationError, ViewError)
from .interpreter import Interpreter, interpret
from .ir import Graph, Op, Value
from .parser import parse, parse_file
from .printer import print_graph
from .structural import structural_diff, structurally_equal
from .types import TensorType
from .verifier import verify

__all__ = [
    "DType", "Dim", "Graph", "GraphError", "ModelLoadError", "PassError", "ProfileError", "InterpreterError", "InvalidOpError", "Op",
    "ParseError", "ShapeError", "TensorIRError", "TensorType", "UnboundDimError",
    "UnknownOpError", "UnsupportedOpsError", "Value", "VerificationError", "ViewError", "ops",
    "Interpreter", "interpret", "parse", "parse_file", "print_graph", "structural_diff",
    "structurally_equal", "verify",
]
