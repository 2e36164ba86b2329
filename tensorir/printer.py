"""The text form of a graph: stable, diff-friendly, and read back exactly by the parser.

::

    graph mixer(%x: f32[batch, 3, 224, 224]) -> (%logits: f32[batch, 1000]) {
      %stem_w = const f32[512, 3, 16, 16] sha1:5f1c0e2a9b3d
      %shape = const i64[3] dense [0, 512, -1]
      %stem = Conv(%x, %stem_w, %stem_b) {kernel_shape = [16, 16], strides = [16, 16]} : f32[batch, 512, 14, 14] loc("stem")
      ...
      return %logits
    }

Values carry their types; ops print their attributes sorted by name and their source node
name(s) in ``loc(...)``. Constants print their elements when small (``dense [...]``) and
otherwise their shape and a digest of their data (``sha1:...``), or ``opaque`` when they have no
data (a weight-stripped model).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .dtypes import DType
from .ir import Graph, Op, Value
from .types import TensorType

INLINE_LIMIT = 16  # constants with at most this many elements print their values
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z|[0-9]+\Z")


def format_name(name: str) -> str:
    """A value or graph name, quoted when it is not a plain identifier."""
    return name if _BARE_NAME.match(name) else json.dumps(name)


def format_value_ref(v: Value | None) -> str:
    return "none" if v is None else "%" + format_name(v.name)


def format_scalar(x: Any, dtype: DType) -> str:
    if dtype is DType.bool:
        return "true" if bool(x) else "false"
    if dtype.is_float:
        # str() of a NumPy float is its shortest round-tripping form; bf16 goes through f32
        return str(np.float32(x)) if dtype is DType.bfloat16 else str(x)
    return str(int(x))


def format_dense(data: np.ndarray, dtype: DType) -> str:
    # only called on small arrays (<= INLINE_LIMIT elements or attribute tensors)
    return "dense [" + ", ".join(format_scalar(x, dtype) for x in np.ravel(data)) + "]"


def format_attr(value: Any, indent: str = "") -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v, indent) for v in value) + "]"
    if isinstance(value, np.ndarray):
        dtype = DType.from_numpy(value.dtype)
        return f"{TensorType(value.shape, dtype)} {format_dense(value, dtype)}"
    if isinstance(value, Graph):
        return _print_graph(value, indent).rstrip("\n")
    raise TypeError(f"cannot print attribute value of type {type(value).__name__}")


def format_loc(op: Op) -> str:
    if not op.name and not op.source:
        return ""
    names = [json.dumps(op.name)]
    if op.source != ((op.name,) if op.name else ()):
        names.append("from [" + ", ".join(json.dumps(s) for s in op.source) + "]")
    return f" loc({' '.join(names)})"


def format_op(op: Op, indent: str = "", locations: bool = True) -> str:
    results = ", ".join(format_value_ref(r) for r in op.results)
    operands = ", ".join(format_value_ref(v) for v in op.operands)
    text = f"{results} = {op.type}({operands})"
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(op.attrs[k], indent)}"
                                 for k in sorted(op.attrs)) + "}"
    text += " : " + ", ".join(str(r.type) for r in op.results)
    if locations:
        text += format_loc(op)
    return text


def format_constant(v: Value, inline_limit: int = INLINE_LIMIT) -> str:
    head = f"{format_value_ref(v)} = const {v.type}"
    if v.data is not None and v.data.size <= inline_limit:
        return f"{head} {format_dense(v.data, v.dtype)}"
    digest = v.content_digest()
    return f"{head} sha1:{digest}" if digest else f"{head} opaque"


def _print_graph(g: Graph, indent: str = "", locations: bool = True,
                 inline_limit: int = INLINE_LIMIT) -> str:
    inner = indent + "  "
    ins = ", ".join(f"{format_value_ref(v)}: {v.type}" for v in g.inputs)
    outs = ", ".join(f"{format_value_ref(v)}: {v.type}" for v in g.outputs)
    lines = [f"graph {format_name(g.name)}({ins}) -> ({outs}) {{"]
    lines += [inner + format_constant(v, inline_limit) for v in g.constants]
    lines += [inner + format_op(op, inner, locations) for op in g.ops]
    lines.append(inner + "return " + ", ".join(format_value_ref(v) for v in g.outputs))
    lines.append(indent + "}")
    return "\n".join(lines) + "\n"


def print_graph(g: Graph, *, locations: bool = True, inline_limit: int = INLINE_LIMIT) -> str:
    """The text form of ``g`` (and of its lowered schedule, if any); ``tensorir.parse`` reads
    it back."""
    text = _print_graph(g, "", locations, inline_limit)
    if g.schedule is not None:
        from .schedule_text import format_schedule
        text += format_schedule(g)
    return text
