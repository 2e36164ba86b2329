"""The one op registry: every op kind is described once, and every pass and backend reads it.

An :class:`OpDef` holds, for one op type:

- ``infer(ctx) -> list[TensorType]``: the type rule (shape and dtype inference);
- ``evaluate(ctx, inputs) -> list[np.ndarray]``: the NumPy evaluation;
- ``domain(ctx) -> IterationDomain``: loop dims and affine indexing maps;
- ``category``, ``flops_per_point`` (FLOPs per domain point) or a ``flops(ctx)`` override;
- the attribute schema (names and defaults), operand arity, and whether it is commutative;
- tiling facts (read by :mod:`tensorir.tile_eval`): whether the op may be evaluated tile by
  tile at all (``tileable``, by category unless the op says), the loop dims that must stay
  whole (``full_dims``), the ``combiner`` (add, max or min) that merges the partial results of
  a split reduction, and ``tile_attrs``, the attribute changes one tile needs (a sliding
  window's halo cut off at the tensor's edge becomes explicit ``pads``).

All three functions receive an :class:`OpContext`, a read-only view of one op: its attributes
(defaults filled in), operand types, the data of constant operands, and (after inference)
its result types. Type rules report problems with ``ctx.fail``, which names the op, the operand
and the shapes.
"""

from __future__ import annotations

import enum
import weakref
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np

from .. import dims as _dims
from ..errors import InvalidOpError, ShapeError, UnknownOpError
from ..types import TensorType
from .domain import IterationDomain

REQUIRED = object()  # attribute default meaning "must be given"


class Category(enum.Enum):
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    CONTRACTION = "contraction"
    POOLING = "pooling"
    NORMALIZATION = "normalization"
    DATA_MOVEMENT = "data_movement"
    SHAPE = "shape"          # computes on shapes / creates tensors (Shape, Range, Constant ...)
    FUSED = "fused"


class OpContext:
    """A read-only view of one op for type rules, evaluation, domains and FLOP counts."""

    __slots__ = ("op_type", "name", "attrs", "types", "consts", "result_types", "_defs")

    def __init__(self, opdef: "OpDef", attrs: Mapping[str, Any],
                 types: Sequence[TensorType | None], consts: Sequence[np.ndarray | None],
                 name: str = "", result_types: Sequence[TensorType] | None = None) -> None:
        self.op_type = opdef.name
        self.name = name
        self._defs = opdef
        self.attrs = attrs
        self.types = tuple(types)
        self.consts = tuple(consts)
        self.result_types = tuple(result_types) if result_types is not None else None

    # -- attributes
    def attr(self, key: str) -> Any:
        if key in self.attrs:
            return self.attrs[key]
        default = self._defs.attributes.get(key, REQUIRED)
        if default is REQUIRED:
            raise InvalidOpError(f"{self.label}: missing required attribute {key!r}")
        return default

    # -- operands
    @property
    def label(self) -> str:
        return f"{self.op_type} {self.name!r}" if self.name else self.op_type

    @property
    def num_operands(self) -> int:
        return len(self.types)

    def has(self, i: int) -> bool:
        return i < len(self.types) and self.types[i] is not None

    def type(self, i: int) -> TensorType:
        if not self.has(i):
            raise InvalidOpError(f"{self.label}: operand {i} is required but absent")
        return self.types[i]

    def shape(self, i: int) -> tuple:
        return self.type(i).shape

    def const(self, i: int, what: str = "") -> np.ndarray:
        """The data of constant operand ``i``; a ShapeError if it is not a constant."""
        if i < len(self.consts) and self.consts[i] is not None:
            return self.consts[i]
        what = f" ({what})" if what else ""
        raise ShapeError(f"{self.label} operand {i}{what}: must be a constant to infer the result "
                         f"type, but it is computed at run time")

    def const_or_none(self, i: int) -> np.ndarray | None:
        return self.consts[i] if i < len(self.consts) else None

    def result_type(self, i: int = 0) -> TensorType:
        if self.result_types is None:
            self.result_types = tuple(self._defs.infer(self))
        return self.result_types[i]

    def fail(self, message: str, operand: int | None = None) -> ShapeError:
        """A ShapeError naming this op, the operand and every operand's type."""
        where = f" operand {operand}" if operand is not None else ""
        got = ", ".join("none" if t is None else str(t) for t in self.types)
        return ShapeError(f"{self.label}{where}: {message} (operands: {got})")


