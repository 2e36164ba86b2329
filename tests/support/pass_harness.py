"""Shared harness for pass tests: run a pass (or a pipeline) and check that the graph still
verifies and computes what it computed before, output by output, under the same names."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from passes import PassManager
from tensorir import Graph, interpret, verify


def run_and_compare(run: Any, graph: Graph, feeds: Mapping[str, Any], *, rtol: float = 0.0,
                    atol: float = 0.0,
                    compare: Callable[[np.ndarray, np.ndarray], None] | None = None) -> Any:
    """Interpret ``graph`` on ``feeds``, run ``run`` on it, verify the result's graph and
    interpret it again: the outputs keep their names (in order), and each output is compared
    with what it was.

    ``run`` is a pass instance, a :class:`PassManager`, or any callable taking the graph and
    returning an object with a ``.graph`` (a ``PassResult`` or ``PipelineResult``), which is
    returned so that the caller can check its counters.

    The comparison is bit for bit (``assert_array_equal``) by default; with ``rtol`` or
    ``atol`` it is ``assert_allclose`` (NaNs in the same places are equal either way); with
    ``compare`` it is ``compare(after, before)``, called on each output's arrays.
    """
    if compare is not None and (rtol or atol):
        raise ValueError("give either compare or rtol/atol, not both")
    before = interpret(graph, feeds)
    result = run.run(graph) if isinstance(run, PassManager) else run(graph)
    verify(result.graph)
    after = interpret(result.graph, feeds)
    assert list(after) == list(before)  # graph output names are kept, in order
    for name in before:
        if compare is not None:
            compare(after[name], before[name])
        elif rtol or atol:
            np.testing.assert_allclose(after[name], before[name], rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(after[name], before[name])
    return result
