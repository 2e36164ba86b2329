"""Reading ONNX files: every way a file can be wrong becomes one ModelLoadError.

Protobuf parses many corrupt byte strings without complaint, so after parsing we also check
the structure the importer relies on (a graph, node inputs defined, tensors whose byte sizes
match their shapes) and report the first problem in plain words.

Weights can stay where they were read (:func:`read_model_lifting`): before parsing, the wire
format is scanned for the graph's initializers, and the ``raw_data`` of the large ones is cut
out of the bytes given to protobuf and viewed in place as NumPy arrays. Parsing every weight
into the proto and copying it out again (``numpy_helper.to_array``) took most of a load.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Iterator, Union

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, helper, numpy_helper

from tensorir.errors import ModelLoadError

ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto]


def read_model(source: ModelSource) -> onnx.ModelProto:
    """A ModelProto from a path, raw bytes or a ModelProto, external data loaded."""
    return read_model_lifting(source, None)[0]


def read_model_lifting(source: ModelSource, lift_above: int | None
                       ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """:func:`read_model`, with the raw data of the graph's initializers of more than
    ``lift_above`` elements (plain little-endian numbers) left out of the proto and returned,
    by initializer name, as read-only arrays viewing the bytes read (no copy, even where the
    bytes leave one misaligned: see ``Value.evaluation_data``). Their protos keep every other field. A ModelProto
    source, or bytes not laid out as the scan expects, lift nothing."""
    if isinstance(source, onnx.ModelProto):
        model, where, base_dir, weights = source, "model", None, {}
    else:
        data, where, base_dir = _source_bytes(source)
        model, weights = _parse(data, where, lift_above)
    _check_structure(model, where)
    if base_dir is not None and any(external_data_helper.uses_external_data(t)
                                    for t in _all_tensors(model.graph)):
        try:
            external_data_helper.load_external_data_for_model(model, base_dir)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{where}: cannot load external weight data: {exc}") from None
    return model, weights


def _source_bytes(source: str | os.PathLike | bytes | bytearray
                  ) -> tuple[bytes, str, str | None]:
    """(the model's bytes, where they come from, the directory of external data)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "<bytes>", None  # a bytearray is copied: views need fixed bytes
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
    return data, path, os.path.dirname(os.path.abspath(path))


def _parse(data: bytes, where: str, lift_above: int | None = None
           ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    if not data:
        raise ModelLoadError(f"{where}: the file is empty")
    light, weights = data, {}
    if lift_above is not None:
        try:
            light, weights = _lift_weights(data, lift_above)
        except _NotPlain:
            pass  # parse it whole: protobuf's own error, if any, says what is wrong
    model = onnx.ModelProto()
    try:
        model.ParseFromString(light)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{where}: not an ONNX model, or truncated (protobuf could not "
                             f"decode it: {exc})") from None
    return model, weights


# ----------------------------------------------------------------------------- lifting weights
_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number
_LENGTH_DELIMITED = 2  # the wire type of messages and bytes
# element types whose raw_data numpy_helper.to_array reads as it is (packed ones excluded)
_PLAIN_DTYPES = {t: np.dtype(helper.tensor_dtype_to_np_dtype(t)) for t in (
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
    onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL)}


class _NotPlain(Exception):
    """The bytes are not laid out as the lifting expects: they are parsed whole instead."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _NotPlain
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, start, payload start, end) of each field in ``data[start:end]``."""
    pos = start
    while pos < end:
        key, body = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            stop = _varint(data, body)[1]
        elif wire == 1:
            stop = body + 8
        elif wire == _LENGTH_DELIMITED:
            size, body = _varint(data, body)
            stop = body + size
        elif wire == 5:
            stop = body + 4
        else:  # groups, long deprecated
            raise _NotPlain
        if stop > end:
            raise _NotPlain
        yield key >> 3, wire, pos, body, stop
        pos = stop


def _field(number: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    """The pieces of a length-delimited field."""
    return [_encode_varint(number << 3 | _LENGTH_DELIMITED), _encode_varint(len(payload)),
            payload]


def _lift_tensor(data: bytes, start: int, end: int, lift_above: int
                 ) -> tuple[bytes, str, np.ndarray] | None:
    """(the TensorProto without its raw_data, its name, the data viewed in place) for the
    tensor serialized in ``data[start:end]``; None to leave it whole."""
    raws = [f for f in _fields(data, start, end) if f[0] == _RAW_DATA]
    if len(raws) != 1 or raws[0][1] != _LENGTH_DELIMITED:
        return None
    _, _, field_start, raw_start, raw_end = raws[0]
    header = data[start:field_start] + data[raw_end:end]
    try:
        tensor = onnx.TensorProto.FromString(header)
    except (DecodeError, RuntimeError, ValueError):
        raise _NotPlain from None
    dtype = _PLAIN_DTYPES.get(tensor.data_type)
    if dtype is None or tensor.HasField("segment") or \
            tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    numel = math.prod(tensor.dims)
    if numel <= lift_above or raw_end - raw_start != numel * dtype.itemsize:
        return None  # small, or malformed: tensor_to_array reads it (and reports it)
    # possibly misaligned for its dtype: Value.evaluation_data aligns it if it is evaluated
    array = np.frombuffer(data, dtype, count=numel, offset=raw_start)
    return header, tensor.name, array.reshape(tuple(tensor.dims))


def _lift_weights(data: bytes, lift_above: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """The model's bytes without the large initializers' raw_data, and those data."""
    if sys.byteorder != "little":
        raise _NotPlain  # ONNX's raw_data is little-endian: numpy_helper swaps the bytes
    graphs = [f for f in _fields(data, 0, len(data)) if f[0] == _GRAPH]
    if len(graphs) != 1 or graphs[0][1] != _LENGTH_DELIMITED:
        raise _NotPlain  # protobuf merges repeated occurrences of a message field
    _, _, graph_start, graph_body, graph_end = graphs[0]
    view = memoryview(data)  # slices of a memoryview do not copy
    graph: list[bytes | memoryview] = []
    weights: dict[str, np.ndarray] = {}
    for number, wire, start, body, end in _fields(data, graph_body, graph_end):
        lifted = None
        if number == _INITIALIZER and wire == _LENGTH_DELIMITED:
            lifted = _lift_tensor(data, body, end, lift_above)
        if lifted is None:
            graph.append(view[start:end])
            continue
        header, name, array = lifted
        if name in weights:
            raise _NotPlain  # defined twice: the importer reports it
        weights[name] = array
        graph += _field(_INITIALIZER, header)
    light = b"".join([view[:graph_start], *_field(_GRAPH, b"".join(graph)), view[graph_end:]])
    return light, weights


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
