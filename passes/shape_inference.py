"""Shape inference: re-run every op's type rule over the graph, optionally binding symbols.

    type(result) := rule(op)(types(operands))  for every op in topological order

``shape-inference{bind=batch:1;seq:128}`` binds symbolic dims first (``;`` separates bindings,
since ``,`` separates pipeline items).
"""

from __future__ import annotations

import attrs

from tensorir.errors import PassError
from tensorir.ir import Graph

from .base import Pass, PassResult, register_pass


def parse_bindings(text: str) -> dict[str, int]:
    env: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(";"))):
        name, sep, size = item.partition(":")
        if not sep or not size.strip().isdigit():
            raise PassError(f"shape-inference: binding {item!r} must be symbol:size", "shape-inference")
        env[name.strip()] = int(size)
    return env


@register_pass
class ShapeInference(Pass):
    name = "shape-inference"
    description = "re-infer every value's type from the op registry (binding symbols if asked)"

    @attrs.frozen
    class Options:
        bind: str = ""

    def run(self, graph: Graph) -> PassResult:
        changed = graph.infer_types(parse_bindings(self.options.bind))
        return PassResult(graph, changed > 0, {"types_changed": changed})
