"""tensorir -> ONNX: :func:`to_model_proto` and :func:`save`.

The file keeps tensorir's names (value names become tensor names, op names node names), so
``load(save(g))`` gives back ``g``. What goes where:

- **Inputs and outputs** are typed graph inputs and outputs; a symbolic dim becomes a
  ``dim_param`` (a product such as ``196*batch`` too, as its text). Every other op result gets a
  ``value_info`` entry, so viewers such as Netron show every shape.
- **Constants** become initializers, with two exceptions. A *stripped weight*, data that is a
  zero-stride broadcast of one value (what the loader makes of ``ConstantOfShape``), is written
  back as a ``ConstantOfShape`` node with that fill value, so stripped models stay small. Its
  shape operand reuses an int64 constant of the graph holding exactly that shape when there is
  one (the light models keep theirs as ``<name>__SHAPE``) and is a new initializer otherwise.
  And because the loader makes constants of initializers first and of nodes afterwards, every
  constant that follows the first such weight in the graph's order is written as a node too,
  placed before the ops, so the loaded graph lists its constants in the same order: a
  ``Constant``, or a ``ConstantOfShape`` for a float tensor of one value (at least
  :data:`UNIFORM_MIN_SIZE` elements: a stripped weight that a folded op materialised, such as
  DenseNet's unsqueezed BatchNorm scales). A constant with no data at all (a weight-stripped
  graph read from text) cannot be written and raises :class:`~tensorir.errors.TensorIRError`.
  With external data (:func:`save`), initializers are written from the NumPy arrays straight
  into one ``.data`` file; ``Constant`` nodes stay in the protobuf.
- **Ops of ONNX** become nodes of the default domain with their attributes, converted to the
  attribute types of the ONNX schema at the target opset (so ``alpha=1`` is written as the float
  ONNX expects); tensorir-only attributes (:data:`TENSORIR_ONLY_ATTRS`: Dropout's
  ``num_outputs``) are dropped, and an attribute ONNX does not know is an error rather than a
  file the checker or onnxruntime rejects. An absent optional operand is the empty name. A
  provenance (``source``) other than the op's own name goes into the node's ``metadata_props``
  as ``tensorir.source``.
- **The project's own ops** (types with a ".") become nodes of the custom domain ``tensorir``
  (:func:`onnx_op_type`: ``tensorir.view`` is ``view``, ``fused.x`` keeps its name) defined by
  ONNX *local functions* (``FunctionProto`` in ``model.functions``), whose bodies use standard
  ops only: the checker validates them and onnxruntime inlines them, so the file stays runnable.

  ``tensorir.view`` (offset, shape, strides over the base's row-major storage) is one function
  for all views. The per-instance numbers stay **node attributes**, exactly tensorir's
  attributes, which the function declares and its body reads through attribute references
  (``Constant(value_ints=@shape)``); no index tensor is stored in the file. The body computes
  the storage index of every element, rank-generically, and gathers::

      divisors[k] = prod(shape[k+1:])        # ReduceProd over Where(j > k, shape[j], 1)
      coords      = (arange(numel)[:, None] / divisors) % shape      # [numel, rank]
      index       = reshape(offset + sum(coords * strides, axis=1), shape)
      view        = Gather(Reshape(base, [-1]), index)

  A fused op carries its body as a graph-valued ``body`` attribute; that graph becomes the
  function body (its inputs and outputs the function's, its constants ``Constant`` nodes, its
  ops nodes, nested fused ops and views included) and the op's other attributes stay on the
  node. Each distinct body is one function, named after the op type, ``__1``, ``__2`` ...
  appended for the second and later bodies of one type (not ONNX's ``overload`` field, which
  onnxruntime ignores inside function bodies). An op with a "." and neither a known lowering
  (:data:`LOWERINGS`) nor a body raises TensorIRError.
- **Opsets**: the default domain at ``opset`` (21, IR version 10), plus ``tensorir`` version 1
  when functions are used. ``onnx.checker.check_model(model, full_check=True)`` passes.

:func:`tensorir_op_type` is the inverse naming rule, for the loader.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from tensorir import Graph, Op
from tensorir.dtypes import DType, dtype_to_onnx
from tensorir.errors import TensorIRError

from .common import (TARGET_OPSET, TENSORIR_DOMAIN, TENSORIR_DOMAIN_VERSION, onnx_op_type,
                     value_info)

MIN_IR_VERSION = 10   # FunctionProto.value_info, NodeProto.metadata_props
# attributes the loader adds to ONNX ops for tensorir's own use; ONNX does not know them
TENSORIR_ONLY_ATTRS: dict[str, frozenset] = {"Dropout": frozenset({"num_outputs"})}
UNIFORM_MIN_SIZE = 64   # a node-written constant this big with one value is a ConstantOfShape
PROTOBUF_LIMIT = (1 << 31) - (1 << 26)   # a file this big needs external data (2 GiB limit)


def _is_broadcast(data: np.ndarray) -> bool:
    """A zero-stride broadcast of one value: a stripped weight."""
    return data.ndim > 0 and data.size > 0 and all(s == 0 for s in data.strides)


def _tensor(data: np.ndarray, name: str = "") -> TensorProto:
    # not np.ascontiguousarray: it makes a 0-d array 1-d
    return numpy_helper.from_array(np.array(data, order="C", copy=not data.flags.c_contiguous),
                                   name)


def _is_uniform(data: np.ndarray) -> bool:
    """A float tensor of one value: a stripped weight that a folded op materialised (the loader
    folds an Unsqueeze of a BatchNorm scale into a real array). Integer tensors of one value
    (masks, token type ids) are left to ``Constant``."""
    if data.size < UNIFORM_MIN_SIZE or data.dtype.kind != "f":
        return False
    bits = data.reshape(-1).view(f"u{data.dtype.itemsize}")  # bitwise: -0.0 is not 0.0
    return bool(bits[0] == bits[-1] and np.all(bits == bits[0]))


def _fast_dtype(data: np.ndarray) -> bool:
    """Bytes that are ONNX's raw_data as they are (not int4, packed two per byte by ONNX)."""
    return (data.dtype.kind in "fiub" and data.dtype.isnative and sys.byteorder == "little"
            and data.dtype != DType.int4.numpy)


