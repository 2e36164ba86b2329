"""Constant folding: an op whose operands are all constants becomes the constant it computes.

    op(c1, ..., cn) -> c   with c = evaluate(op)(c1, ..., cn), named after the op's result

Shape and Size of a statically typed value fold too (they read only the type). A result that
needs new memory must hold at most ``max-elements`` elements, counted before evaluating, so a
large result is never computed (``skipped_too_large``). Results that need no new memory fold
whatever their size (``folded_no_copy``): an elementwise op whose operands are all one value
broadcast (weight-stripped constants are zero-stride ``np.broadcast_to`` views) is evaluated on
that one element and its result broadcast again, and Reshape, Flatten, Squeeze, Unsqueeze and
Identity of a contiguous constant are views of its data. Constants without data
(``skipped_no_data``) and evaluations that raise (``skipped_error``, the reason logged) are
left alone.
"""

from __future__ import annotations

import logging

import attrs
import numpy as np

from tensorir.ir import CONST, Graph, Op
from tensorir.ops.registry import Category, get_op_def, op_context

from ._rewire import first_element, forward, is_uniform
from .base import Pass, PassResult, register_pass

logger = logging.getLogger(__name__)

_TYPE_ONLY = frozenset({"Shape", "Size"})  # their result depends on the operand's type only
_VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})  # same elements


def _checked(op: Op, results: list) -> list[np.ndarray]:
    out = [np.asarray(a) for a in results]
    if len(out) != len(op.results):
        raise ValueError(f"evaluation gave {len(out)} results, the op has {len(op.results)}")
    for r, data in zip(op.results, out):
        if data.shape != tuple(r.shape) or data.dtype != r.dtype.numpy:
            raise ValueError(f"evaluation gave {data.dtype}{list(data.shape)} for %{r.name}: "
                             f"{r.type}")
    return out


def _evaluate(op: Op) -> list[np.ndarray]:
    """The op's results computed from its constant operands (or, type-only, their shapes)."""
    args = [None if v is None else
            v.data if v.data is not None else np.broadcast_to(np.zeros((), v.dtype.numpy), v.shape)
            for v in op.operands]
    return _checked(op, get_op_def(op.type).evaluate(op_context(op), args))


def _without_copy(op: Op) -> list[np.ndarray] | None:
    """The results as views of existing data, if the op allows it: None otherwise."""
    present = [v for v in op.operands if v is not None]
    if not present or any(v.data.size == 0 for v in present):
        return None
    x = present[0].data
    if op.type in _VIEWS:
        shape = op.results[0].shape
        if is_uniform(x):
            return [np.broadcast_to(first_element(x).reshape(()), shape)]
        if x.flags.c_contiguous:
            return [x.reshape(shape)]  # a view: row-major order is what these ops keep
        return None
    if get_op_def(op.type).category is Category.ELEMENTWISE and \
            all(is_uniform(v.data) for v in present):
        args = [None if v is None else first_element(v.data) for v in op.operands]
        results = get_op_def(op.type).evaluate(op_context(op), args)
        return _checked(op, [np.broadcast_to(np.asarray(a), r.shape)
                             for a, r in zip(results, op.results)])
    return None


def _fold(op: Op, max_elements: int) -> tuple[str, list[np.ndarray] | None] | None:
    """None if ``op`` is not a candidate, else (counter, results): results when it folds,
    None with the counter saying why not. Raises what the evaluation raises."""
    present = [v for v in op.operands if v is not None]
    if op.type in _TYPE_ONLY and present and present[0].type.is_static:
        return "folded", _evaluate(op)
    if any(v.kind != CONST for v in present):
        return None
    if any(v.data is None for v in present):
        return "skipped_no_data", None
    views = _without_copy(op)
    if views is not None:
        return "folded_no_copy", views
    if sum(r.type.numel for r in op.results) > max_elements:
        return "skipped_too_large", None
    return "folded", _evaluate(op)


@register_pass
class FoldConstants(Pass):
    name = "fold-constants"
    description = "evaluate ops whose operands are all constants and replace them by constants"
    preserves = frozenset({"types"})

    @attrs.frozen
    class Options:
        max_elements: int = 65536

    def run(self, graph: Graph) -> PassResult:
        stats = dict.fromkeys(("folded", "folded_no_copy", "skipped_too_large",
                               "skipped_no_data", "skipped_error"), 0)
        for op in graph.ops:  # producers first, so chains of constant ops fold in one sweep
            try:
                verdict = _fold(op, self.options.max_elements)
            except Exception as exc:  # an op that cannot be evaluated here stays in the graph
                logger.debug("fold-constants: %s not folded: %s: %s", op.label,
                             type(exc).__name__, exc)
                stats["skipped_error"] += 1
                continue
            if verdict is None:
                continue
            outcome, results = verdict
            stats[outcome] += 1
            if results is None:
                continue
            for r, data in zip(op.results, results):
                if graph.is_used(r):
                    c = graph.add_constant(graph.unique_name(f"{r.name}__folded"), data)
                    forward(graph, r, c, take_name=True)
            graph.remove_op(op)
        return PassResult(graph, bool(stats["folded"] or stats["folded_no_copy"]), stats)
