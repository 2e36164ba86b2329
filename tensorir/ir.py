"""Values, ops and the graph that owns them.

The graph is bipartite and held in a ``networkx.MultiDiGraph``: value nodes and op nodes, an edge
value -> op per operand slot (so ``Mul(x, x)`` has two edges) and op -> value per result. Every
mutation goes through a :class:`Graph` method that keeps the networkx view, the op operand lists
and the value producers in step; nothing else writes them.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import networkx as nx
import numpy as np

from .dtypes import DType
from .errors import GraphError
from .types import TensorType

INPUT, CONST, RESULT = "input", "const", "result"


def normalize_attr(value: Any) -> Any:
    """One canonical form per attribute value: Python scalars, tuples for lists, arrays kept.

    Graphs, ops and the text form all see attributes in this form, so equality is plain ``==``
    (arrays excepted, see :func:`attrs_equal`).
    """
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(normalize_attr(v) for v in value)
    return value


def attrs_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
                    and x.dtype == y.dtype and x.shape == y.shape
                    and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")):
                return False
        elif hasattr(x, "structurally_equal"):
            if not x.structurally_equal(y):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


@attrs.define(eq=False, repr=False)
class Value:
    """One SSA value: a graph input, a constant (weight) or an op result.

    Constants keep their NumPy data; a weight-stripped constant keeps only its type (``data`` is
    None) and, when it was read from text, the ``digest`` of the data it stood for.
    """

    name: str
    type: TensorType
    kind: str = RESULT
    data: np.ndarray | None = None
    digest: str | None = None
    producer: "Op | None" = None
    _digest_cache: tuple = attrs.field(default=(None, None), init=False)

    @property
    def is_constant(self) -> bool:
        return self.kind == CONST

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def content_digest(self) -> str | None:
        """A short hash of a constant's data (dtype, shape and bytes); None if it has none."""
        if self.data is None:
            return self.digest
        # constant data is never mutated in place, so the digest of one array object is cached
        if self._digest_cache[0] is self.data:
            return self._digest_cache[1]
        h = hashlib.sha1()
        h.update(f"{self.type}".encode())
        h.update(np.ascontiguousarray(self.data).tobytes())
        self._digest_cache = (self.data, h.hexdigest()[:12])
        return self._digest_cache[1]

    def evaluation_data(self) -> np.ndarray | None:
        """``data`` as evaluation should read it: aligned. A weight viewed in place in a
        model's bytes may sit at an address its dtype does not divide, and numpy copies such
        an operand into every matmul it feeds to BLAS (8x slower inference on AlexNet); it
        is replaced by one aligned copy, equal in value, the first time it is evaluated, so
        loading and simulating (which never read the values) copy nothing."""
        if self.data is not None and not self.data.flags.aligned:
            aligned = self.data.copy()
            aligned.flags.writeable = False
            self.data = aligned
        return self.data

    def __repr__(self) -> str:
        return f"Value(%{self.name}: {self.type}, {self.kind})"