class ExternalData:
    """Writes tensors of more than ``threshold`` bytes into one open file, ``location``."""

    def __init__(self, file: Any, location: str, threshold: int) -> None:
        self.file, self.location, self.threshold = file, location, threshold

    def write(self, proto: TensorProto, data: np.ndarray) -> bool:
        """Store ``data`` in the file and point ``proto`` at it; False if it is too small."""
        if data.nbytes <= self.threshold:
            return False
        offset = self.file.tell()
        if _fast_dtype(data):
            self.file.write(np.ascontiguousarray(data).data)   # no copy of the bytes
        else:
            self.file.write(_tensor(data).raw_data)
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", offset),
                           ("length", self.file.tell() - offset)):
            entry = proto.external_data.add()
            entry.key, entry.value = key, str(value)
        return True


def _set_tensor(proto: TensorProto, data: np.ndarray, name: str,
                external: ExternalData | None = None) -> None:
    """``proto`` becomes the tensor ``data``; its bytes are copied once (building it with
    numpy_helper and adding it to a graph would copy them thrice), or written to ``external``."""
    if _fast_dtype(data) or external is not None:
        proto.name = name
        proto.data_type = dtype_to_onnx(DType.from_numpy(data.dtype))
        proto.dims.extend(int(d) for d in data.shape)
        if external is not None and external.write(proto, data):
            return
    if _fast_dtype(data):
        proto.raw_data = np.ascontiguousarray(data).tobytes()  # (0-d arrays too)
    else:   # int4 packs two per byte; numpy_helper knows how
        proto.CopyFrom(_tensor(data, name))


def _fill_value(data: np.ndarray) -> TensorProto:
    return _tensor(np.array([data[(0,) * data.ndim]], dtype=data.dtype))


