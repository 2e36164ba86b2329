"""Rewiring helpers the graph passes share: move a value's uses to another value, keeping the
names of graph outputs, and recognise constants whose data is one value broadcast.

    forward(g, old, new):  every use of old (operands and output slots) reads new instead
"""

from __future__ import annotations

import numpy as np

from tensorir.errors import GraphError
from tensorir.ir import INPUT, Graph, Value


def is_output(graph: Graph, v: Value) -> bool:
    return any(o is v for o in graph.outputs)


def can_take_name(graph: Graph, v: Value) -> bool:
    """Whether ``v`` may be renamed: graph inputs and outputs are the graph's interface."""
    return v.kind != INPUT and not is_output(graph, v)


def forward(graph: Graph, old: Value, new: Value, *, take_name: bool = False) -> None:
    """Point every use of ``old`` at ``new``; ``new`` takes ``old``'s name when ``old`` is a
    graph output (so the output keeps its name) or when ``take_name`` asks for it and ``new``
    may be renamed. ``old`` is renamed to a free temporary name until its producer is removed.

    There is no cycle check (it walks the ancestors of ``new``, which makes a pass quadratic):
    the caller guarantees that ``new`` does not depend on ``old``.
    """
    if old is new:
        return
    if old.type != new.type:
        raise GraphError(f"cannot forward %{old.name}: {old.type} to %{new.name}: {new.type}")
    was_output = is_output(graph, old)
    if was_output and not can_take_name(graph, new):
        raise GraphError(f"%{new.name} cannot take over the graph output %{old.name}: it is "
                         f"a graph {'input' if new.kind == INPUT else 'output'} itself")
    if was_output or (take_name and can_take_name(graph, new)):
        name = old.name
        graph.rename_value(old, graph.unique_name(f"{name}__replaced"))
        graph.rename_value(new, name)
    graph.replace_all_uses_with(old, new, check_cycle=False)


def is_uniform(data: np.ndarray) -> bool:
    """Whether ``data`` is one element broadcast (a zero-stride view, as stripped weights are)."""
    return data.size <= 1 or all(s == 0 for n, s in zip(data.shape, data.strides) if n > 1)


def first_element(data: np.ndarray) -> np.ndarray:
    """The one element of a uniform array, keeping its rank (shape ``(1, ..., 1)``)."""
    return np.array(data[(slice(0, 1),) * data.ndim])  # a copy of one element, rank kept
