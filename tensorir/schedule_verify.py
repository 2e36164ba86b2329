"""Invariants of a lowered program, checked by the verifier when a graph has a schedule.

- every kernel names an op of the graph, of that type, with a kernel domain when tiled;
- tilings: one per on-chip level of the target, outermost first, tiles within the enclosing
  tile, whole dims whole, split reduction dims innermost in each loop order;
- buffers: each has the shape of its map's box over its level's tile, lives in a level of
  the target, and the buffers of a kernel fit each scratchpad level (copies included) at
  offsets inside the level that do not overlap;
- statements: every buffer they name is declared; a load copies from the same access one level
  out (or from the operand in main memory); every loop is over a (dim, level) once;
- the DRAM arena, when planned: no two values live at one step share bytes
  (:func:`tensorir.arena.verify_arena`).
"""

from __future__ import annotations

from .ir import Graph
from .kernel import kernel_domain_or_reason
from .schedule import ACC, IN, OUT, Load, Loop, Store
from .target import Managed


def check_schedule(g: Graph) -> list[str]:
    s = g.schedule
    problems: list[str] = []
    target = s.target
    on_chip = [lv.name for lv in reversed(target.on_chip)]
    producers = {op.results[0].name: op for op in g.ops if op.results}
    for ks in s.kernels:
        where = f"kernel %{ks.result}"
        op = producers.get(ks.result)
        if op is None or op.type != ks.op_type:
            problems.append(f"{where}: the graph has no {ks.op_type} op producing it")
            continue
        if ks.untiled:
            continue
        kd = kernel_domain_or_reason(op)
        if isinstance(kd, str):
            problems.append(f"{where}: tiled but has no kernel domain ({kd})")
            continue
        levels = [t.level for t in ks.tilings]
        if levels != on_chip:
            problems.append(f"{where}: tiles levels {levels}, the target's on-chip levels are "
                            f"{on_chip} (outermost first)")
            continue
        split = set(kd.split_reductions())
        parent = list(kd.extents)
        tiles = {}
        for t in ks.tilings:
            for d, (x, p) in enumerate(zip(t.tile, parent)):
                if not 1 <= x <= p:
                    problems.append(f"{where}: level {t.level} tile {kd.names[d]}={x} is not "
                                    f"in 1..{p}")
                if d in kd.whole and x != kd.extents[d]:
                    problems.append(f"{where}: level {t.level} splits {kd.names[d]}, which "
                                    f"must stay whole")
            seen_split = False
            for d in t.order:
                if d in split:
                    seen_split = True
                elif seen_split:
                    problems.append(f"{where}: level {t.level} orders parallel dim "
                                    f"{kd.names[d]} inside a split reduction")
                    break
            tiles[t.level] = t.tile
            parent = [min(a, b) for a, b in zip(parent, t.tile)]
        anchor_shape = (kd.steps[kd.anchor].op.results[0].type.shape
                        if kd.anchor is not None else None)
        by_level: dict[str, list] = {}
        for b in ks.buffers:
            if b.level not in tiles:
                problems.append(f"{where}: buffer {b.name} is in {b.level}, which has no tile")
                continue
            if b.role == IN:
                amap = kd.accesses[b.access].map
                bounds = op.operands[kd.accesses[b.access].operand].type.shape
            elif b.role == ACC:
                amap, bounds = kd.accumulator_map, anchor_shape
            else:
                amap, bounds = kd.result_map, op.results[0].type.shape
            want = tuple(amap.footprint(tiles[b.level], bounds))
            if b.shape != want:
                problems.append(f"{where}: buffer {b.name} is {list(b.shape)}, its tile box is "
                                f"{list(want)}")
            by_level.setdefault(b.level, []).append(b)
        for name, bufs in by_level.items():
            level = target.level(name)
            if level.managed is not Managed.SCRATCHPAD:
                continue
            total = sum(b.nbytes for b in bufs)
            if total > level.capacity_bytes:
                problems.append(f"{where}: buffers need {total} bytes of {name}, which holds "
                                f"{level.capacity_bytes}")
            placed = sorted((b.offset, b.offset + b.nbytes, b.name) for b in bufs
                            if b.offset is not None)
            for lo, hi, bname in placed:
                if lo < 0 or hi > level.capacity_bytes:
                    problems.append(f"{where}: buffer {bname} at [{lo}, {hi}) is outside "
                                    f"{name} (0..{level.capacity_bytes})")
            for (lo1, hi1, n1), (lo2, hi2, n2) in zip(placed, placed[1:]):
                if lo2 < hi1:
                    problems.append(f"{where}: buffers {n1} and {n2} overlap in {name}")
        declared = {b.name: b for b in ks.buffers}
        loops_seen = set()
        level_pos = {lv: i for i, lv in enumerate(levels)}
        for stmt, _ in ks.statements():
            if isinstance(stmt, Loop):
                key = (stmt.dim, stmt.level)
                if key in loops_seen:
                    problems.append(f"{where}: two loops over {kd.names[stmt.dim]} at level "
                                    f"{levels[stmt.level]}")
                loops_seen.add(key)
                continue
            names = [getattr(stmt, f) for f in ("buffer", "source", "target")
                     if hasattr(stmt, f)]
            for n in names:
                if not n.startswith("%") and n not in declared:
                    problems.append(f"{where}: {type(stmt).__name__.lower()} names undeclared "
                                    f"buffer {n}")
            if isinstance(stmt, Load) and stmt.buffer in declared:
                b = declared[stmt.buffer]
                li = level_pos.get(b.level, 0)
                if li == 0:
                    want_src = f"%{op.operands[kd.accesses[b.access].operand].name}"
                else:
                    want_src = f"a{b.access}.{levels[li - 1]}"
                if stmt.source != want_src:
                    problems.append(f"{where}: load {b.name} copies from {stmt.source}, not "
                                    f"{want_src}")
            if isinstance(stmt, Store) and stmt.buffer in declared:
                if declared[stmt.buffer].role not in (ACC, OUT):
                    problems.append(f"{where}: store drains {stmt.buffer}, an input buffer")
    if s.arena is not None:
        from .arena import verify_arena
        problems += [f"arena: {p}" for p in verify_arena(s.arena)]
    return problems