# ----------------------------------------------------------------------------- attributes
_ATTR_TYPES = {
    AttributeProto.FLOAT: float, AttributeProto.INT: int, AttributeProto.STRING: str,
    AttributeProto.FLOATS: float, AttributeProto.INTS: int, AttributeProto.STRINGS: str,
}
_LIST_TYPES = (AttributeProto.FLOATS, AttributeProto.INTS, AttributeProto.STRINGS)


def _guess_attr_type(value: Any) -> int:
    """The attribute type of a value when no schema says (custom ops)."""
    if isinstance(value, np.ndarray):
        return AttributeProto.TENSOR
    if isinstance(value, str):
        return AttributeProto.STRING
    if isinstance(value, int):
        return AttributeProto.INT
    if isinstance(value, float):
        return AttributeProto.FLOAT
    if isinstance(value, tuple):
        if all(isinstance(v, str) for v in value) and value:
            return AttributeProto.STRINGS
        if all(isinstance(v, int) for v in value):
            return AttributeProto.INTS   # the empty list too: shapes, strides, axes
        if all(isinstance(v, (int, float)) for v in value):
            return AttributeProto.FLOATS
    raise TypeError(f"a {type(value).__name__} cannot be an ONNX attribute")


def make_attribute(key: str, value: Any, attr_type: int | None, where: str) -> AttributeProto:
    """An AttributeProto of ``attr_type`` (the schema's), or of the type the value suggests."""
    try:
        if attr_type is None:
            attr_type = _guess_attr_type(value)
        if attr_type == AttributeProto.TENSOR:
            return helper.make_attribute(key, _tensor(np.asarray(value)),
                                         attr_type=AttributeProto.TENSOR)
        convert = _ATTR_TYPES.get(attr_type)
        if convert is None:
            raise TypeError(f"attribute type {AttributeProto.AttributeType.Name(attr_type)} is "
                            f"not supported")
        if attr_type in _LIST_TYPES:
            items = value if isinstance(value, (tuple, list)) else (value,)
            converted: Any = [convert(v) for v in items]
        else:
            converted = convert(value)
        return helper.make_attribute(key, converted, attr_type=attr_type)
    except (TypeError, ValueError) as exc:
        raise TensorIRError(f"{where}: attribute {key}={value!r} cannot be written to ONNX: "
                            f"{exc}") from None


# ----------------------------------------------------------------------------- lowerings
def _ref(name: str, ref_attr_name: str, attr_type: int) -> AttributeProto:
    """An attribute that takes the value of the enclosing function's attribute."""
    attr = AttributeProto()
    attr.name, attr.ref_attr_name, attr.type = name, ref_attr_name, attr_type
    return attr


def _const_node(output: str, attr: AttributeProto) -> onnx.NodeProto:
    node = helper.make_node("Constant", [], [output])
    node.attribute.append(attr)
    return node


