"""The op registry and every op family; importing this package registers all ops."""

from . import (contraction, elementwise, fused, movement, normalization, pooling,  # noqa: F401
               reduction, shape_ops, view_op)
from .domain import AffineExpr, AffineMap, IterationDomain, IterKind, LoopDim
from .registry import (REQUIRED, Category, OpContext, OpDef, get_op_def, infer_types,
                       is_registered, op_context, op_domain, op_flops, register, registered_ops)

__all__ = [
    "AffineExpr", "AffineMap", "Category", "IterKind", "IterationDomain", "LoopDim", "OpContext",
    "OpDef", "REQUIRED", "get_op_def", "infer_types", "is_registered", "op_context", "op_domain",
    "op_flops", "register", "registered_ops",
]
