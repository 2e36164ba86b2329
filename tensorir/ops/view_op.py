"""The ``tensorir.view`` op: a strided view of a value's flat row-major storage.

One operand, the base, read as its contiguous row-major storage (``base.reshape(-1)``), and
three required attributes: ``offset`` (int), ``shape`` and ``strides`` (tuples of ints, in
elements). Result element ``[i0, i1, ...]`` is storage element
``offset + sum(i_k * strides[k])``. The result has the attribute shape and the base's dtype.
The type rule checks that the base's shape is static and that every touched element lies in
the base's storage. It is pure data movement: 0 FLOPs.

Domain: the output dims are parallel loops and the output map is the identity. The operand
map is None: a strided view of flat storage is not an affine map over the base's dims in
general (a view of an ``[n, m]`` base with ``strides=[1]`` walks across rows), so it is opaque,
like the table of a Gather. :func:`view_of` gives the :class:`~tensorir.view.TensorView`
for the verifier and the scheduler to reason about the exact elements instead.

>>> import numpy as np
>>> from tensorir import Graph, TensorType, DType
>>> from tensorir.interpreter import interpret
>>> g = Graph("tile")
>>> x = g.add_input("x", TensorType((4, 6), DType.float32))
>>> op = g.add_op("tensorir.view", [x], {"offset": 7, "shape": (2, 2), "strides": (6, 2)})
>>> str(op.result.type)
'f32[2, 2]'
>>> print(view_of(op))
view(offset=7, shape=[2, 2], strides=[6, 2])
>>> g.set_outputs([op.result])
>>> interpret(g, {"x": np.arange(24, dtype=np.float32).reshape(4, 6)})["tensorir.view"]
array([[ 7.,  9.],
       [13., 15.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ViewError
from ..types import TensorType
from ..view import TensorView
from .domain import AffineMap, IterationDomain, LoopDim
from .registry import REQUIRED, Category, OpContext, OpDef, op_context, register

OP_NAME = "tensorir.view"


def _view(ctx: OpContext) -> TensorView:
    """The view an op describes; malformed attributes become the op's ShapeError."""
    try:
        return TensorView(ctx.attr("offset"), ctx.attr("shape"), ctx.attr("strides"),
                          ctx.type(0).dtype)
    except ViewError as exc:
        raise ctx.fail(f"bad view attributes: {exc}") from None


def view_of(op_or_ctx: Any) -> TensorView:
    """The :class:`TensorView` of a ``tensorir.view`` op (an Op or its OpContext).

    Its ``itemsize`` is the base's dtype, so ``byte_ranges`` are in bytes of the storage.
    """
    ctx = op_or_ctx if isinstance(op_or_ctx, OpContext) else op_context(op_or_ctx)
    if ctx.op_type != OP_NAME:
        raise ViewError(f"{ctx.label} is not a {OP_NAME} op")
    return _view(ctx)


def _infer(ctx: OpContext) -> list[TensorType]:
    base = ctx.type(0)
    if not base.is_static:
        raise ctx.fail(f"the base of a view needs a static shape to check bounds, got {base} "
                       f"(bind its symbols first)", operand=0)
    view = _view(ctx)
    size = base.numel
    if not view.in_bounds(size):
        lo, hi = view.extent()  # type: ignore[misc]  # non-empty: empty views are in bounds
        raise ctx.fail(f"{view} touches storage offsets [{lo}, {hi}) but the base {base} has "
                       f"only {size} elements (valid offsets [0, {size}))", operand=0)
    return [TensorType(view.shape, base.dtype)]


def _evaluate(ctx: OpContext, inputs: list) -> list[np.ndarray]:
    # the base is read as row-major storage whatever its NumPy layout; copy the result so it
    # does not alias the operand's buffer
    flat = np.ascontiguousarray(inputs[0]).reshape(-1)
    return [np.array(view_of(ctx).apply(flat), copy=True)]


def _domain(ctx: OpContext) -> IterationDomain:
    shape = ctx.result_type(0).shape
    n = len(shape)
    return IterationDomain(tuple(LoopDim(f"d{i}", shape[i]) for i in range(n)),
                           (None,), (AffineMap.identity(n),))


VIEW = register(OpDef(
    OP_NAME, Category.DATA_MOVEMENT, _infer, _evaluate, _domain, flops_per_point=0,
    attributes={"offset": REQUIRED, "shape": REQUIRED, "strides": REQUIRED},
    doc="a strided view (offset, shape, strides in elements) of the operand's flat row-major "
        "storage"))
