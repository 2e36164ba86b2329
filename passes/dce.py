"""Dead code elimination: an op none of whose results reaches a graph output is removed,
and so is a constant no op reads.

    DCE(g) = the ops and constants on some path to g.outputs
"""

from __future__ import annotations

import attrs

from tensorir.ir import Graph

from .base import Pass, PassResult, register_pass


@register_pass
class DeadCodeElimination(Pass):
    name = "dce"
    description = "remove ops whose results are never used, and unused constants"
    preserves = frozenset({"types"})

    @attrs.frozen
    class Options:
        keep_constants: bool = False

    def run(self, graph: Graph) -> PassResult:
        removed = 0
        for op in reversed(graph.ops):  # users before producers, so chains go in one sweep
            if not any(graph.is_used(r) for r in op.results):
                graph.remove_op(op)
                removed += 1
        constants = 0
        if not self.options.keep_constants:
            for v in graph.constants:
                if not graph.is_used(v):
                    graph.remove_value(v)
                    constants += 1
        return PassResult(graph, bool(removed or constants),
                          {"ops_removed": removed, "constants_removed": constants})