@attrs.define(eq=False, repr=False)
class Op:
    """One operation: a registered op type, attributes, operand values and result values.

    ``operands`` may hold None for an absent optional operand (ONNX's empty input name).
    ``source`` records the names of the frontend nodes this op came from (provenance).
    """

    type: str
    attrs: dict[str, Any]
    operands: list[Value | None]
    results: list[Value]
    name: str = ""
    source: tuple[str, ...] = ()

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise GraphError(f"op {self.label} has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def label(self) -> str:
        return f"{self.type} {self.name!r}" if self.name else self.type

    def __repr__(self) -> str:
        ins = ", ".join("none" if v is None else f"%{v.name}" for v in self.operands)
        outs = ", ".join(f"%{v.name}" for v in self.results)
        return f"Op({outs} = {self.type}({ins}))"


def _bind_bodies(attrs_: Mapping[str, Any], env: Mapping[str, int]) -> dict[str, Any]:
    """Attributes with every graph-valued one (a fused op's body) bound too."""
    return {k: v.bind(env) if isinstance(v, Graph) else v for k, v in attrs_.items()}


class Graph:
    """A dataflow graph of ops and values, with a deterministic topological order.

    >>> from tensorir import Graph, TensorType, DType
    >>> g = Graph("double")
    >>> x = g.add_input("x", TensorType((2, 3), DType.float32))
    >>> y = g.add_op("Add", [x, x]).result
    >>> g.set_outputs([y])
    >>> [op.type for op in g.ops]
    ['Add']
    """

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nx = nx.MultiDiGraph()
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self._values: dict[str, Value] = {}
        self._seq: dict[Any, int] = {}  # insertion numbers, in insertion order
        self._next_seq = 0
        self._topo: list[Op] | None = None
        self._name_counter: dict[str, int] = {}
        # the lowered program (tensorir.schedule.Schedule), set by passes.lowering
        self.schedule: Any = None

    # ----------------------------------------------------------------- names and lookup
    def unique_name(self, base: str = "v") -> str:
        """A value name not yet used in this graph, derived from ``base``."""
        if base not in self._values:
            return base
        n = self._name_counter.get(base, 0)
        while True:
            n += 1
            candidate = f"{base}_{n}"
            if candidate not in self._values:
                self._name_counter[base] = n
                return candidate

    def value(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no value %{name}") from None

    def has_value(self, name: str) -> bool:
        return name in self._values

    def values(self) -> list[Value]:
        """Every value, in insertion order."""
        return list(self._values.values())

    @property
    def constants(self) -> list[Value]:
        return [v for v in self._values.values() if v.kind == CONST]

    @property
    def ops(self) -> list[Op]:
        """Ops in deterministic topological order (ties broken by insertion order)."""
        if self._topo is None:
            self._topo = self._topological_order()
        return list(self._topo)

    def _topological_order(self) -> list[Op]:
        """The ops of the lexicographically smallest topological order of all nodes by
        insertion number: what ``nx.lexicographical_topological_sort(self.nx, key=_seq)``
        gives (the order is unique), read from the ops' operand lists instead of a networkx
        view per node, several times faster. Value nodes take part: when a value becomes
        ready decides when its users do."""
        seq = self._seq
        users: dict[Value, list[Op]] = {}
        unmet: dict[Any, int] = {}  # in-edges of each node not yet emitted
        ready: list[tuple[int, Any]] = []
        for node, key in seq.items():
            if isinstance(node, Op):
                count = 0
                for v in node.operands:
                    if v is not None:  # one edge per operand slot, as in self.nx
                        users.setdefault(v, []).append(node)
                        count += 1
            else:
                count = 0 if node.producer is None else 1
            if count:
                unmet[node] = count
            else:
                ready.append((key, node))
        heapq.heapify(ready)  # keys are unique: nodes themselves are never compared
        order: list[Op] = []
        while ready:
            _, node = heapq.heappop(ready)
            if isinstance(node, Op):
                order.append(node)
                successors = node.results
            else:
                successors = users.get(node, ())
            for succ in successors:
                unmet[succ] -= 1
                if not unmet[succ]:
                    heapq.heappush(ready, (seq[succ], succ))
        if any(unmet.values()):
            raise GraphError(f"graph {self.name!r} contains a cycle")
        return order

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return sum(1 for n in self.nx if isinstance(n, Op))

    # ----------------------------------------------------------------- adding
    def _add_node(self, node: Any) -> None:
        self._seq[node] = self._next_seq
        self._next_seq += 1
        self.nx.add_node(node)
        self._topo = None

    def _register_value(self, value: Value) -> Value:
        if value.name in self._values:
            raise GraphError(f"graph {self.name!r} already has a value named %{value.name}")
        self._values[value.name] = value
        self._add_node(value)
        return value

    def add_input(self, name: str, type: TensorType) -> Value:
        value = self._register_value(Value(name, type, INPUT))
        self.inputs.append(value)
        return value

    def add_constant(self, name: str, data: np.ndarray | None = None, *,
                     type: TensorType | None = None, digest: str | None = None) -> Value:
        """A constant value. Give ``data``, or only ``type`` for a weight-stripped constant."""
        if data is not None:
            data = np.asarray(data)
            data_type = TensorType(data.shape, DType.from_numpy(data.dtype))
            if type is not None and type != data_type:
                raise GraphError(f"constant %{name}: declared type {type} but data is {data_type}")
            type = data_type
        elif type is None:
            raise GraphError(f"constant %{name} needs data or a type")
        return self._register_value(Value(name, type, CONST, data=data, digest=digest))

    def add_op(self, op_type: str, operands: Sequence[Value | None],
               attrs: Mapping[str, Any] | None = None, *, name: str = "",
               result_names: Sequence[str] | None = None,
               result_types: Sequence[TensorType] | None = None,
               source: Sequence[str] | None = None) -> Op:
        """Add an op; result types come from the registry's type rule unless given.

        Raises the registry's typed errors (unknown op, bad attributes, shape mismatch).
        """
        from .ops.registry import infer_types  # the registry imports ir's types, not ir

        operands = list(operands)
        for v in operands:
            if v is not None and self._values.get(v.name) is not v:
                raise GraphError(f"{op_type} {name!r}: operand %{v.name} is not a value of "
                                 f"graph {self.name!r}")
        # None means "not given": the registry's default applies
        attrs = {k: normalize_attr(v) for k, v in (attrs or {}).items() if v is not None}
        if result_types is None:
            result_types = infer_types(op_type, attrs, operands, name=name)
        if result_names is None:
            base = name.replace("/", "_").strip("_") if name else op_type.lower()
            result_names = [self.unique_name(base if len(result_types) == 1 else f"{base}_{i}")
                            for i in range(len(result_types))]
            # unique_name looks only at registered values: register as we go below
        if len(result_names) != len(result_types):
            raise GraphError(f"{op_type} {name!r}: {len(result_names)} result names for "
                             f"{len(result_types)} results")
        op = Op(op_type, attrs, operands, [], name=name,
                source=tuple(source) if source is not None else ((name,) if name else ()))
        results = []
        for rname, rtype in zip(result_names, result_types):
            if rname in self._values:
                for r in results:  # undo the partial registration
                    self._forget_value(r)
                raise GraphError(f"graph {self.name!r} already has a value named %{rname}")
            results.append(self._register_value(Value(rname, rtype, RESULT, producer=op)))
        op.results = results
        self._add_node(op)
        for slot, v in enumerate(operands):
            if v is not None:
                self.nx.add_edge(v, op, key=slot)
        for i, r in enumerate(results):
            self.nx.add_edge(op, r, key=i)
        return op

    def set_outputs(self, values: Iterable[Value]) -> None:
        values = list(values)
        for v in values:
            if self._values.get(v.name) is not v:
                raise GraphError(f"output %{v.name} is not a value of graph {self.name!r}")
        self.outputs = values

    # ----------------------------------------------------------------- queries
    def producer(self, value: Value) -> Op | None:
        return value.producer

    def users(self, value: Value) -> list[tuple[Op, int]]:
        """(op, operand slot) for every use of ``value``, in deterministic order."""
        uses = [(op, slot) for _, op, slot in self.nx.out_edges(value, keys=True)]
        uses.sort(key=lambda u: (self._seq[u[0]], u[1]))
        return uses

    def user_ops(self, value: Value) -> list[Op]:
        seen: dict[Op, None] = {}
        for op, _ in self.users(value):
            seen[op] = None
        return list(seen)

    def mark(self) -> int:
        """A point in this graph's history, for :meth:`ops_added_since`."""
        return self._next_seq

    def ops_added_since(self, mark: int) -> list[Op]:
        """The ops added after ``mark`` was taken and still here, in insertion order (without
        a scan of the whole graph: only the newest nodes are looked at)."""
        added = []
        for node in reversed(self._seq):
            if self._seq[node] < mark:
                break
            if isinstance(node, Op):
                added.append(node)
        return added[::-1]

    def is_used(self, value: Value) -> bool:
        return self.nx.out_degree(value) > 0 or any(o is value for o in self.outputs)

    # ----------------------------------------------------------------- rewriting
    def set_operand(self, op: Op, slot: int, value: Value | None) -> None:
        old = op.operands[slot]
        if old is value:
            return
        if value is not None and self._values.get(value.name) is not value:
            raise GraphError(f"%{value.name} is not a value of graph {self.name!r}")
        if old is not None:
            self.nx.remove_edge(old, op, key=slot)
        op.operands[slot] = value
        if value is not None:
            self.nx.add_edge(value, op, key=slot)
        self._topo = None

    def is_output(self, value: Value) -> bool:
        return any(o is value for o in self.outputs)

    def can_take_name(self, value: Value) -> bool:
        """Whether ``value`` may be renamed: inputs and outputs are the graph's interface."""
        return value.kind != INPUT and not self.is_output(value)

    def replace_all_uses_with(self, old: Value, new: Value, *, check_cycle: bool = True,
                              take_name: bool = False) -> int:
        """Point every use of ``old`` (operands and graph outputs) at ``new``; returns the count.

        Graph output names are stable across rewrites: when ``old`` is a graph output (or
        ``take_name`` asks for it), ``new`` takes ``old``'s name if it may be renamed (it is not
        an input or another output), and ``old`` gets a free temporary name.

        The cycle check walks ``new``'s ancestors; a pass that knows ``new`` does not depend on
        ``old`` (e.g. both existed before it started) passes ``check_cycle=False`` to stay
        linear over many replacements.
        """
        if old is new:
            return 0
        if old.type != new.type:
            raise GraphError(f"cannot replace %{old.name}: {old.type} with %{new.name}: {new.type}")
        if check_cycle and new.producer is not None and self._depends_on(new.producer, old):
            raise GraphError(f"replacing %{old.name} with %{new.name} would create a cycle")
        rename = (take_name or self.is_output(old)) and self.can_take_name(new)
        count = 0
        for op, slot in self.users(old):
            self.set_operand(op, slot, new)
            count += 1
        for i, v in enumerate(self.outputs):
            if v is old:
                self.outputs[i] = new
                count += 1
        if rename:
            name = old.name
            self.rename_value(old, self.unique_name(f"{name}__replaced"))
            self.rename_value(new, name)
        return count

    def _depends_on(self, op: Op, value: Value) -> bool:
        return value in nx.ancestors(self.nx, op)

    def replace_op(self, op: Op, new_values: Sequence[Value], *,
                   check_cycle: bool = True) -> None:
        """Point every use of ``op``'s results at ``new_values`` and remove ``op`` (output
        names stay, and ``check_cycle`` works, as in :meth:`replace_all_uses_with`)."""
        new_values = list(new_values)
        if len(new_values) != len(op.results):
            raise GraphError(f"replacing {op.label}: {len(new_values)} values for "
                             f"{len(op.results)} results")
        for old, new in zip(op.results, new_values):
            self.replace_all_uses_with(old, new, check_cycle=check_cycle)
        self.remove_op(op)

    def remove_op(self, op: Op) -> None:
        """Remove an op whose results are no longer used."""
        for r in op.results:
            if self.is_used(r):
                users = ", ".join(u.label for u in self.user_ops(r)) or "the graph outputs"
                raise GraphError(f"cannot remove {op.label}: its result %{r.name} is still used "
                                 f"by {users}")
        for r in op.results:
            self._forget_value(r)
        self.nx.remove_node(op)
        del self._seq[op]
        self._topo = None

    def remove_value(self, value: Value) -> None:
        """Remove an unused input or constant."""
        if value.kind == RESULT:
            raise GraphError(f"%{value.name} is an op result: remove its producer instead")
        if self.is_used(value):
            raise GraphError(f"cannot remove %{value.name}: it is still used")
        if value in self.inputs:
            self.inputs.remove(value)
        self._forget_value(value)

    def _forget_value(self, value: Value) -> None:
        del self._values[value.name]
        self.nx.remove_node(value)
        del self._seq[value]
        self._topo = None

    def rename_value(self, value: Value, new_name: str) -> None:
        if new_name == value.name:
            return
        if new_name in self._values:
            raise GraphError(f"graph {self.name!r} already has a value named %{new_name}")
        del self._values[value.name]
        value.name = new_name
        self._values[new_name] = value

    # ----------------------------------------------------------------- whole-graph
    def copy(self, name: str | None = None) -> "Graph":
        """A deep structural copy (constant data arrays are shared, they are never mutated).

        Laid out as ``subgraph(self.ops, keep_interface=True)`` lays it out (inputs, constants,
        then each op's results and the op, in topological order), but built directly: the
        values and ops are already checked, and copies sit on hot paths (the PassManager keeps
        one before every in-place pass). Its ops are in the original's order, so that order
        carries over instead of being sorted again.
        """
        out = Graph(name or self.name)
        copies: dict[Value, Value] = {v: Value(v.name, v.type, INPUT) for v in self.inputs}
        for v in self.constants:
            copies[v] = c = Value(v.name, v.type, CONST, data=v.data, digest=v.digest)
            c._digest_cache = v._digest_cache  # same data object: same digest
        nodes: list[Any] = list(copies.values())
        ops: list[Op] = []
        edges: list[tuple] = []
        for op in self.ops:
            new = Op(op.type, dict(op.attrs), [None if v is None else copies[v]
                                               for v in op.operands], [],
                     name=op.name, source=op.source)
            new.results = [Value(r.name, r.type, RESULT, producer=new) for r in op.results]
            copies.update(zip(op.results, new.results))
            nodes += new.results
            nodes.append(new)
            ops.append(new)
            # 4-tuples: with 3, networkx tells a key from an attribute dict by catching an error
            edges += [(v, new, slot, {}) for slot, v in enumerate(new.operands) if v is not None]
            edges += [(new, r, i, {}) for i, r in enumerate(new.results)]
        out._values = {v.name: v for v in nodes if isinstance(v, Value)}
        out._seq = {node: i for i, node in enumerate(nodes)}
        out._next_seq = len(nodes)
        out.nx.add_nodes_from(nodes)
        out.nx.add_edges_from(edges)
        out.inputs = [copies[v] for v in self.inputs]
        out.outputs = [copies[v] for v in self.outputs]
        # each op follows its operands in _seq order: the sort would give this order back
        out._topo = ops
        out.schedule = self.schedule  # immutable, keyed by value names
        return out

    def snapshot(self) -> "GraphSnapshot":
        """What this graph is now, kept without copying it: restoring gives what :meth:`copy`
        gives now, whatever is done to this graph in between."""
        return GraphSnapshot(self)

    def _ordered(self, chosen: set[Op]) -> list[Op]:
        """``chosen`` in topological order: the graph's own order, restricted, when it is cached
        or ``chosen`` is a large part of the graph; else a few ops sorted by the edges among
        them, ties by insertion order (re-sorting the whole graph for every small subgraph
        made fusing N groups quadratic)."""
        if self._topo is not None or 8 * len(chosen) > self.nx.number_of_nodes():
            return [op for op in self.ops if op in chosen]
        waiting = {op: sum(1 for v in op.operands if v is not None and v.producer in chosen)
                   for op in chosen}
        ready = [(self._seq[op], i, op) for i, op in enumerate(chosen) if not waiting[op]]
        heapq.heapify(ready)
        order: list[Op] = []
        while ready:
            _, i, op = heapq.heappop(ready)
            order.append(op)
            for r in op.results:
                for user, _slot in self.users(r):
                    if user in waiting:
                        waiting[user] -= 1
                        if not waiting[user]:
                            heapq.heappush(ready, (self._seq[user], id(user), user))
        return order

    def subgraph(self, ops: Iterable[Op], name: str | None = None, *,
                 keep_interface: bool = False,
                 constants_as_inputs: bool | Callable[[Value], bool] = False) -> "Graph":
        """A new graph of the given ops.

        Non-constant values they use but do not produce become inputs; constants are copied
        (or become inputs too, with ``constants_as_inputs``: True, or a predicate choosing
        which); the outputs are the results used outside the set (or graph outputs). With
        ``keep_interface`` the inputs and outputs are exactly this graph's.
        """
        chosen = set(ops)
        order = self._ordered(chosen)
        out = Graph(name or f"{self.name}_sub")
        mapping: dict[Value, Value] = {}

        def bring(v: Value) -> Value:
            if v not in mapping:
                as_input = (constants_as_inputs(v) if callable(constants_as_inputs)
                            else constants_as_inputs)
                if v.kind == CONST and not as_input:
                    mapping[v] = out.add_constant(v.name, v.data, type=v.type, digest=v.digest)
                else:
                    mapping[v] = out.add_input(v.name, v.type)
            return mapping[v]

        if keep_interface:
            for v in self.inputs:
                bring(v)
            for v in self.constants:
                bring(v)
        for op in order:
            operands = [None if v is None else bring(v) for v in op.operands]
            new = out.add_op(op.type, operands, dict(op.attrs), name=op.name,
                             result_names=[r.name for r in op.results],
                             result_types=[r.type for r in op.results], source=op.source)
            mapping.update(zip(op.results, new.results))
        if keep_interface:
            out.set_outputs([bring(v) for v in self.outputs])
        else:
            outs = []
            for op in order:
                for r in op.results:
                    external = any(u not in chosen for u in self.user_ops(r))
                    if external or any(o is r for o in self.outputs):
                        outs.append(mapping[r])
            out.set_outputs(outs)
        return out

    def inline(self, op: Op) -> list[Op]:
        """Replace an op that carries a ``body`` graph (a ``fused.*`` op) by the body's ops, one
        level deep; returns the new ops in order. The inverse of :meth:`fuse`."""
        body = op.attrs["body"]
        env = {id(v): x for v, x in zip(body.inputs, op.operands)}
        for c in body.constants:
            env[id(c)] = self.add_constant(self.unique_name(c.name), c.data, type=c.type,
                                           digest=c.digest)
        added = []
        for inner in body.ops:
            new = self.add_op(inner.type, [None if v is None else env[id(v)]
                                           for v in inner.operands],
                              inner.attrs, name=inner.name, source=inner.source,
                              result_names=[self.unique_name(r.name) for r in inner.results],
                              result_types=[r.type for r in inner.results])
            env.update({id(r): nr for r, nr in zip(inner.results, new.results)})
            added.append(new)
        # the new ops read only the op's operands, never its results: no cycle to look for
        for r, out in zip(op.results, body.outputs):
            self.replace_all_uses_with(r, env[id(out)], take_name=True, check_cycle=False)
        self.remove_op(op)
        return added

    def fuse(self, ops: Iterable[Op], op_type: str, *, name: str | None = None,
             attrs: Mapping[str, Any] | None = None, check_cycle: bool = True) -> Op:
        """Replace ``ops`` by one op of ``op_type`` whose ``body`` is their subgraph.

        The body's inputs are every value the ops read from outside (constants included, so a
        fused op's operands list its weights, but integer constants stay in the body: they are
        shapes and axes its type rules read); its outputs are the results used outside. The
        new op's results take over those results' names and uses; its provenance is the
        union of the fused ops'.

        A group that is not convex (a path leaves it and comes back) would make the fused op
        its own ancestor: that raises GraphError, unless the caller, having checked convexity
        itself, passes ``check_cycle=False`` (the check walks the fused op's ancestors).
        """
        chosen = self._ordered(set(ops))
        if not chosen:
            raise GraphError("fuse: no ops given")
        body = self.subgraph(chosen, name=name or chosen[-1].name or op_type,
                             constants_as_inputs=lambda v: not v.dtype.is_integer)
        operands = [self.value(v.name) for v in body.inputs]
        old_results = [self.value(v.name) for v in body.outputs]
        source: dict[str, None] = {}
        for op in chosen:
            source.update(dict.fromkeys(op.source))
        temp_names = [self.unique_name(f"{v.name}__fused") for v in old_results]
        fused = self.add_op(op_type, operands, {**(attrs or {}), "body": body},
                            name=name if name is not None else chosen[-1].name,
                            result_names=temp_names, source=tuple(source))
        for old, new in zip(old_results, fused.results):
            self.replace_all_uses_with(old, new, take_name=True, check_cycle=check_cycle)
        for op in reversed(chosen):
            self.remove_op(op)
        return fused

    def bind(self, env: Mapping[str, int]) -> "Graph":
        """A copy with the symbols in ``env`` resolved and every result type re-inferred."""
        out = Graph(self.name)
        mapping: dict[Value, Value] = {}
        for v in self.inputs:
            mapping[v] = out.add_input(v.name, v.type.bind(env))
        for v in self.constants:
            mapping[v] = out.add_constant(v.name, v.data, type=v.type.bind(env), digest=v.digest)
        for op in self.ops:
            operands = [None if v is None else mapping[v] for v in op.operands]
            new = out.add_op(op.type, operands, _bind_bodies(op.attrs, env), name=op.name,
                             result_names=[r.name for r in op.results], source=op.source)
            mapping.update(zip(op.results, new.results))
        out.set_outputs([mapping[v] for v in self.outputs])
        return out

    def infer_types(self, env: Mapping[str, int] | None = None) -> int:
        """Re-run every type rule in place (after binding ``env`` in inputs and constants).

        Returns the number of values whose type changed.
        """
        from .ops.registry import infer_types

        changed = 0
        if env:
            for v in self.inputs + self.constants:
                new = v.type.bind(env)
                if v.kind == CONST and v.data is not None and new != v.type:
                    raise GraphError(f"constant %{v.name} has data; its type cannot change")
                changed += new != v.type
                v.type = new
        for op in self.ops:
            if env:
                op.attrs = _bind_bodies(op.attrs, env)
            types = infer_types(op.type, op.attrs, op.operands, name=op.name)
            if len(types) != len(op.results):
                raise GraphError(f"{op.label}: the type rule now gives {len(types)} results, "
                                 f"the op has {len(op.results)}")
            for r, t in zip(op.results, types):
                if r.type != t:
                    r.type = t
                    changed += 1
        return changed

    @property
    def symbols(self) -> set[str]:
        out: set[str] = set()
        for v in self._values.values():
            out |= v.type.symbols
        return out

    def structurally_equal(self, other: "Graph") -> bool:
        from .structural import structurally_equal
        return isinstance(other, Graph) and structurally_equal(self, other)

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name!r}: {len(self.inputs)} inputs, {len(self)} ops, "
                f"{len(self.constants)} constants, {len(self.outputs)} outputs>")


