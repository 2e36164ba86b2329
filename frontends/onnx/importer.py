"""ONNX -> tensorir: one value per ONNX tensor, one op per node, provenance kept.

Models are first brought to :data:`TARGET_OPSET` with onnx's own version converter, so the
importer only knows the newest form of each op (axes as operands, opset-13 Softmax ...).
Constant nodes and initializers become constants; an op whose operands are all constants is
evaluated on the spot (shape arithmetic such as Shape -> Gather -> Concat -> Reshape, within a
size limit), so PyTorch exports become static once their symbolic dims are bound. A stripped
weight, ``ConstantOfShape`` of a constant shape, becomes a constant whose data is a read-only
broadcast of its fill value: no memory, same semantics.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, version_converter

from tensorir import DType, Graph, TensorType, Value
from tensorir.dtypes import dtype_from_onnx
from tensorir.errors import (GraphError, InvalidOpError, ModelLoadError, TensorIRError,
                             UnsupportedOpsError)
from tensorir.ops.registry import OpContext, get_op_def, infer_types, is_registered

from .common import ONNX_DOMAINS, TARGET_OPSET, TENSORIR_DOMAIN, tensorir_op_type, value_info
from .reader import ModelSource, read_model_lifting, tensor_to_array

FOLD_LIMIT = 1 << 16   # fold an all-constant op only when its results hold at most this many elements
LIFT_ABOVE = 1024  # initializers with more elements are kept away from the version converter


def _symbol(name: str) -> str:
    """A dim_param made into a tensorir symbol (an identifier)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name.strip())
    return s if re.match(r"[A-Za-z_]", s) else f"d_{s}"


def _opset_of(model: onnx.ModelProto) -> int | None:
    """The model's default-domain (ai.onnx) opset; None when it imports none (a model made only
    of ai.onnx.ml or other domains' ops, which the converter has nothing to upgrade in)."""
    for o in model.opset_import:
        if o.domain in ONNX_DOMAINS:
            return o.version
    return None


def upgrade_opset(model: onnx.ModelProto, where: str, target: int = TARGET_OPSET) -> onnx.ModelProto:
    """Convert to ``target`` with onnx's version converter when the model is older; the result
    is a whole model, weights included (see ``upgrade_opset_light`` for why load does not
    want that)."""
    converted, large = upgrade_opset_light(model, where, target)
    if large:
        converted.graph.initializer.extend(large)
    return converted


def upgrade_opset_light(model: onnx.ModelProto, where: str, target: int = TARGET_OPSET
                        ) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """The model converted to ``target`` without its large initializers, and those initializers.

    The converter serializes the whole model, weights included; it needs only the graph and the
    small initializers its shape inference reads (Reshape targets). So the large ones stay in
    the caller's model, unconverted (the converter does not change initializers) and uncopied,
    and the importer reads them from there: copying ResNet-50's 100 MB of weights into the
    converted proto alone took longer than the rest of the load.
    """
    version = _opset_of(model)
    if version is None or version >= target:
        return model, []
    large = [t for t in model.graph.initializer if _numel(t) > LIFT_ABOVE]
    light = _copy_without(model, {id(t) for t in large}, where)
    declared = {vi.name for vi in light.graph.input}
    lifted = [t for t in large if t.name not in declared]
    light.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in lifted)
    try:
        converted = version_converter.convert_version(light, target)
    except Exception as exc:  # the converter raises its own C++ error types
        raise ModelLoadError(f"{where}: onnx's version converter could not bring opset "
                             f"{version} to {target}: {exc}") from None
    lifted_names = {t.name for t in lifted}
    inputs = [vi for vi in converted.graph.input if vi.name not in lifted_names]
    del converted.graph.input[:]
    converted.graph.input.extend(inputs)
    return converted, large


