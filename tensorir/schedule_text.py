"""Text form of a lowered program: the ``schedule { ... }`` section printed after the graph.

::

    schedule {
      target "kpu-16x16" {
        level L1 {capacity = 65536, line = 64, managed = "scratchpad", double_buffered = 1}
        level DRAM {capacity = 8589934592, line = 64, managed = "cache", double_buffered = 0}
      }
      kernel %h = fused.matmul epilogue L1 {
        # dims m=64, n=48, k=32(red)   combiner add
        # a0 = %x[m, k] main;  a1 = %w[k, n] main;  a2 = %b[n] epilogue
        # result %h[m, n];  acc [m, n]
        tile L1 [16, 16, 32] order [m, n, k]
        buffer a0.L1 = in a0 L1 f32[16, 32] * 2
        ...
        for m step 16 level L1 {
          load a0.L1 = %x
          ...
          compute main -> acc.L1 accumulate
          epilogue out.L1 = acc.L1
          store out.L1 -> %h
        }
      }
      kernel %y = Reshape untiled "data_movement op"
    }

The ``#`` lines restate the kernel domain for the reader; the parser derives it again from the
op (``tensorir.kernel``) and reads the tiles, buffers and statements, so what the interpreter
runs is what the text says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .kernel import kernel_domain_or_reason
from .printer import format_name
from .schedule import (Buffer, Compute, Epilogue, Init, KernelSchedule, LevelTiling, Load,
                       Loop, Schedule, Store)
from .target import Managed, MemoryLevel, Target

if TYPE_CHECKING:
    from .ir import Graph
    from .parser import Parser


def _ref(name: str) -> str:
    return "%" + format_name(name[1:]) if name.startswith("%") else format_name(name)


def format_schedule(g: "Graph") -> str:
    s: Schedule = g.schedule
    t = s.target
    lines = ["schedule {", f"  target {format_name(t.name)} {{"]
    for lv in t.levels:
        lines.append(f"    level {format_name(lv.name)} {{capacity = {lv.capacity_bytes}, "
                     f"line = {lv.line_bytes}, managed = \"{lv.managed.value}\", "
                     f"double_buffered = {int(lv.double_buffered)}}}")
    lines.append("  }")
    producers = {op.results[0].name: op for op in g.ops if op.results}
    for ks in s.kernels:
        lines += _kernel_lines(producers.get(ks.result), ks)
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_kernel(g: "Graph", ks: KernelSchedule) -> str:
    """One kernel's text, as it appears in the schedule section."""
    producers = {op.results[0].name: op for op in g.ops if op.results}
    return "\n".join(line[2:] for line in _kernel_lines(producers.get(ks.result), ks)) + "\n"


def _kernel_lines(op, ks: KernelSchedule) -> list[str]:
    head = f"  kernel %{format_name(ks.result)} = {ks.op_type}"
    if ks.untiled:
        return [f"{head} untiled {_json(ks.untiled)}"]
    lines = [f"{head} epilogue {format_name(ks.tilings[ks.epilogue_level].level)} {{"]
    lines += ["    # " + c for c in _describe(op)]
    kd = kernel_domain_or_reason(op) if op is not None else None
    names = kd.names if kd is not None and not isinstance(kd, str) else None
    dim = (lambda d: names[d]) if names else (lambda d: f"d{d}")
    for tl in ks.tilings:
        lines.append(f"    tile {format_name(tl.level)} [{', '.join(map(str, tl.tile))}] "
                     f"order [{', '.join(dim(d) for d in tl.order)}]")
    for b in ks.buffers:
        text = (f"    buffer {format_name(b.name)} = {b.role} "
                f"{'a' + str(b.access) if b.access >= 0 else '_'} {format_name(b.level)} "
                f"{b.dtype.value}[{', '.join(map(str, b.shape))}]")
        if b.copies != 1:
            text += f" * {b.copies}"
        if b.offset is not None:
            text += f" offset {b.offset}"
        lines.append(text)
    _format_stmts(ks.body, ks, dim, "    ", lines)
    lines.append("  }")
    return lines