class GraphSnapshot:
    """A graph's state kept for later, at a fraction of the cost of a copy (no networkx graph,
    no checks); :meth:`restore` builds the copy. The PassManager keeps one before every
    in-place pass for a reproducer it almost never writes.

    It holds every field a rewrite may reassign or mutate in place: each value's name, type,
    kind and data, each op's attributes (a shallow copy: attribute values are never mutated),
    operands, results, name and provenance, and the graph's interface.
    """

    def __init__(self, graph: Graph) -> None:
        self.name = graph.name
        self.schedule = graph.schedule
        self.inputs = tuple(graph.inputs)
        self.outputs = tuple(graph.outputs)
        self.constants = tuple(graph.constants)
        self.values = {v: (v.name, v.type, v.data, v.digest) for v in graph._values.values()}
        self.ops = [(op.type, dict(op.attrs), tuple(op.operands), tuple(op.results), op.name,
                     op.source) for op in graph.ops]

    def restore(self) -> Graph:
        """A new graph equal to the snapshotted one (laid out as :meth:`Graph.copy` lays it)."""
        out = Graph(self.name)
        new: dict[Value, Value] = {}
        for v in self.inputs:
            name, type_, _, _ = self.values[v]
            new[v] = out.add_input(name, type_)
        for v in self.constants:
            name, type_, data, digest = self.values[v]
            new[v] = out.add_constant(name, data, type=type_, digest=digest)
        for op_type, attrs_, operands, results, name, source in self.ops:
            op = out.add_op(op_type, [None if v is None else new[v] for v in operands], attrs_,
                            name=name, result_names=[self.values[r][0] for r in results],
                            result_types=[self.values[r][1] for r in results], source=source)
            new.update(zip(results, op.results))
        out.set_outputs([new[v] for v in self.outputs])
        out.schedule = self.schedule
        return out