def _no_domain(ctx: OpContext) -> IterationDomain | None:
    return None


Box = tuple[tuple[int, int], ...]
"""A box of indices: ``(start, stop)`` per dim, ``stop`` exclusive."""

COMBINERS = ("add", "max", "min")
"""How partial results of a split reduction merge (each starting from its identity)."""

# why ops of a category are not tileable unless an op says otherwise (OpDef.tileable)
_UNTILEABLE_CATEGORIES = {
    Category.DATA_MOVEMENT: "data movement with absolute positions or whole shapes (axes, "
                            "starts, indices, target shapes) is not tileable",
    Category.SHAPE: "shape ops compute from whole shapes or create tensors; not tileable",
    Category.FUSED: "a fused kernel's body is typed for the whole operands; not tileable",
}


@attrs.frozen
class OpTile:
    """One tile of an op's iteration domain, as an op's ``tile_attrs`` hook sees it.

    ``loop_box`` has a ``(start, stop)`` per loop dim of ``domain``; ``operand_boxes[j]`` is the
    box of operand ``j``'s elements that its affine map reaches from the loop box, *not* clipped
    to the tensor (a convolution's halo may reach below 0 or past the end: that part is
    padding), or None for an operand without a map or absent.
    """

    domain: IterationDomain
    loop_box: Box
    operand_boxes: tuple[Box | None, ...]

    def range(self, name: str) -> tuple[int, int]:
        """The ``(start, stop)`` of the loop dim called ``name``."""
        return self.loop_box[self.domain.names.index(name)]

    def is_full(self, name: str) -> bool:
        """Whether the loop dim ``name`` is covered whole by the tile."""
        i = self.domain.names.index(name)
        return self.loop_box[i] == (0, self.domain.dims[i].extent)


@attrs.frozen
class OpDef:
    name: str
    category: Category
    infer: Callable[[OpContext], list[TensorType]]
    evaluate: Callable[[OpContext, list], list[np.ndarray]]
    domain: Callable[[OpContext], IterationDomain | None] = _no_domain
    flops_per_point: int = 0
    flops_fn: Callable[[OpContext], Any] | None = None
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    min_inputs: int = 1
    max_inputs: int = 1
    commutative: bool = False
    doc: str = ""
    # -- tiling facts (tensorir.tile_eval): see the module docstring
    tileable: bool | None = None
    """Whether the op's evaluation on a tile of its domain gives that tile of the result.
    None: by category (data movement, shape and fused ops are not; others are)."""
    untileable_reason: str = ""
    """Why the op is not tileable, when ``tileable`` is False (the category's reason if empty)."""
    full_dims: tuple[str, ...] = ()
    """Loop dims (by name) a tile must cover whole, beyond the reductions without a combiner:
    LRN's channel, whose window reads neighbouring channels."""
    combiner: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(COMBINERS)))
    """How the partial results of tiles that split the reduction dims combine ("add", "max" or
    "min"); None: reduction dims must stay whole. With "add", operands whose map uses no
    reduction dim (Gemm's C, Conv's bias) are added once: on the first reduction tile only."""
    tile_attrs: Callable[[OpContext, OpTile], Mapping[str, Any] | str] | None = None
    """Attribute changes that make the op's evaluation compute one tile from the operands'
    clipped boxes (merged over the op's attributes), or a string saying why this tile cannot
    be evaluated. None: the attributes need no change."""
    special_functions: int = 0
    """Special-function evaluations (exp, log, sqrt, reciprocal, tanh, erf, sin, cos) per
    result element, among the op's FLOPs: what a GPU's special-function units run."""
    tile_evaluate: Callable[[OpContext, list, Sequence[tuple[int, ...]]], list] | None = None
    """Evaluate one tile when changing attributes is not enough (Reshape: its target shape is
    an operand): ``(tile context, operand tiles, result tile shapes) -> result tiles``."""

    def check(self, attrs_: Mapping[str, Any], n_operands: int, name: str = "") -> None:
        label = f"{self.name} {name!r}" if name else self.name
        if not self.min_inputs <= n_operands <= self.max_inputs:
            want = (str(self.min_inputs) if self.min_inputs == self.max_inputs
                    else f"{self.min_inputs} to {self.max_inputs}")
            raise InvalidOpError(f"{label}: takes {want} operands, got {n_operands}")
        unknown = sorted(set(attrs_) - set(self.attributes))
        if unknown:
            raise InvalidOpError(f"{label}: unknown attribute(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(self.attributes)) or 'none'}")
        for key, default in self.attributes.items():
            if default is REQUIRED and key not in attrs_:
                raise InvalidOpError(f"{label}: missing required attribute {key!r}")

    def tiling_refusal(self) -> str | None:
        """Why this op kind cannot be evaluated tile by tile at all, or None if it can."""
        tileable = self.tileable
        if tileable is None:
            tileable = self.category not in _UNTILEABLE_CATEGORIES
        if tileable:
            return None
        return self.untileable_reason or _UNTILEABLE_CATEGORIES.get(
            self.category, "not tileable")

    def flops(self, ctx: OpContext) -> _dims.Dim:
        """FLOPs of one execution (1 multiply-add = 2 FLOPs); symbolic if the shapes are."""
        if self.flops_fn is not None:
            return self.flops_fn(ctx)
        if not self.flops_per_point:
            return 0
        domain = self.domain(ctx)
        if domain is None:
            return 0
        return _dims.mul(domain.size, self.flops_per_point)


_REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get_op_def(op_type: str) -> OpDef:
    try:
        return _REGISTRY[op_type]
    except KeyError:
        raise UnknownOpError(f"unknown op type {op_type!r}: it is not in the op registry "
                             f"({len(_REGISTRY)} op types are)") from None


def is_registered(op_type: str) -> bool:
    return op_type in _REGISTRY


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


def _const_of(v: Any) -> np.ndarray | None:
    return v.data if v is not None and v.kind == "const" else None


def context_for(op_type: str, attrs_: Mapping[str, Any], operands: Sequence[Any], name: str = "",
                result_types: Sequence[TensorType] | None = None) -> OpContext:
    """Build the context of an op from its operand Values (constants expose their data)."""
    opdef = get_op_def(op_type)
    return OpContext(opdef, attrs_, [None if v is None else v.type for v in operands],
                     [_const_of(v) for v in operands], name=name, result_types=result_types)


def op_context(op: Any) -> OpContext:
    """The context of an existing :class:`~tensorir.ir.Op` (its result types included)."""
    return context_for(op.type, op.attrs, op.operands, op.name, [r.type for r in op.results])


def infer_types(op_type: str, attrs_: Mapping[str, Any], operands: Sequence[Any],
                name: str = "") -> list[TensorType]:
    """Run the type rule for an op about to be built; raises typed errors only."""
    opdef = get_op_def(op_type)
    # trailing absent optional operands do not count towards arity
    n = len(operands)
    while n > opdef.min_inputs and operands[n - 1] is None:
        n -= 1
    opdef.check(attrs_, n, name)
    ctx = context_for(op_type, attrs_, operands, name)
    try:
        return list(opdef.infer(ctx))
    except (ShapeError, InvalidOpError):  # UnboundDimError is a ShapeError
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # a rule that trips over a malformed attribute or constant: report it as the op's error
        raise ctx.fail(f"type rule failed: {exc}") from exc


def op_signature(op: Any) -> tuple:
    """What an op's derived facts depend on: its operands, attributes and result types. A
    memo keyed by the op object is valid while this stays the same."""
    return (op.type, tuple(id(v) for v in op.operands),
            tuple((k, id(v)) for k, v in op.attrs.items()), tuple(r.type for r in op.results))


def memo_per_op(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Memoise ``fn(op)`` per op object (weakly) while :func:`op_signature` is unchanged."""
    memo: "weakref.WeakKeyDictionary[Any, tuple[tuple, Any]]" = weakref.WeakKeyDictionary()

    def wrapper(op: Any) -> Any:
        key = op_signature(op)
        hit = memo.get(op)
        if hit is None or hit[0] != key:
            hit = (key, fn(op))
            memo[op] = hit
        return hit[1]

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


@memo_per_op
def op_flops(op: Any) -> _dims.Dim:
    """FLOPs of one execution of ``op`` (memoised per op)."""
    return get_op_def(op.type).flops(op_context(op))


def op_domain(op: Any) -> IterationDomain | None:
    return get_op_def(op.type).domain(op_context(op))
