"""Reading ONNX files: every way a file can be wrong becomes one ModelLoadError.

Protobuf parses many corrupt byte strings without complaint, so after parsing we also check
the structure the importer relies on (a graph, node inputs defined, tensors whose byte sizes
match their shapes) and report the first problem in plain words.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, numpy_helper

from tensorir.errors import ModelLoadError

ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto]


def read_model(source: ModelSource) -> onnx.ModelProto:
    """A ModelProto from a path, raw bytes or a ModelProto, external data loaded."""
    if isinstance(source, onnx.ModelProto):
        model, where, base_dir = source, "model", None
    elif isinstance(source, (bytes, bytearray)):
        model, where, base_dir = _parse(bytes(source), "<bytes>"), "<bytes>", None
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ModelLoadError(f"{path}: no such file")
        if os.path.isdir(path):
            raise ModelLoadError(f"{path}: is a directory, not an ONNX file")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ModelLoadError(f"{path}: cannot read ({exc.strerror})") from None
        model, where, base_dir = _parse(data, path), path, os.path.dirname(os.path.abspath(path))
    _check_structure(model, where)
    if base_dir is not None and any(external_data_helper.uses_external_data(t)
                                    for t in _all_tensors(model.graph)):
        try:
            external_data_helper.load_external_data_for_model(model, base_dir)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{where}: cannot load external weight data: {exc}") from None
    return model


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"{where}: the file is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{where}: not an ONNX model, or truncated (protobuf could not "
                             f"decode it: {exc})") from None
    return model


def _all_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def _check_structure(model: onnx.ModelProto, where: str) -> None:
    if not model.HasField("graph"):
        raise ModelLoadError(f"{where}: not an ONNX model (it has no graph)")
    g = model.graph
    if not g.output:
        raise ModelLoadError(f"{where}: the graph declares no outputs")
    for vi in list(g.input) + list(g.output):
        _check_text(vi.name, where, "a graph input or output name")
    for t in g.initializer:
        _check_text(t.name, where, "an initializer name")
    defined = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    for index, node in enumerate(g.node):
        for text in [node.op_type, node.name, node.domain, *node.input, *node.output,
                     *(a.name for a in node.attribute)]:
            _check_text(text, where, f"a name in node {index}")
        if not node.op_type:
            raise ModelLoadError(f"{where}: node {index} has no op type")
        for name in node.input:
            if name not in defined:
                label = node.name or f"#{index}"
                raise ModelLoadError(f"{where}: node {label!r} ({node.op_type}) reads "
                                     f"{name!r}, which nothing defines before it")
        defined.update(node.output)
    for out in g.output:
        if out.name not in defined:
            raise ModelLoadError(f"{where}: graph output {out.name!r} is never computed")


def _check_text(value: object, where: str, what: str) -> None:
    # protobuf hands back bytes for a string field that is not valid UTF-8
    if not isinstance(value, str):
        raise ModelLoadError(f"{where}: {what} is not valid UTF-8 text ({value!r:.40})")


def tensor_to_array(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    """numpy_helper.to_array with its failures (wrong byte counts, bad dtypes) as our error."""
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:  # protobuf content the helper cannot interpret
        raise ModelLoadError(f"{where}: tensor {tensor.name!r} is malformed: {exc}") from None
    if tuple(array.shape) != tuple(tensor.dims):
        raise ModelLoadError(f"{where}: tensor {tensor.name!r} holds {array.size} elements, its "
                             f"shape {list(tensor.dims)} needs {int(np.prod(tensor.dims))}")
    return array