def _json(text: str) -> str:
    import json
    return json.dumps(text)


def _describe(op) -> list[str]:
    if op is None:
        return []
    kd = kernel_domain_or_reason(op)
    if isinstance(kd, str):
        return []
    names = kd.names
    out = [f"dims {kd.format()}" + (f"   combiner {kd.combiner}" if kd.combiner else "")]
    out.append(";  ".join(
        f"a{i} = %{format_name(op.operands[a.operand].name)}"
        f"{'<opaque>' if a.map is None else a.map.format(names)} {a.stage}"
        for i, a in enumerate(kd.accesses)))
    acc = f";  acc {kd.accumulator_map.format(names)}" if kd.accumulator_map is not None else ""
    out.append(f"result %{format_name(op.results[0].name)}{kd.result_map.format(names)}{acc}")
    return out


def _format_stmts(stmts, ks: KernelSchedule, dim, indent: str, lines: list[str]) -> None:
    for s in stmts:
        if isinstance(s, Loop):
            lines.append(f"{indent}for {dim(s.dim)} step {s.step} level "
                         f"{format_name(ks.tilings[s.level].level)} {{")
            _format_stmts(s.body, ks, dim, indent + "  ", lines)
            lines.append(indent + "}")
        elif isinstance(s, Load):
            lines.append(f"{indent}load {_ref(s.buffer)} = {_ref(s.source)}")
        elif isinstance(s, Init):
            lines.append(f"{indent}init {_ref(s.buffer)}")
        elif isinstance(s, Compute):
            lines.append(f"{indent}compute {s.stage} -> {_ref(s.buffer)}"
                         + (" accumulate" if s.accumulate else ""))
        elif isinstance(s, Epilogue):
            lines.append(f"{indent}epilogue {_ref(s.buffer)} = {_ref(s.source)}")
        elif isinstance(s, Store):
            lines.append(f"{indent}store {_ref(s.buffer)} -> {_ref(s.target)}"
                         + (" accumulate" if s.accumulate else ""))