def view_function(opset: int) -> onnx.FunctionProto:
    """``tensorir.view`` as a local function of standard ops (see the module docstring)."""
    def ints(name: str, values: list[int]) -> onnx.NodeProto:
        return _const_node(name, helper.make_attribute("value_ints", values))

    def scalar(name: str, value: int) -> onnx.NodeProto:
        return _const_node(name, helper.make_attribute("value_int", value))

    n = helper.make_node
    nodes = [
        _const_node("shape", _ref("value_ints", "shape", AttributeProto.INTS)),
        _const_node("strides", _ref("value_ints", "strides", AttributeProto.INTS)),
        _const_node("offset", _ref("value_int", "offset", AttributeProto.INT)),
        scalar("zero", 0), scalar("one", 1),
        ints("minus_one", [-1]), ints("axis0", [0]), ints("axis1", [1]),
        # divisors[k] = prod(shape[k+1:]): a row-major position's k-th coordinate is
        # (position / divisors[k]) % shape[k]. Both use the dims clamped to >= 1: an empty view
        # has no positions, but onnxruntime rejects a constant zero divisor all the same
        n("Max", ["shape", "one"], ["extents"]),
        n("Size", ["shape"], ["rank"]),
        n("Range", ["zero", "rank", "one"], ["dims"]),
        n("Unsqueeze", ["dims", "axis1"], ["dims_col"]),
        n("Unsqueeze", ["dims", "axis0"], ["dims_row"]),
        n("Less", ["dims_col", "dims_row"], ["later"]),            # later[k, j] = j > k
        n("Unsqueeze", ["extents", "axis0"], ["extents_row"]),
        n("Where", ["later", "extents_row", "one"], ["factors"]),
        n("ReduceProd", ["factors", "axis1"], ["divisors"], keepdims=0),
        n("ReduceProd", ["shape"], ["count"], keepdims=0),        # numel (1 for rank 0)
        n("Range", ["zero", "count", "one"], ["positions"]),
        n("Unsqueeze", ["positions", "axis1"], ["positions_col"]),
        n("Div", ["positions_col", "divisors"], ["quotients"]),
        n("Mod", ["quotients", "extents"], ["coords"]),               # [numel, rank]
        n("Mul", ["coords", "strides"], ["terms"]),
        n("ReduceSum", ["terms", "axis1"], ["relative"], keepdims=0),
        n("Add", ["relative", "offset"], ["flat_index"]),
        n("Reshape", ["flat_index", "shape"], ["index"], allowzero=1),  # 0 is a 0 dim
        n("Reshape", ["base", "minus_one"], ["storage"]),           # row-major storage
        n("Gather", ["storage", "index"], ["view"], axis=0),
    ]
    return helper.make_function(
        TENSORIR_DOMAIN, "view", ["base"], ["view"], nodes,
        [helper.make_opsetid("", opset)], attributes=["offset", "shape", "strides"],
        doc_string="tensorir.view: element [i0, i1, ...] is storage element offset + "
                   "sum(i_k * strides[k]) of the base read in row-major order")


# op type -> (function builder, attribute types of the node)
LOWERINGS: dict[str, tuple[Callable[[int], onnx.FunctionProto], dict[str, int]]] = {
    "tensorir.view": (view_function, {"offset": AttributeProto.INT,
                                      "shape": AttributeProto.INTS,
                                      "strides": AttributeProto.INTS}),
}


