"""Structural keys: equal for ops that do the same work on operands of the same types,
whatever their values are named and whatever data their constant operands hold.

A model repeats its blocks (BERT's twelve layers, ResNet's bottlenecks), and everything a
backend derives from one kernel, its domain, tiling and cost, depends on the op's structure,
not on the names of the values it reads. :func:`op_key` captures that structure so that such
facts can be memoised across the repeats (and across copies of a graph, whose op objects
differ):

>>> from frontends.python import GraphBuilder
>>> b = GraphBuilder("g", seed=0)
>>> x = b.input("x", [4, 8])
>>> h = b.matmul(x, b.weight("w1", [8, 8]))
>>> y = b.matmul(h, b.weight("w2", [8, 8]))
>>> g = b.build(y)
>>> first, second = g.ops
>>> op_key(first) == op_key(second)      # same types and attributes, other names
True
>>> schedule_key(first, None) == schedule_key(second, None)
True

The key holds the op type, its attributes (a fused op's body by its own structure, the
body's constants by dtype, shape and bytes), each operand's type and whether it is a
constant, which operands are
the same value, and the result types. It leaves out the data of constant operands (weights):
what is memoised under it (domains, schedules, costs) depends on their types only.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from typing import Any

import attrs
import numpy as np

from .ir import CONST, Graph, Op

#: Constant data up to this many bytes goes into a key as is; larger data by a SHA-1 of it.
INLINE_BYTES = 256


def op_key(op: Op) -> tuple:
    """A hashable key equal for ops of the same structure (module docstring)."""
    first: dict[int, int] = {}
    operands = []
    for i, v in enumerate(op.operands):
        if v is None:
            operands.append(None)
            continue
        same = first.setdefault(id(v), i)
        operands.append((v.type, v.kind == CONST, same))
    return (op.type, tuple((k, _attr_key(a)) for k, a in sorted(op.attrs.items())),
            tuple(operands), tuple(r.type for r in op.results))


def schedule_key(op: Op, ks: Any) -> tuple:
    """:func:`op_key` with the op's kernel schedule (``tensorir.schedule.KernelSchedule`` or
    None), the value names in it replaced by operand positions and its buffers' offsets left
    out (where the allocator put a buffer changes no tile, traffic or cost)."""
    if ks is None:
        return (op_key(op), None)
    names = {f"%{v.name}": f"%operand{i}" for i, v in enumerate(op.operands) if v is not None}
    names.update({f"%{r.name}": f"%result{i}" for i, r in enumerate(op.results)})
    buffers = tuple((b.name, b.level, b.role, b.access, b.shape, b.dtype, b.copies)
                    for b in ks.buffers)
    return (op_key(op), ks.op_type, ks.tilings, buffers, ks.epilogue_level, ks.untiled,
            _statements_key(ks.body, names))


def kernel_key(op: Op, kd: Any, ks: Any) -> tuple:
    """:func:`schedule_key` with the op's kernel domain (``tensorir.kernel.KernelDomain``, a
    reason string or None): its dims, maps and anchor, which a constant operand's data can
    shape (a Slice's starts) where the op's key leaves that data out. Everything a backend's
    cost of the kernel reads."""
    return (schedule_key(op, ks), domain_key(kd))


def domain_key(kd: Any) -> Any:
    """A kernel domain (``tensorir.kernel.KernelDomain``) as a hashable tuple without its
    steps' ops (which :func:`op_key` covers); a reason string or None as it is."""
    if kd is None or isinstance(kd, str):
        return kd
    return (kd.dims, kd.accesses, kd.result_map, kd.whole, kd.anchor, kd.accumulator_map,
            kd.combiner, tuple((st.loops, st.sources, st.stage) for st in kd.steps))


def _statements_key(stmts: tuple, names: dict[str, str]) -> tuple:
    """The statements as plain tuples (class name, then fields), main-memory value names
    replaced through ``names`` and loop bodies nested."""
    out = []
    for s in stmts:
        fields = [type(s).__name__]
        for name in _field_names(type(s)):
            value = getattr(s, name)
            if isinstance(value, tuple):           # a loop's body
                value = _statements_key(value, names)
            elif isinstance(value, str):
                value = names.get(value, value)
            fields.append(value)
        out.append(tuple(fields))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(cls))


def graph_key(g: Graph) -> tuple:
    """The structure of a whole graph (a fused op's body): its inputs' types, its constants,
    its ops in order with operands numbered by first definition, and its outputs."""
    number: dict[int, int] = {}

    def ref(v) -> Any:
        if v is None:
            return None
        if id(v) not in number:
            number[id(v)] = len(number)
        return number[id(v)]

    inputs = tuple((ref(v), v.type) for v in g.inputs)
    consts = tuple((ref(v), v.type, _data_key(v)) for v in g.constants)
    ops = tuple((o.type, tuple((k, _attr_key(a)) for k, a in sorted(o.attrs.items())),
                 tuple(ref(v) for v in o.operands), tuple((ref(r), r.type) for r in o.results))
                for o in g.ops)
    return (inputs, consts, ops, tuple(ref(v) for v in g.outputs))


def small_constant_key(v) -> Any:
    """A constant value's data as a key when it is small (at most ``INLINE_BYTES``: shapes,
    axes, starts), None for larger data (weights), which is too costly to key by content."""
    if v.data is not None and v.data.nbytes > INLINE_BYTES:
        return None
    return (v.type, _data_key(v))


# a fused op's body -> its graph_key, while the body lives: every preset's copy of a graph
# shares its fused ops' bodies, and lowering keys each of their ops once per preset
_BODY_KEYS: "weakref.WeakKeyDictionary[Graph, tuple]" = weakref.WeakKeyDictionary()


def _body_key(body: Graph) -> tuple:
    """:func:`graph_key` of a fused op's body, memoised per body graph. A body is never changed
    in place once its op is built (binding or unfusing makes new graphs), the contract that
    :mod:`tensorir.kernel`'s memo, which keys bodies by identity, relies on too."""
    key = _BODY_KEYS.get(body)
    if key is None:
        key = _BODY_KEYS[body] = graph_key(body)
    return key


def _data_key(v) -> Any:
    if v.data is None:
        return v.digest
    return _array_key(v.data)


def _array_key(a: np.ndarray) -> tuple:
    a = np.ascontiguousarray(a)
    raw = a.tobytes() if a.nbytes <= INLINE_BYTES else hashlib.sha1(a.tobytes()).digest()
    return (a.dtype.str, a.shape, raw)


def _attr_key(value: Any) -> Any:
    if isinstance(value, float):      # 0.0 and -0.0 compare equal, 1 and 1.0 too
        return ("float", value.hex())
    if isinstance(value, Graph):
        return ("graph", _body_key(value))
    if isinstance(value, np.ndarray):
        return ("array", _array_key(value))
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    return value