# --------------------------------------------------------------------------- parsing
def parse_schedule(p: "Parser", g: "Graph") -> Schedule:
    """Read the ``schedule { ... }`` section at the parser's position (after the graph)."""
    p.expect("schedule")
    p.expect("{")
    p.expect("target")
    target_name = p.name()
    p.expect("{")
    levels = []
    while p.accept("level"):
        name = p.name()
        p.expect("{")
        fields = {}
        while not p.accept("}"):
            key = p.expect_kind("ident", "a level field").text
            p.expect("=")
            fields[key] = p.string() if p.tok.kind == "string" else _int(p)
            p.accept(",")
        try:
            levels.append(MemoryLevel(name, fields["capacity"], fields["line"],
                                      Managed(fields["managed"]), bool(fields["double_buffered"])))
        except (KeyError, ValueError) as exc:
            raise p.error(f"level {name!r}: bad or missing field {exc}") from None
    p.expect("}")
    target = Target(target_name, tuple(levels))
    producers = {op.results[0].name: op for op in g.ops if op.results}
    kernels = []
    while p.accept("kernel"):
        tok = p.tok
        result = p.value_name()
        p.expect("=")
        op_type = p.expect_kind("ident", "an op type").text
        op = producers.get(result)
        if op is None or op.type != op_type:
            raise p.error(f"kernel %{result}: the graph has no {op_type} op producing it", tok)
        if p.accept("untiled"):
            kernels.append(KernelSchedule(result, op_type, untiled=p.string()))
            continue
        p.expect("epilogue")
        epilogue_name = p.name()
        kd = kernel_domain_or_reason(op)
        if isinstance(kd, str):
            raise p.error(f"kernel %{result} is not tileable ({kd})", tok)
        dim_index = {n: i for i, n in enumerate(kd.names)}
        p.expect("{")
        tilings: list[LevelTiling] = []
        buffers: list[Buffer] = []
        while p.accept("tile"):
            lvl = p.name()
            p.expect("[")
            tile = p.comma_list("]", lambda: _int(p))
            p.expect("order")
            p.expect("[")
            order = p.comma_list("]", lambda: _dim(p, dim_index))
            if len(tile) != len(kd.dims) or sorted(order) != list(range(len(kd.dims))):
                raise p.error(f"kernel %{result}: tile and order need one entry per dim "
                              f"({', '.join(kd.names)})")
            tilings.append(LevelTiling(lvl, tuple(tile), tuple(order)))
        level_index = {t.level: i for i, t in enumerate(tilings)}
        while p.accept("buffer"):
            name = p.name()
            p.expect("=")
            role = p.expect_kind("ident", "in, acc or out").text
            access_tok = p.expect_kind("ident", "an access (a0 ...) or _")
            access = -1 if access_tok.text == "_" else int(access_tok.text[1:])
            lvl = p.name()
            dtype = p.dtype()
            p.expect("[")
            shape = p.comma_list("]", lambda: _int(p))
            copies = _int(p) if p.accept("*") else 1
            offset = _int(p) if p.accept("offset") else None
            buffers.append(Buffer(name, lvl, role, access, tuple(shape), dtype, copies, offset))
        body = _parse_stmts(p, dim_index, level_index)
        p.expect("}")
        if epilogue_name not in level_index:
            raise p.error(f"kernel %{result}: epilogue level {epilogue_name!r} has no tile")
        kernels.append(KernelSchedule(result, op_type, tuple(tilings), tuple(buffers),
                                      tuple(body), level_index[epilogue_name]))
    p.expect("}")
    return Schedule(target, tuple(kernels))


def _int(p: "Parser") -> int:
    tok = p.expect_kind("number", "an integer")
    try:
        return int(tok.text)
    except ValueError:
        raise p.error(f"expected an integer, found {tok.text!r}", tok) from None


def _dim(p: "Parser", dim_index: dict[str, int]) -> int:
    tok = p.expect_kind("ident", "a loop dim")
    if tok.text not in dim_index:
        raise p.error(f"unknown loop dim {tok.text!r} (dims: {', '.join(dim_index)})", tok)
    return dim_index[tok.text]


def _buffer_ref(p: "Parser") -> str:
    if p.tok.kind == "value":
        return "%" + p.value_name()
    return p.name()


def _parse_stmts(p: "Parser", dim_index, level_index) -> list:
    out: list = []
    while True:
        if p.accept("for"):
            d = _dim(p, dim_index)
            p.expect("step")
            step = _int(p)
            p.expect("level")
            tok = p.tok
            lvl = p.name()
            if lvl not in level_index:
                raise p.error(f"loop level {lvl!r} has no tile", tok)
            p.expect("{")
            body = _parse_stmts(p, dim_index, level_index)
            p.expect("}")
            out.append(Loop(d, level_index[lvl], step, tuple(body)))
        elif p.accept("load"):
            buf = _buffer_ref(p)
            p.expect("=")
            out.append(Load(buf, _buffer_ref(p)))
        elif p.accept("init"):
            out.append(Init(_buffer_ref(p)))
        elif p.accept("compute"):
            stage = p.expect_kind("ident", "main or all").text
            p.expect("->")
            buf = _buffer_ref(p)
            out.append(Compute(stage, buf, p.accept("accumulate")))
        elif p.accept("epilogue"):
            buf = _buffer_ref(p)
            p.expect("=")
            out.append(Epilogue(buf, _buffer_ref(p)))
        elif p.accept("store"):
            buf = _buffer_ref(p)
            p.expect("->")
            target = _buffer_ref(p)
            out.append(Store(buf, target, p.accept("accumulate")))
        else:
            return out