# ----------------------------------------------------------------------------- the exporter
class OnnxExporter:
    """Builds a ModelProto from a Graph; one instance per model (it collects the functions)."""

    def __init__(self, opset: int = TARGET_OPSET, external: ExternalData | None = None) -> None:
        if opset < TARGET_OPSET:
            raise TensorIRError(f"cannot export at opset {opset}: tensorir's ops follow the "
                                f"opset-{TARGET_OPSET} forms (convert the written model with "
                                f"onnx.version_converter for an older runtime)")
        self.opset = opset
        self.external = external
        self.functions: dict[tuple[str, str, str], onnx.FunctionProto] = {}
        self._bodies: dict[str, list[tuple[bytes, str]]] = {}  # op type -> (body, function)
        self._schemas: dict[str, Any] = {}

    # -- model
    def model(self, graph: Graph) -> onnx.ModelProto:
        # built in place: make_graph and make_model would copy every weight once more
        model = onnx.ModelProto()
        model.producer_name = "tensorir"
        self.fill_graph(model.graph, graph)
        opsets = [helper.make_opsetid("", self.opset)]
        if self.functions:
            opsets.append(helper.make_opsetid(TENSORIR_DOMAIN, TENSORIR_DOMAIN_VERSION))
        model.ir_version = max(MIN_IR_VERSION, helper.find_min_ir_version_for(opsets[:1]))
        model.opset_import.extend(opsets)
        model.functions.extend(self.functions.values())
        return model

    def fill_graph(self, proto: onnx.GraphProto, g: Graph) -> None:
        proto.name = g.name
        nodes = self.constants(g, proto.initializer)
        nodes.extend(self.node(op) for op in g.ops)
        proto.node.extend(nodes)
        proto.input.extend(value_info(v.name, v.type) for v in g.inputs)
        proto.output.extend(value_info(v.name, v.type) for v in g.outputs)
        outputs = {id(v) for v in g.outputs}
        proto.value_info.extend(value_info(r.name, r.type) for op in g.ops for r in op.results
                                if id(r) not in outputs)

    # -- constants
    def constants(self, g: Graph, initializers: Any = None) -> list[onnx.NodeProto]:
        """Write the constants of ``g``, in the graph's order; returns the nodes among them.

        Initializers (added to ``initializers``) up to the first stripped weight, nodes from
        there on, so that the loader rebuilds the same order; only nodes when ``initializers``
        is None (a function body has none).
        """
        consts = g.constants
        for v in consts:
            if v.data is None:
                raise TensorIRError(
                    f"cannot export graph {g.name!r}: constant %{v.name} ({v.type}) has no data "
                    f"(a weight-stripped graph, e.g. read from text with digests); give it data "
                    f"before saving")
        first_node = 0 if initializers is None else next(
            (i for i, v in enumerate(consts) if _is_broadcast(v.data)), len(consts))
        nodes: list[onnx.NodeProto] = []
        shapes: dict[tuple[int, ...], str] = {}  # int64 vectors defined so far, by content
        taken = {v.name for v in g.values()}
        for i, v in enumerate(consts):
            if i < first_node:
                _set_tensor(initializers.add(), v.data, v.name, self.external)
            elif _is_broadcast(v.data) or _is_uniform(v.data):
                shape = tuple(int(d) for d in v.data.shape)
                if shape not in shapes:
                    name = _fresh(f"{v.name}__SHAPE", taken)
                    array = np.array(shape, np.int64)
                    if initializers is None:
                        nodes.append(helper.make_node("Constant", [], [name],
                                                      value=_tensor(array)))
                    else:
                        _set_tensor(initializers.add(), array, name)
                    shapes[shape] = name
                nodes.append(helper.make_node("ConstantOfShape", [shapes[shape]], [v.name],
                                              value=_fill_value(v.data)))
            else:
                nodes.append(helper.make_node("Constant", [], [v.name], value=_tensor(v.data)))
            if v.data.dtype == np.int64 and v.data.ndim == 1 and v.data.size <= 16:
                shapes.setdefault(tuple(int(d) for d in v.data), v.name)
        return nodes

    # -- ops
    def schema(self, op: Op):
        if op.type not in self._schemas:
            try:
                self._schemas[op.type] = onnx.defs.get_schema(op.type, self.opset, "")
            except onnx.defs.SchemaError:
                raise TensorIRError(f"cannot export {op.label}: ONNX opset {self.opset} has no "
                                    f"op {op.type!r} (newer opsets may: pass a higher opset)") \
                    from None
        return self._schemas[op.type]

    def node(self, op: Op) -> onnx.NodeProto:
        domain, op_type = onnx_op_type(op.type)
        inputs = ["" if v is None else v.name for v in op.operands]
        while inputs and not inputs[-1]:
            inputs.pop()
        node = helper.make_node(op_type, inputs, [r.name for r in op.results], name=op.name,
                                domain=domain or None)
        where = f"cannot export {op.label}"
        if not domain:
            schema = self.schema(op)
            strip = TENSORIR_ONLY_ATTRS.get(op.type, frozenset())
            for key in sorted(op.attrs):
                if key in strip:
                    continue
                if key not in schema.attributes:
                    raise TensorIRError(f"{where}: ONNX opset {self.opset} {op.type} has no "
                                        f"attribute {key!r}")
                attr_type = AttributeProto.AttributeType.Value(schema.attributes[key].type.name)
                node.attribute.append(make_attribute(key, op.attrs[key], attr_type, where))
        else:
            self.custom(op, node, where)
        default_source = (op.name,) if op.name else ()
        if tuple(op.source) != default_source:
            entry = node.metadata_props.add()
            entry.key, entry.value = "tensorir.source", "\n".join(op.source)
        return node

    def custom(self, op: Op, node: onnx.NodeProto, where: str) -> None:
        """A tensorir op as a call of a local function: its lowering, or its body graph."""
        body = op.attrs.get("body")
        if isinstance(body, Graph):
            node.op_type = self.body_function(op, node.op_type, body)
            types: dict[str, int] = {}
        elif op.type in LOWERINGS:
            build, types = LOWERINGS[op.type]
            key = (TENSORIR_DOMAIN, node.op_type, "")
            if key not in self.functions:
                self.functions[key] = build(self.opset)
        else:
            raise TensorIRError(f"{where}: {op.type} has no ONNX lowering (known: "
                                f"{', '.join(sorted(LOWERINGS))}) and no graph-valued 'body' "
                                f"attribute to write as a function")
        for key in sorted(op.attrs):
            if key != "body" or not isinstance(body, Graph):
                node.attribute.append(make_attribute(key, op.attrs[key], types.get(key), where))

    def body_function(self, op: Op, op_type: str, body: Graph) -> str:
        """Define (once per distinct body) the function of an op with a body; returns its name.

        The first body of an op type names its function after the type (``fused.matmul``),
        other bodies of that type add ``__1``, ``__2`` ... (:func:`tensorir_op_type` drops the
        suffix). Not ONNX's ``overload`` field: onnxruntime 1.31 honours it in the main graph
        but ignores it on calls inside a function body, and fused ops nest.
        """
        nodes = self.constants(body)
        nodes.extend(self.node(inner) for inner in body.ops)
        inputs = [v.name for v in body.inputs]
        outputs = []
        taken = {v.name for v in body.values()}
        for v in body.outputs:
            if v in body.inputs:   # a function output must be computed by a node of the body
                copy = _fresh(f"{v.name}__out", taken)
                nodes.append(helper.make_node("Identity", [v.name], [copy]))
                outputs.append(copy)
            else:
                outputs.append(v.name)
        opsets = [helper.make_opsetid("", self.opset)]
        if any(n.domain == TENSORIR_DOMAIN for n in nodes):
            opsets.append(helper.make_opsetid(TENSORIR_DOMAIN, TENSORIR_DOMAIN_VERSION))
        infos = [value_info(r.name, r.type) for inner in body.ops for r in inner.results]
        attributes = sorted(k for k in op.attrs if k != "body")
        function = helper.make_function(TENSORIR_DOMAIN, op_type, inputs, outputs, nodes, opsets,
                                        attributes=attributes, value_info=infos,
                                        doc_string=f"the body of {op.type}")
        content = function.SerializeToString()
        known = self._bodies.setdefault(op_type, [])
        for other, name in known:
            if other == content:
                return name
        name = f"{op_type}__{len(known)}" if known else op_type
        known.append((content, name))
        function.name = name
        self.functions[(TENSORIR_DOMAIN, name, "")] = function
        return name


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