def _numel(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def _copy_without(model: onnx.ModelProto, skip: set[int], where: str) -> onnx.ModelProto:
    """A copy of ``model`` without the initializers whose ``id`` is in ``skip``, copying none
    of their bytes (the model itself is left untouched)."""
    out = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(out, field, value, where)
    for field, value in model.graph.ListFields():
        if field.name == "initializer":
            out.graph.initializer.extend(t for t in value if id(t) not in skip)
        else:
            _copy_field(out.graph, field, value, where)
    return out


def _copy_field(out, field, value, where: str) -> None:
    try:
        if hasattr(value, "extend"):     # a repeated field
            getattr(out, field.name).extend(value)
        elif field.message_type is not None:
            getattr(out, field.name).CopyFrom(value)
        else:
            setattr(out, field.name, value)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        # protobuf parses a string field of invalid UTF-8 and fails only when it is copied
        raise ModelLoadError(f"{where}: field {field.name!r} cannot be read ({exc})") from None


def _attr_value(attr: onnx.AttributeProto, where: str) -> Any:
    if attr.type == onnx.AttributeProto.GRAPH or attr.type == onnx.AttributeProto.GRAPHS:
        raise ModelLoadError(f"{where}: attribute {attr.name!r} holds a subgraph (control flow), "
                             f"which tensorir does not import")
    if attr.type == onnx.AttributeProto.TENSOR:
        return tensor_to_array(attr.t, where)
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return tuple(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v
                     for v in value)
    return value


class OnnxImporter:
    """Builds a Graph from a (version-converted) ModelProto."""

    def __init__(self, model: onnx.ModelProto, bind: Mapping[str, int] | None, where: str,
                 fold_limit: int = FOLD_LIMIT, initializers: Sequence[onnx.TensorProto] = (),
                 lifted: Mapping[str, np.ndarray] | None = None) -> None:
        self.model = model
        self.initializers = [*model.graph.initializer, *initializers]
        # initializer data read outside the protos (reader.read_model_lifting), by name
        self.lifted = dict(lifted or {})
        self.bind = dict(bind or {})
        self.where = where
        self.fold_limit = fold_limit
        self.graph = Graph(model.graph.name or "model")
        self.env: dict[str, Value] = {}
        self.functions = {(f.domain, f.name): f for f in model.functions}
        self._unknown_dims = 0

    # ----------------------------------------------------------------- interface
    def tensor_type(self, vi: onnx.ValueInfoProto) -> TensorType:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise ModelLoadError(f"{self.where}: input {vi.name!r} is not a tensor")
        try:
            dtype = dtype_from_onnx(tt.elem_type)
        except TensorIRError as exc:
            raise ModelLoadError(f"{self.where}: input {vi.name!r}: {exc}") from None
        shape: list = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                if d.dim_value < 0:
                    raise ModelLoadError(f"{self.where}: input {vi.name!r} has a negative dim")
                shape.append(d.dim_value)
            elif d.dim_param:
                shape.append(_symbol(d.dim_param))
            else:
                self._unknown_dims += 1
                shape.append(f"unk{self._unknown_dims}")
        return TensorType(tuple(shape), dtype).bind(self.bind)

    def run(self) -> Graph:
        g, mg = self.graph, self.model.graph
        self.check_supported()
        for t in self.initializers:
            if t.name in self.env:
                raise ModelLoadError(f"{self.where}: initializer {t.name!r} is defined twice")
            data = self.lifted.get(t.name)
            if data is None:
                data = tensor_to_array(t, self.where)
            self.env[t.name] = self._constant(t.name, data)
        for vi in mg.input:
            if vi.name not in self.env:
                self.env[vi.name] = self._define(lambda: g.add_input(vi.name, self.tensor_type(vi)),
                                                 f"input {vi.name!r}")
        for index, node in enumerate(mg.node):
            self.node(node, index)
        try:
            g.set_outputs([self.env[o.name] for o in mg.output])
        except KeyError as exc:
            raise ModelLoadError(f"{self.where}: graph output {exc.args[0]!r} is never computed") \
                from None
        return g

    def op_type_of(self, node: onnx.NodeProto) -> str | None:
        """The registry's op type for a node: ONNX ops, and tensorir's own ops written by
        frontends.onnx.save as ``tensorir``-domain nodes; None when not supported."""
        if node.domain in ONNX_DOMAINS:
            return node.op_type if is_registered(node.op_type) else None
        if node.domain == TENSORIR_DOMAIN:
            op_type = tensorir_op_type(node.domain, node.op_type)
            if is_registered(op_type) and (op_type == "tensorir.view" or
                                           (node.domain, node.op_type) in self.functions):
                return op_type
        return None

    def check_supported(self) -> None:
        counts: Counter = Counter()
        first: dict[str, str] = {}
        for index, node in enumerate(self.model.graph.node):
            key = node.op_type if node.domain in ONNX_DOMAINS else f"{node.domain}.{node.op_type}"
            if self.op_type_of(node) is None:
                counts[key] += 1
                first.setdefault(key, node.name or f"#{index}")
        if counts:
            raise UnsupportedOpsError(counts, first, where=self.where)

    # ----------------------------------------------------------------- nodes
    def _define(self, build, what: str):
        try:
            return build()
        except (GraphError, InvalidOpError) as exc:   # ShapeError is an InvalidOpError
            raise type(exc)(f"{self.where}: {what}: {exc}") from None

    def _constant(self, name: str, data: np.ndarray) -> Value:
        try:
            DType.from_numpy(data.dtype)
        except TensorIRError as exc:
            raise ModelLoadError(f"{self.where}: tensor {name!r}: {exc}") from None
        return self.graph.add_constant(name, data)

    def node(self, node: onnx.NodeProto, index: int) -> None:
        label = f"node {node.name or '#' + str(index)!r} ({node.op_type})"
        attrs = {a.name: _attr_value(a, f"{self.where}: {label}") for a in node.attribute}
        if node.op_type == "Constant":
            if len(node.output) != 1 or len(attrs) != 1:
                raise ModelLoadError(f"{self.where}: {label}: needs one output and one value")
            ctx = OpContext(get_op_def("Constant"), attrs, [], [], name=node.name)
            (data,) = self._define(lambda: get_op_def("Constant").evaluate(ctx, []), label)
            self.env[node.output[0]] = self._constant(node.output[0], data)
            return
        op_type = self.op_type_of(node) or node.op_type
        operands = [self.env[n] if n else None for n in node.input]
        if (node.domain, node.op_type) in self.functions and node.domain == TENSORIR_DOMAIN \
                and op_type != "tensorir.view":
            attrs["body"] = self.function_body(node, operands)
        outputs = list(node.output)
        while outputs and not outputs[-1]:
            outputs.pop()  # trailing optional outputs left unnamed
        if op_type == "Dropout":
            attrs["num_outputs"] = max(1, len(outputs))
        if op_type == "Split" and (len(operands) < 2 or operands[1] is None):
            attrs.setdefault("num_outputs", len(outputs))
        types = self._define(lambda: infer_types(op_type, attrs, operands, name=node.name),
                             label)
        if len(outputs) > len(types):
            extra = [o for o in outputs[len(types):] if o]
            raise ModelLoadError(f"{self.where}: {label} uses its optional output(s) "
                                 f"{', '.join(map(repr, extra))}, which tensorir's {op_type} "
                                 f"does not produce")
        if op_type == node.op_type and self._fold(node, attrs, operands, types, outputs):
            return
        names = [o if o else self.graph.unique_name(f"{node.name or node.op_type}_unused{i}")
                 for i, o in enumerate(outputs + [""] * (len(types) - len(outputs)))]
        source = next((e.value.split("\n") for e in node.metadata_props
                       if e.key == "tensorir.source"), [node.name] if node.name else [])
        op = self._define(lambda: self.graph.add_op(
            op_type, operands, attrs, name=node.name, result_names=names,
            result_types=types, source=tuple(source)), label)
        for name, value in zip(outputs, op.results):
            if name:
                self.env[name] = value

    def function_body(self, node: onnx.NodeProto, operands: list) -> Graph:
        """A fused op's body: its local function imported as a graph, typed by the call."""
        function = self.functions[(node.domain, node.op_type)]
        if len(function.input) != len(operands) or any(v is None for v in operands):
            raise ModelLoadError(f"{self.where}: node {node.name!r} calls {node.op_type} with "
                                 f"{len(operands)} operands, the function takes "
                                 f"{len(function.input)}")
        inputs = [value_info(name, v.type) for name, v in zip(function.input, operands)]
        outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
                   for name in function.output]
        sub = helper.make_model(helper.make_graph(list(function.node), node.name or node.op_type,
                                                  inputs, outputs))
        del sub.opset_import[:]
        sub.opset_import.extend(function.opset_import)
        sub.functions.extend(self.model.functions)
        body = OnnxImporter(sub, None, f"{self.where}: function {function.name}",
                            self.fold_limit).run()
        # the exporter copies an output that is also an input through an Identity
        for op in list(body.ops):
            if op.type == "Identity" and op.results[0].name.endswith("__out") and \
                    op.operands[0] in body.inputs:
                body.set_outputs([op.operands[0] if v is op.results[0] else v
                                  for v in body.outputs])
                body.remove_op(op)
        return body

    def _fold(self, node, attrs, operands, types, outputs) -> bool:
        """Evaluate an op whose operands are all constants; True when it was folded."""
        present = [v for v in operands if v is not None]
        if node.op_type in ("Shape", "Size") and present and present[0].type.is_static:
            pass  # depends only on the (static) type, not on the data
        elif not present or any(v.kind != "const" or v.data is None for v in present):
            return False
        if not all(t.is_static for t in types):
            return False
        if node.op_type == "ConstantOfShape":
            # a stripped weight: a read-only broadcast of the fill value costs no memory
            fill = attrs.get("value", np.zeros(1, np.float32)).reshape(())
            try:
                data = np.broadcast_to(fill.astype(types[0].dtype.numpy), types[0].shape)
            except ValueError:  # NumPy cannot even index that many elements
                raise ModelLoadError(f"{self.where}: node {node.name!r} (ConstantOfShape) makes "
                                     f"a tensor of shape {list(types[0].shape)}, too large to "
                                     f"represent") from None
            self.env[outputs[0]] = self._constant(outputs[0], data)
            return True
        if sum(t.numel for t in types) > self.fold_limit:
            return False
        opdef = get_op_def(node.op_type)
        ctx = OpContext(opdef, attrs, [None if v is None else v.type for v in operands],
                        [None if v is None else v.data for v in operands], name=node.name,
                        result_types=types)
        args = [None if v is None else (v.data if v.data is not None else
                                        np.empty(v.type.shape, v.type.dtype.numpy))
                for v in operands]
        results = opdef.evaluate(ctx, args)
        for name, data in zip(outputs, results):
            if name:
                self.env[name] = self._constant(name, np.asarray(data))
        return True


def load(source: ModelSource, bind: Mapping[str, int] | None = None, *,
         fold_limit: int = FOLD_LIMIT) -> Graph:
    """Load an ONNX model (path, bytes or ModelProto) into a tensorir Graph.

    ``bind`` resolves symbolic dims (``{"batch": 1}``); symbols left unbound stay symbolic.
    Raises ModelLoadError for unreadable files, UnsupportedOpsError listing every unsupported op
    type with its count, and the core's typed errors (naming the node) for bad shapes.
    """
    # the weights the version converter is not given are the ones read in place
    model, lifted = read_model_lifting(source, LIFT_ABOVE)
    where = source if isinstance(source, str) else "model"
    model, large = upgrade_opset_light(model, where)
    return OnnxImporter(model, bind, where, fold_limit, initializers=large, lifted=lifted).run()
