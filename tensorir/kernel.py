"""The iteration domain of a kernel: one op, or a ``fused.*`` op's whole body, as one loop nest.

A single op's kernel domain is its registry domain. A fused kernel's is built the way MLIR's
linalg fuses producers into consumers: start from the *root* (the body op that produces the
kernel's result) and walk the body backwards. A producer's output map says which of its loop
dims index its result; the consumer reads that result at affine expressions of the kernel's
loop dims, so each of those producer loop dims *is* that expression. The producer's other loop
dims (its reductions, not visible in its result) become new kernel dims. Composing every
operand map with these substitutions gives each body input an affine map over the kernel dims:

    root  O[b,h,m,d] = sum_n P[b,h,m,n] * V[b,h,n,d]     kernel dims b, h, m, d, n
    P = Softmax(S) over n                                 S read at [b, h, m, n]
    S[b,h,m,n] = sum_k Q[b,h,m,k] * K[b,h,k,n]            new dim k; Q at [b,h,m,k]

So a tile of the kernel domain computes every body op on the matching tile of its own domain:
a producer is computed per consumer tile, never materialised whole (tile-and-fuse).

Which dims may be split into tiles:

- a parallel dim of the root, unless the kernel's *anchor* (below) does not depend on it, since
  the anchor would be recomputed for every tile of it;
- a reduction dim only when it belongs to the *anchor*: the first body op whose registry entry
  declares a reduction combiner (MatMul, Gemm, Conv: add; ReduceMax: max ...). Its partial
  results accumulate over reduction tiles; the ops downstream of it (the *epilogue*: bias,
  activation, softmax ...) run once the reduction is complete. Any other reduction (a softmax
  axis, a mean, a second contraction) must stay whole, and so must every kernel dim it reads.

A kernel whose body cannot be composed (an op without an affine domain, a value read at two
different maps, an op with several used results) has no kernel domain: it runs untiled.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Sequence

import attrs

from .ir import CONST, Graph, Op, Value
from .ops.domain import AffineExpr, AffineMap, IterationDomain, IterKind, LoopDim
from .ops.registry import Category, get_op_def, memo_per_op, op_context
from .structure import op_key, small_constant_key

MAIN = "main"          # computed per innermost tile (the anchor and everything it depends on)
EPILOGUE = "epilogue"  # computed once the anchor's reduction is complete


@attrs.frozen(cache_hash=True)  # a part of lowering's memo keys: hashed often
class Access:
    """A kernel operand read through an affine map over the kernel dims (None: opaque, read
    whole from main memory, such as a shape operand or a Gather table)."""

    operand: int
    map: AffineMap | None
    stage: str


@attrs.frozen
class BodyStep:
    """One body op with its loop dims expressed over the kernel dims and where its operands
    come from: ``("input", access index)``, ``("value", body step index)`` or None."""

    op: Op
    loops: tuple[AffineExpr, ...]
    sources: tuple[tuple[str, int] | None, ...]
    stage: str


@attrs.frozen
class KernelDomain:
    dims: tuple[LoopDim, ...]
    accesses: tuple[Access, ...]
    result_map: AffineMap
    steps: tuple[BodyStep, ...]          # body ops in order; the last is the root
    whole: frozenset[int]                # dims that must not be split
    anchor: int | None                   # index into steps of the accumulating op
    accumulator_map: AffineMap | None    # how the anchor's result is indexed over the kernel dims
    combiner: str | None                 # the anchor's reduction combiner ("add", "max", "min")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    @property
    def extents(self) -> tuple[int, ...]:
        return tuple(int(d.extent) for d in self.dims)

    def split_reductions(self) -> tuple[int, ...]:
        """Reduction dims that may be split (the anchor's, accumulated with its combiner)."""
        return tuple(i for i, d in enumerate(self.dims)
                     if d.kind is IterKind.REDUCTION and i not in self.whole)

    def as_iteration_domain(self) -> IterationDomain:
        """The same dims with one map per access, for the traffic model."""
        return IterationDomain(self.dims, tuple(a.map for a in self.accesses),
                               (self.result_map,))

    def format(self) -> str:
        return ", ".join(f"{d.name}={d.extent}" + ("(red)" if d.kind is IterKind.REDUCTION else "")
                         + ("(whole)" if i in self.whole else "")
                         for i, d in enumerate(self.dims))


class NotTileable(Exception):
    """Why a kernel has no kernel domain (internal: callers get the reason string)."""


def _select_loops(out: AffineMap) -> list[int | None]:
    """Loop dim of each result dim, for an output map that selects loop dims."""
    loops: list[int | None] = []
    for e in out.exprs:
        nz = [i for i, c in enumerate(e.coeffs) if c]
        if not nz and e.const == 0:
            loops.append(None)  # a kept size-1 dim (keepdims): no loop indexes it
            continue
        if len(nz) != 1 or e.coeffs[nz[0]] != 1 or e.const:
            raise NotTileable("an output map that is not a selection of loop dims")
        loops.append(nz[0])
    chosen = [i for i in loops if i is not None]
    if len(set(chosen)) != len(chosen):
        raise NotTileable("an output map that repeats a loop dim")
    return loops


def _substitute(amap: AffineMap, loops: Sequence[dict[int, int] | None]) -> list[dict[int, int]]:
    """Each expression of ``amap`` (over an op's loop dims) as {kernel dim: coeff} plus const
    under key -1."""
    out = []
    for e in amap.exprs:
        acc: dict[int, int] = {-1: e.const}
        for i, c in enumerate(e.coeffs):
            if c:
                for k, v in loops[i].items():
                    acc[k] = acc.get(k, 0) + c * v
        out.append({k: v for k, v in acc.items() if v or k == -1})
    return out


def _to_expr(d: dict[int, int], n: int) -> AffineExpr:
    coeffs = [0] * n
    for k, v in d.items():
        if k >= 0:
            coeffs[k] = v
    return AffineExpr(tuple(coeffs), d.get(-1, 0))


def flatten_body(body: Graph) -> Graph:
    """``body`` with every nested fused op replaced by its own body's ops (recursively), so a
    kernel is one flat list of ordinary ops."""
    def nested(g: Graph) -> list[Op]:
        return [o for o in g.ops if get_op_def(o.type).category is Category.FUSED]

    if not nested(body):
        return body
    flat = body.copy()
    while found := nested(flat):
        flat.inline(found[0])
    return flat


def _body_of(op: Op) -> tuple[list[Op], list[Value], Value]:
    """Body ops in order, the body values standing for the kernel operands, the result."""
    if get_op_def(op.type).category is Category.FUSED:
        from .ops.fused import _bound_body
        body = flatten_body(_bound_body(op_context(op)))
        if len(body.outputs) != 1:
            raise NotTileable(f"a fused body with {len(body.outputs)} outputs")
        return list(body.ops), list(body.inputs), body.outputs[0]
    if len(op.results) != 1:
        raise NotTileable(f"{op.type} has {len(op.results)} results")
    return [op], list(op.operands), op.results[0]


@memo_per_op
def _composed_or_reason(op: Op) -> KernelDomain | str:
    """Per op object (``memo_per_op``), and behind that per content: lowering one graph for
    several targets lowers one copy of it per target, and the copies' ops (and the ops a
    fused kernel that does not fit unfuses into, the same for every target) have the same
    kernel domains."""
    keyed = _content_key(op)
    if keyed is None:
        return _compose_or_reason(op)
    key, witnesses = keyed
    entry = _by_content.get(key)
    if entry is not None and all(ref() is w for ref, w in zip(entry[0], witnesses)):
        _by_content.move_to_end(key)
        return _with_op(entry[1], None, op)
    found = _compose_or_reason(op)
    try:
        refs = tuple(weakref.ref(w) for w in witnesses)
    except TypeError:  # constant data of a kind that takes no weak reference: not kept
        return found
    _by_content[key] = (refs, _with_op(found, op, None))
    if len(_by_content) > _CONTENT_MEMO_SIZE:
        _by_content.popitem(last=False)
    return found


def _compose_or_reason(op: Op) -> KernelDomain | str:
    """Composed once per structure (:func:`_structure_key`): a model's repeated blocks (BERT's
    twelve layers) have kernels that differ only in their names, weights and body ops, so one
    composition serves them all with each kernel's own body ops put into its steps."""
    try:
        ops, inputs, result = _body_of(op)
    except NotTileable as exc:
        return str(exc)
    key = _structure_key(op)
    template = None if key is None else _by_structure.get(key)
    if template is not None and _fits(template, ops):
        _by_structure.move_to_end(key)
        return _instantiated(template, ops)
    try:
        found = _compose(op, ops, inputs, result)
    except NotTileable as exc:
        return str(exc)  # reasons name values: not shared between kernels
    if key is not None:
        _by_structure[key] = _template_of(found, ops)
        if len(_by_structure) > _CONTENT_MEMO_SIZE:
            _by_structure.popitem(last=False)
    return found


@attrs.frozen
class _Template:
    """A kernel domain with its steps' ops left out (None), and where to find them in the
    body of another kernel of the same structure: an index into its body ops and the type
    expected there."""

    domain: KernelDomain
    op_index: tuple[int, ...]
    op_types: tuple[str, ...]
    body_size: int


# structure key -> template; plain data only, so it holds no graph alive
_by_structure: "OrderedDict[tuple, _Template]" = OrderedDict()


def _structure_key(op: Op) -> tuple | None:
    """What an op's kernel domain depends on besides which ops its steps are: the op's
    structure (:func:`~tensorir.structure.op_key`: types, attributes, a fused body with its
    constants) and the data of its constant operands, which a registry domain may read (a
    Slice's starts). A fused op's domain is composed from its body, whose inputs stand for its
    operands, so their data (its weights) never reaches it. None: no such key (a constant too
    big to put in one, an attribute that is not hashable); the per-content memo still works."""
    if get_op_def(op.type).category is Category.FUSED:
        key: tuple = (op_key(op),)
    else:
        data = []
        for v in op.operands:
            if v is not None and v.kind == CONST:
                small = small_constant_key(v)
                if small is None:
                    return None
                data.append(small)
        key = (op_key(op), tuple(data))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _template_of(found: KernelDomain, ops: Sequence[Op]) -> _Template:
    position = {id(o): i for i, o in enumerate(ops)}
    index = tuple(position[id(st.op)] for st in found.steps)
    steps = tuple(attrs.evolve(st, op=None) for st in found.steps)
    return _Template(attrs.evolve(found, steps=steps), index,
                     tuple(st.op.type for st in found.steps), len(ops))


def _fits(template: _Template, ops: Sequence[Op]) -> bool:
    """Whether ``ops`` (a kernel's body ops) line up with the template's steps, as they do for
    kernels of the same structure (a check that costs little, not a proof)."""
    return len(ops) == template.body_size and all(
        ops[i].type == t for i, t in zip(template.op_index, template.op_types))


def _instantiated(template: _Template, ops: Sequence[Op]) -> KernelDomain:
    steps = tuple(BodyStep(ops[i], st.loops, st.sources, st.stage)
                  for i, st in zip(template.op_index, template.domain.steps))
    return attrs.evolve(template.domain, steps=steps)


_CONTENT_MEMO_SIZE = 4096
# content key -> (weak references to the key's witnesses, the domain with the op's own step
# made None: a template that holds no graph alive)
_by_content: "OrderedDict[tuple, tuple[tuple[weakref.ref, ...], KernelDomain | str]]" = \
    OrderedDict()


def _content_key(op: Op) -> tuple[tuple, list] | None:
    """What an op's kernel domain depends on: its type, attributes, operands (names, kinds,
    types, which of them are the same value) and result types. Objects too big to compare
    (a fused body graph, constant data) enter the key by identity and come back as its
    *witnesses*: a memo entry matches only while they are alive and the same objects, so an
    identity can never be a reused one. None: an attribute of a kind not known here."""
    witnesses: list = []

    def identity(obj) -> int:
        witnesses.append(obj)
        return id(obj)

    attributes = []
    for name, value in op.attrs.items():
        plain = _plain_key(value)
        if plain is None:
            if not isinstance(value, Graph):
                return None
            plain = ("graph", identity(value))
        attributes.append((name, plain))
    first: dict[int, int] = {}
    operands = tuple(None if v is None else
                     (first.setdefault(id(v), j), v.name, v.kind, v.type,
                      identity(v.data) if v.kind == "const" else None)
                     for j, v in enumerate(op.operands))
    return (op.type, tuple(attributes), operands, tuple(r.type for r in op.results)), witnesses


def _plain_key(value) -> tuple | None:
    """A hashable key equal only for equal attribute values of the same types (None for a
    value that is not a number, string or tuple or list of them)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        items = tuple(_plain_key(x) for x in value)
        return None if any(x is None for x in items) else (type(value).__name__, items)
    return None


def _with_op(found: KernelDomain | str, old: Op | None, new: Op | None) -> KernelDomain | str:
    """``found`` with the steps whose op is ``old`` (an unfused op's one step is the op
    itself) given ``new``; a fused op's steps are ops of its body, shared by its copies."""
    if isinstance(found, str) or all(st.op is not old for st in found.steps):
        return found
    return attrs.evolve(found, steps=tuple(attrs.evolve(st, op=new) if st.op is old else st
                                           for st in found.steps))


def kernel_domain(op: Op) -> KernelDomain:
    """The kernel domain of ``op`` (see the module docstring); raises NotTileable.

    Memoised per op while its operands, attributes and result types stay the same: lowering,
    verification and every backend ask for the same kernels.
    """
    found = _composed_or_reason(op)
    if isinstance(found, str):
        raise NotTileable(found)
    return found


def kernel_domain_or_reason(op: Op) -> KernelDomain | str:
    """:func:`kernel_domain`, or the reason ``op`` has none (from the same memo)."""
    return _composed_or_reason(op)


def _key(m: list[dict[int, int]]) -> tuple:
    return tuple(tuple(sorted(e.items())) for e in m)


def _compose(op: Op, ops: list[Op], inputs: list[Value], result: Value) -> KernelDomain:
    """The kernel domain of ``op``, whose body (:func:`_body_of`) is ``ops`` reading
    ``inputs`` and computing ``result``."""
    for v in inputs:
        if v is not None and not v.type.is_static:
            raise NotTileable(f"operand %{v.name} has a symbolic shape")
    root = result.producer if len(ops) > 1 or ops[0] is not op else op
    if root is None or root not in ops:
        raise NotTileable("the kernel's result is not computed by its body")
    position = {id(o): i for i, o in enumerate(ops)}
    produced = {id(r) for o in ops for r in o.results}
    input_index = {id(v): i for i, v in enumerate(inputs) if v is not None}
    domains = {}
    for o in ops:
        refusal = get_op_def(o.type).tiling_refusal()
        if refusal:
            raise NotTileable(f"{o.type}: {refusal}")
        d = get_op_def(o.type).domain(op_context(o))
        if d is None:
            raise NotTileable(f"{o.type} has no affine iteration domain")
        if any(not isinstance(x.extent, int) for x in d.dims):
            raise NotTileable(f"{o.type} has a symbolic loop extent")
        if get_op_def(o.type).category is Category.DATA_MOVEMENT and any(
                v is not None and v.kind != "const" and (j >= len(d.inputs) or d.inputs[j] is None)
                for j, v in enumerate(o.operands)):
            raise NotTileable(f"{o.type}: moves data in no affine pattern")
        domains[id(o)] = d
    root_ndims = len(domains[id(root)].dims)
    dims: list[LoopDim] = []
    # one *instance* per (op, map its result is read at): a value read at two maps (x - mean
    # read along a row and along a whole row again) is computed once per map
    inst_op: list[Op] = []
    inst_loops: list[list[dict[int, int]]] = []
    inst_read: list[list[dict[int, int]] | None] = []
    inst_sources: list[list] = []
    value_reads: dict[int, dict[tuple, list]] = {}   # value -> map key -> [map, consumers]
    whole: set[int] = set()
    reduction_owner: dict[int, int] = {}             # kernel dim -> instance reducing it
    reads: list[tuple[int, int, int, list | None]] = []  # instance, slot, input, map

    for o in reversed(ops):
        d = domains[id(o)]
        if o is root:
            out_index = o.results.index(result)
            wanted = [(None, None)]
        else:
            used = [r for r in o.results if id(r) in value_reads]
            if len(used) > 1:
                raise NotTileable(f"{o.type} has several results used in the kernel")
            if not used:
                continue  # dead in the body
            out_index = o.results.index(used[0])
            if out_index >= len(d.outputs) or d.outputs[out_index] is None:
                raise NotTileable(f"{o.type}'s result has no affine map")
            wanted = [(k, entry) for k, entry in value_reads[id(used[0])].items()]
        for key, entry in wanted:
            inst = len(inst_op)
            mine: list[dict[int, int] | None] = [None] * len(d.dims)
            if key is None:
                for j, ld in enumerate(d.dims):
                    dims.append(ld)
                    mine[j] = {len(dims) - 1: 1}
            else:
                read_at, consumers = entry
                for c_inst, c_slot in consumers:
                    inst_sources[c_inst][c_slot] = ("value", inst)
                for j, loop in enumerate(_select_loops(d.outputs[out_index])):
                    if loop is not None:
                        mine[loop] = read_at[j]
                for j, ld in enumerate(d.dims):
                    if mine[j] is None:
                        if ld.kind is not IterKind.REDUCTION:
                            raise NotTileable(f"{o.type} has a parallel loop dim its result "
                                              f"hides")
                        dims.append(LoopDim(_fresh_name(ld.name, dims), ld.extent, ld.kind))
                        mine[j] = {len(dims) - 1: 1}
            for j, ld in enumerate(d.dims):
                if ld.name in get_op_def(o.type).full_dims:  # e.g. LRN's channel window
                    whole.update(k for k in mine[j] if k >= 0)
                if ld.kind is IterKind.REDUCTION:
                    for k in mine[j]:
                        if k >= 0:
                            reduction_owner.setdefault(k, inst)
                            if reduction_owner[k] != inst:
                                whole.add(k)
                    if o is not root and any(0 <= k < root_ndims for k in mine[j]):
                        # a producer reduces over a dim the root iterates: keep it whole
                        whole.update(k for k in mine[j] if k >= 0)
            inst_op.append(o)
            inst_loops.append(mine)  # type: ignore[arg-type]
            inst_read.append(None if key is None else entry[0])
            inst_sources.append([None] * len(o.operands))
            for slot, v in enumerate(o.operands):
                if v is None:
                    continue
                amap = d.inputs[slot] if slot < len(d.inputs) else None
                composed = None if amap is None else _substitute(amap, mine)  # type: ignore[arg-type]
                if id(v) in produced:
                    if composed is None:
                        raise NotTileable(f"{o.type} reads a body value through an opaque map")
                    entry_v = value_reads.setdefault(id(v), {}).setdefault(
                        _key(composed), [composed, []])
                    entry_v[1].append((inst, slot))
                elif id(v) in input_index:
                    reads.append((inst, slot, input_index[id(v)], composed))
                elif v.kind == "const":
                    continue  # a constant inside the body: read from its data, no access
                else:
                    raise NotTileable(f"%{v.name} is neither a kernel operand nor a body value")

    n = len(dims)
    # program order: by op position, instances of one op in creation order
    order = sorted(range(len(inst_op)), key=lambda i: (position[id(inst_op[i])], i))
    step_of = {inst: s for s, inst in enumerate(order)}
    combiner_insts = [i for i in order if get_op_def(inst_op[i].type).combiner is not None]
    anchor = combiner_insts[0] if combiner_insts else None
    ancestors: set[int] = set()
    if anchor is not None:
        stack = [anchor]
        while stack:
            i = stack.pop()
            if i in ancestors:
                continue
            ancestors.add(i)
            stack += [src[1] for src in inst_sources[i] if src is not None and src[0] == "value"]
        for k, owner in reduction_owner.items():
            if owner != anchor:
                whole.add(k)
        if inst_read[anchor] is not None:
            # the anchor would be recomputed for every tile of a dim it does not read
            anchor_dims = {k for e in inst_loops[anchor] for k in e if k >= 0}
            whole.update(k for k in range(root_ndims) if k not in anchor_dims)
    else:
        whole.update(reduction_owner)
    stage_of = {i: (MAIN if anchor is None or i in ancestors else EPILOGUE) for i in order}

    accesses: list[Access] = []
    access_of: dict[tuple, int] = {}
    for inst, slot, inp, composed in sorted(reads, key=lambda r: (step_of[r[0]], r[1])):
        amap = None if composed is None else AffineMap(tuple(_to_expr(e, n) for e in composed))
        key = (inp, None if amap is None else amap.exprs)
        if key not in access_of:
            access_of[key] = len(accesses)
            accesses.append(Access(inp, amap, stage_of[inst]))
        elif stage_of[inst] == MAIN and accesses[access_of[key]].stage != MAIN:
            accesses[access_of[key]] = attrs.evolve(accesses[access_of[key]], stage=MAIN)
        inst_sources[inst][slot] = ("input", access_of[key])
    steps = tuple(BodyStep(inst_op[i], tuple(_to_expr(e, n) for e in inst_loops[i]),
                           tuple(None if src is None else
                                 (src[0], step_of[src[1]] if src[0] == "value" else src[1])
                                 for src in inst_sources[i]), stage_of[i]) for i in order)
    root_inst = [i for i in order if inst_read[i] is None][0]
    root_dom = domains[id(root)]
    result_map = AffineMap(tuple(_to_expr(e, n) for e in _substitute(
        root_dom.outputs[root.results.index(result)], inst_loops[root_inst])))
    acc_map = None
    if anchor is not None:
        acc_map = result_map if inst_read[anchor] is None else AffineMap(
            tuple(_to_expr(e, n) for e in inst_read[anchor]))
    for amap in [result_map] + [a.map for a in accesses if a.map is not None] + [
            AffineMap(tuple(_to_expr(e, n) for e in m)) for m in inst_read if m is not None]:
        whole.update(_mixed_radix_minors(amap, dims))
    combiner = None if anchor is None else get_op_def(inst_op[anchor].type).combiner
    if anchor is not None and inst_read[anchor] is not None:
        # name the root's dims after the anchor's loops they are (m, n, oh ... not d0, d1)
        anchor_dims = domains[id(inst_op[anchor])].dims
        for j, e in enumerate(inst_loops[anchor]):
            k = [x for x in e if x >= 0]
            if len(k) == 1 and e[k[0]] == 1 and e.get(-1, 0) == 0 and k[0] < root_ndims:
                name = anchor_dims[j].name
                if all(d.name != name for d in dims):
                    dims[k[0]] = attrs.evolve(dims[k[0]], name=name)
    return KernelDomain(tuple(dims), tuple(accesses), result_map, steps, frozenset(whole),
                        None if anchor is None else step_of[anchor], acc_map, combiner)


def _mixed_radix_minors(amap: AffineMap, dims: Sequence[LoopDim]) -> set[int]:
    """Dims that must stay whole so that a tile's box is exactly the elements it touches.

    In ``c = g*Cg + o`` (grouped channels) a tile with several groups and part of each group
    touches a comb of channels, not the box between its ends; keeping the minor dim ``o``
    whole (or the major one at one trip) makes the box exact. A halo (``oh*s + kh``) is not
    such a pair: its terms overlap, so the box is exactly what the tile touches.
    """
    minors: set[int] = set()
    for e in amap.exprs:
        terms = [(abs(c), i) for i, c in enumerate(e.coeffs) if c and int(dims[i].extent) > 1]
        for ca, a in terms:
            for cb, b in terms:
                if a != b and ca >= cb * int(dims[b].extent) and (ca, a) > (cb, b):
                    minors.add(b)
    return minors


def _fresh_name(base: str, dims: Sequence[LoopDim]) -> str:
    taken = {d.name for d in dims}
    name, i = base, 1
    while name in taken:
        name = f"{base}{i}"
        i += 1
    return name
