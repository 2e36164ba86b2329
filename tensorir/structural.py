"""Structural equality of graphs: same interface, constants, ops and wiring, in the same order.

Constants compare by content digest, so a graph equals its text form read back even when the
text summarised its weights. :func:`structural_diff` says where two graphs first differ.
"""

from __future__ import annotations

from .ir import Graph, attrs_equal


def _value_sig(v) -> tuple:
    return (v.name, v.type)


def structural_diff(a: Graph, b: Graph) -> str | None:
    """None when ``a`` and ``b`` are structurally equal, else the first difference found."""
    if a.name != b.name:
        return f"graph names differ: {a.name!r} vs {b.name!r}"
    if [_value_sig(v) for v in a.inputs] != [_value_sig(v) for v in b.inputs]:
        return "inputs differ"
    ca, cb = a.constants, b.constants
    if len(ca) != len(cb):
        return f"{len(ca)} vs {len(cb)} constants"
    for x, y in zip(ca, cb):
        if _value_sig(x) != _value_sig(y):
            return f"constant %{x.name}: {x.type} vs %{y.name}: {y.type}"
        if x.content_digest() != y.content_digest():
            return f"constant %{x.name}: data differs"
    oa, ob = a.ops, b.ops
    if len(oa) != len(ob):
        return f"{len(oa)} vs {len(ob)} ops"
    for x, y in zip(oa, ob):
        where = f"op {x.label} (%{x.results[0].name if x.results else '?'})"
        if (x.type, x.name, x.source) != (y.type, y.name, y.source):
            return f"{where}: {x.type} {x.name!r} {x.source} vs {y.type} {y.name!r} {y.source}"
        if [None if v is None else v.name for v in x.operands] != \
                [None if v is None else v.name for v in y.operands]:
            return f"{where}: operands differ"
        if [_value_sig(v) for v in x.results] != [_value_sig(v) for v in y.results]:
            return f"{where}: results differ"
        if not attrs_equal(x.attrs, y.attrs):
            return f"{where}: attributes differ: {x.attrs} vs {y.attrs}"
    if [v.name for v in a.outputs] != [v.name for v in b.outputs]:
        return "outputs differ"
    return None


def structurally_equal(a: Graph, b: Graph) -> bool:
    return structural_diff(a, b) is None
