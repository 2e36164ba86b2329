"""Common subexpression elimination: equal computations on the same values are computed once.

    op(a, b){attrs} ... op(a, b){attrs} -> one op(a, b){attrs}   (op(b, a) too if commutative)
    const c1 ... const c2 with the same dtype, shape and bytes -> one constant

One sweep in topological order with a hash table (as onnx-ir's CSE): an op's key is its type,
its operands (a sorted multiset for commutative ops), its result count and a hash of its
attributes; a hit is confirmed with ``attrs_equal``. A constant's key is its type and a sample
of its elements (hashing every weight's bytes cost more than the rest of the pipeline's graph
passes); a hit is confirmed with a full byte comparison. A merged
op's users read the earlier op's results, so their own keys already see the merge. Near misses
are counted and logged: ``skipped_different_attributes`` (same type and operands),
``skipped_graph_outputs`` (both results are graph outputs, which keep their own names),
``constants_skipped_no_data`` (weight-stripped text constants: no bytes to compare).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Hashable

import numpy as np

from tensorir.ir import Graph, Op, Value, attrs_equal
from tensorir.ops.registry import get_op_def

from ._rewire import first_element, forward, is_uniform
from .base import Pass, PassResult, register_pass

logger = logging.getLogger(__name__)


def _array_key(a: np.ndarray) -> tuple:
    """Equal for arrays of the same dtype, shape and bytes (uniform ones without copying)."""
    if a.size and is_uniform(a):
        return ("uniform", a.dtype.str, a.shape, first_element(a).tobytes())
    return ("dense", a.dtype.str, a.shape,
            hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())


_SAMPLE = 32  # elements of a constant in its key


def _sample(a: np.ndarray) -> bytes:
    """The bytes of up to ``_SAMPLE`` elements spread over ``a``'s flat order: arrays with equal
    bytes have equal samples, and unequal weights almost always differ in them."""
    if a.size <= _SAMPLE:
        return np.ascontiguousarray(a).tobytes()
    return a.flat[np.linspace(0, a.size - 1, _SAMPLE).astype(np.intp)].tobytes()


def _constant_key(c: Value) -> tuple:
    """Equal for constants with the same type and bytes; a broadcast of one element (a stripped
    weight) never shares a key with a dense array."""
    if c.data.size and is_uniform(c.data):
        return (str(c.type), _array_key(c.data))
    return (str(c.type), "dense", _sample(c.data))


def _attr_key(value: Any) -> Hashable:
    """A hashable stand-in for an attribute value; equal values (``attrs_equal``) get equal keys,
    unequal ones may too (a hit is confirmed)."""
    if isinstance(value, np.ndarray):
        return _array_key(value)
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    if isinstance(value, Graph):  # a fused op's body: confirmed by attrs_equal
        return ("graph", len(value), tuple(o.type for o in value.ops))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", type(value).__name__)
    return value


def _operands_key(op: Op) -> tuple:
    ids = tuple(None if v is None else id(v) for v in op.operands)
    if get_op_def(op.type).commutative and None not in ids:
        return tuple(sorted(ids))
    return ids


def _as_bits(a: np.ndarray) -> np.ndarray | None:
    """``a``'s elements as unsigned integers of their size (a view: no copy), so that equal
    means equal bytes (-0.0 is not 0.0, a NaN equals itself); None for other element sizes."""
    if a.itemsize not in (1, 2, 4, 8) or a.dtype.hasobject:
        return None
    return a.view(f"u{a.itemsize}")


def _same_bytes(a: Value, b: Value) -> bool:
    if a.type != b.type:
        return False
    x, y = a.data, b.data
    if is_uniform(x) and is_uniform(y) and x.size:
        return first_element(x).tobytes() == first_element(y).tobytes()
    bx, by = _as_bits(x), _as_bits(y)
    if bx is not None and by is not None:
        return bool(np.array_equal(bx, by))
    return np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes()


def _mergeable(graph: Graph, old: Value, keep: Value) -> bool:
    """Whether ``old``'s uses can move to ``keep``: a graph output keeps its name, so ``keep``
    must be free to take it."""
    return not graph.is_output(old) or graph.can_take_name(keep)


@register_pass
class CommonSubexpressionElimination(Pass):
    name = "cse"
    description = "merge ops of the same type, attributes and operands, and identical constants"
    preserves = frozenset({"types"})

    def run(self, graph: Graph) -> PassResult:
        stats = dict.fromkeys(("ops_merged", "constants_merged", "skipped_different_attributes",
                               "skipped_graph_outputs", "constants_skipped_no_data"), 0)
        self._constants(graph, stats)
        self._ops(graph, stats)
        return PassResult(graph, bool(stats["ops_merged"] or stats["constants_merged"]), stats)

    @staticmethod
    def _constants(graph: Graph, stats: dict[str, int]) -> None:
        seen: dict[tuple, list[Value]] = {}
        for c in graph.constants:
            if c.data is None:
                stats["constants_skipped_no_data"] += 1
                continue
            bucket = seen.setdefault(_constant_key(c), [])
            keep = next((k for k in bucket if _same_bytes(k, c)), None)
            if keep is None:
                bucket.append(c)
            elif not _mergeable(graph, c, keep):
                stats["skipped_graph_outputs"] += 1
                logger.debug("cse: constants %%%s and %%%s are equal but both graph outputs",
                             keep.name, c.name)
            else:
                forward(graph, c, keep)
                graph.remove_value(c)
                stats["constants_merged"] += 1

    @staticmethod
    def _ops(graph: Graph, stats: dict[str, int]) -> None:
        seen: dict[tuple, list[Op]] = {}
        shapes: set[tuple] = set()  # (type, operands, results): to report attribute misses
        for op in graph.ops:
            where = (op.type, _operands_key(op), len(op.results))
            attr_key = tuple(sorted((k, _attr_key(v)) for k, v in op.attrs.items()))
            bucket = seen.setdefault(where + (attr_key,), [])
            keep = next((k for k in bucket if attrs_equal(k.attrs, op.attrs)), None)
            if keep is None:
                if where in shapes:
                    stats["skipped_different_attributes"] += 1
                    logger.debug("cse: %s reads the same operands as an earlier %s but its "
                                 "attributes differ", op.label, op.type)
                shapes.add(where)
                bucket.append(op)
                continue
            if not all(_mergeable(graph, r, k) for r, k in zip(op.results, keep.results)):
                stats["skipped_graph_outputs"] += 1
                logger.debug("cse: %s equals %s but both give graph outputs", op.label,
                             keep.label)
                continue
            for r, k in zip(op.results, keep.results):
                forward(graph, r, k)
            graph.remove_op(op)
            stats["ops_merged"] += 1
