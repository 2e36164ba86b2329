"""Rewiring helpers the graph passes share: move a value's uses to another value, keeping the
names of graph outputs, and recognise constants whose data is one value broadcast.

    forward(g, old, new):  every use of old (operands and output slots) reads new instead
"""

from __future__ import annotations

import numpy as np

from tensorir.errors import GraphError
from tensorir.ir import INPUT, Graph, Value


def forward(graph: Graph, old: Value, new: Value, *, take_name: bool = False) -> None:
    """Point every use of ``old`` at ``new`` (outputs keep their names, and ``take_name`` moves
    ``old``'s name to ``new`` where it may be renamed), refusing to let an output lose its name.

    There is no cycle check (it walks the ancestors of ``new``, which makes a pass quadratic):
    the caller guarantees that ``new`` does not depend on ``old``.
    """
    if old is not new and graph.is_output(old) and not graph.can_take_name(new):
        raise GraphError(f"%{new.name} cannot take over the graph output %{old.name}: it is "
                         f"a graph {'input' if new.kind == INPUT else 'output'} itself")
    graph.replace_all_uses_with(old, new, check_cycle=False, take_name=take_name)


def is_uniform(data: np.ndarray) -> bool:
    """Whether ``data`` is one element broadcast (a zero-stride view, as stripped weights are)."""
    return data.size <= 1 or all(s == 0 for n, s in zip(data.shape, data.strides) if n > 1)


def first_element(data: np.ndarray) -> np.ndarray:
    """The one element of a uniform array, keeping its rank (shape ``(1, ..., 1)``)."""
    return np.array(data[(slice(0, 1),) * data.ndim])  # a copy of one element, rank kept