# ----------------------------------------------------------------------------- API
def to_model_proto(graph: Graph, opset: int = TARGET_OPSET) -> onnx.ModelProto:
    """The ONNX model of ``graph`` (see the module docstring for the mapping).

    Raises TensorIRError for what ONNX cannot hold: a constant without data, an op or
    attribute the opset does not have, a custom op with no lowering and no body.
    """
    return OnnxExporter(opset).model(graph)


def save(graph: Graph, path: str | os.PathLike, *, external_data_above: int | None = None,
         opset: int = TARGET_OPSET) -> onnx.ModelProto:
    """Write ``graph`` as an ONNX file; returns the model written.

    ``external_data_above=N`` stores every initializer of more than N bytes in ``<file>.data``
    beside the file (rewritten on each save), straight from the NumPy arrays. Models too big
    for one protobuf (2 GiB) are written that way with N = 1024 when no N is given.
    """
    path = os.fspath(path)
    threshold = external_data_above
    if threshold is None:
        weights = sum(v.data.nbytes for v in graph.constants
                      if v.data is not None and not _is_broadcast(v.data))
        threshold = 1024 if weights > PROTOBUF_LIMIT else None
    try:
        if threshold is None:
            model = to_model_proto(graph, opset)
        else:
            location = os.path.basename(path) + ".data"
            with open(os.path.join(os.path.dirname(os.path.abspath(path)), location), "wb") as f:
                model = OnnxExporter(opset, ExternalData(f, location, threshold)).model(graph)
        data = model.SerializeToString()   # onnx.save_model takes 3x as long on big models
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise TensorIRError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return model
