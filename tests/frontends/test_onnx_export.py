"""frontends.onnx.save / to_model_proto: tensorir -> ONNX, checked by onnx's checker, run by
onnxruntime, and loaded back into the graph that was saved.

onnxruntime runs with graph optimizations off for both the original and the exported model:
the exported file holds what the loader folded (an Unsqueeze of a weight becomes the weight),
so an optimizing session fuses the two models' ops differently and rounds differently (1e-5
on outputs of magnitude 60 for DenseNet). Unoptimized, both run the same arithmetic.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import transformer_models
from frontends.onnx import load, save, to_model_proto
from frontends.onnx.common import tensorir_op_type
from frontends.zoo import mlp_mixer
from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights, light_path, ort_run
from tensorir import DType, Graph, TensorIRError, TensorType, interpret, structural_diff

RTOL, ATOL = 1e-4, 1e-5


def ort_outputs(model, feeds):
    """onnxruntime's outputs for a ModelProto or a path, graph optimizations off."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(
        None, feeds)


def assert_close_all(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)


def with_float32_attributes(g: Graph) -> Graph:
    """A copy of ``g`` with float attributes rounded to float32, as ONNX stores them."""
    out = Graph(g.name)
    mapping = {}
    for v in g.inputs:
        mapping[v] = out.add_input(v.name, v.type)
    for v in g.constants:
        mapping[v] = out.add_constant(v.name, v.data, type=v.type)
    for op in g.ops:
        attrs = {k: float(np.float32(a)) if isinstance(a, float) else a
                 for k, a in op.attrs.items()}
        new = out.add_op(op.type, [None if v is None else mapping[v] for v in op.operands], attrs,
                         name=op.name, result_names=[r.name for r in op.results],
                         source=op.source)
        mapping.update(zip(op.results, new.results))
    out.set_outputs([mapping[v] for v in g.outputs])
    return out


def save_for_test(g: Graph, path) -> None:
    """save(g, path); models with over 100 MB of weights (AlexNet, VGG-19, ZFNet-512, BERT,
    GPT-2) with their weights in an external data file, as large models are shipped: with no
    0.5 GB protobuf to encode and parse, saving, checking, running and loading them take a
    third of the time, which keeps this file fast. The other models test the single file."""
    external = sum(v.type.nbytes for v in g.constants) > 100_000_000
    save(g, path, external_data_above=1024 if external else None)
    assert path.with_name(path.name + ".data").exists() == external


# --------------------------------------------------------------------------- light models
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_saves_checks_runs_like_the_original_and_loads_back(name, tmp_path):
    model = light_model_with_weights(name)
    g = load(model)
    path = tmp_path / f"{name}.onnx"
    save_for_test(g, path)
    onnx.checker.check_model(str(path), full_check=True)
    feeds = image_feed(model)
    assert_close_all(ort_outputs(path, feeds), ort_outputs(model, feeds))
    assert structural_diff(load(path), g) is None


def _without_new_unused_constants(back: Graph, original: Graph) -> Graph:
    """``back`` without the shape vectors the exporter had to add for ConstantOfShape."""
    for v in back.constants:
        if not original.has_value(v.name) and not back.is_used(v):
            assert v.dtype == DType.int64 and v.name.endswith("__SHAPE"), v
            back.remove_value(v)
    return back


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_stripped_light_model_writes_constant_of_shape_weights_and_stays_small(name, tmp_path):
    g = load(light_path(name))
    broadcast = [v for v in g.constants if v.data.ndim and not any(v.data.strides)]
    assert broadcast  # the stripped weights
    path = tmp_path / f"{name}.onnx"
    model = save(g, path)
    onnx.checker.check_model(str(path), full_check=True)
    fills = {n.output[0] for n in model.graph.node if n.op_type == "ConstantOfShape"}
    assert {v.name for v in broadcast} <= fills
    assert max(len(t.raw_data) for t in model.graph.initializer) < 65536  # no weight written out
    size, original = path.stat().st_size, light_path(name).stat().st_size
    assert size <= 2 * original, (size, original)
    # the loader keeps each weight's shape vector (<name>__SHAPE) and the exporter reuses it;
    # only a folded op's result (an Unsqueezed BatchNorm scale) needs a new one
    assert structural_diff(_without_new_unused_constants(load(path), g), g) is None


def test_stripped_model_runs_in_onnxruntime_like_the_original(tmp_path):
    model = onnx.load(light_path("resnet50"))
    path = tmp_path / "resnet50.onnx"
    save(load(model), path)
    feeds = image_feed(model)
    assert_close_all(ort_outputs(path, feeds), ort_outputs(model, feeds))


def test_large_weights_go_to_one_external_data_file(tmp_path):
    model = light_model_with_weights("squeezenet")
    g = load(model)
    path = tmp_path / "squeezenet.onnx"
    for _ in range(2):   # saving again rewrites the data file, not appends to it
        save(g, path, external_data_above=1024)
        data = tmp_path / "squeezenet.onnx.data"
        assert data.stat().st_size == sum(v.type.nbytes for v in g.constants
                                          if v.type.nbytes > 1024)
    assert path.stat().st_size < 100_000
    onnx.checker.check_model(str(path), full_check=True)
    feeds = image_feed(model)
    assert_close_all(ort_outputs(path, feeds), ort_outputs(model, feeds))
    assert structural_diff(load(path), g) is None


# --------------------------------------------------------------------------- MLP-Mixer
def test_mixer_s16_runs_in_onnxruntime_like_the_interpreter_and_loads_back(tmp_path):
    g = mlp_mixer("S/16", batch=1)
    path = tmp_path / "mixer.onnx"
    save(g, path)
    onnx.checker.check_model(str(path), full_check=True)
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)}
    expected = interpret(g, feeds)
    assert_close_all(ort_outputs(path, feeds), [expected[v.name] for v in g.outputs])
    # ONNX float attributes are float32: LayerNorm's epsilon 1e-6 comes back rounded
    back = load(path)
    assert structural_diff(back, g) is not None
    assert structural_diff(back, with_float32_attributes(g)) is None


def test_symbolic_batch_survives_as_dim_param_and_runs_at_any_batch():
    g = mlp_mixer("S/16", batch="batch", layers=2)
    model = to_model_proto(g)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert len(model.graph.value_info) == len(g) - 1   # every op result but the output
    for batch in (1, 3):
        feeds = {"image": np.random.default_rng(batch).standard_normal((batch, 3, 224, 224),
                                                                        np.float32)}
        expected = interpret(g, feeds)
        assert_close_all(ort_outputs(model, feeds), [expected[v.name] for v in g.outputs])
    assert structural_diff(load(model), with_float32_attributes(g)) is None


def test_product_dims_are_written_as_dim_params():
    g = Graph("flatten")
    x = g.add_input("x", TensorType(("batch", 4, 5), DType.float32))
    minus_one = g.add_constant("minus_one", np.array([-1], np.int64))
    flat = g.add_op("Reshape", [x, minus_one], name="flat").result
    y = g.add_op("Relu", [flat], name="relu").result
    g.set_outputs([y])
    assert str(y.type) == "f32[20*batch]"
    model = to_model_proto(g)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.value_info[0].type.tensor_type.shape.dim[0].dim_param == "20*batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "20*batch"
    x3 = np.random.default_rng(0).standard_normal((3, 4, 5), np.float32)
    (out,) = ort_outputs(model, {"x": x3})
    np.testing.assert_array_equal(out, np.maximum(x3.reshape(-1), 0))
    assert structural_diff(load(model), g) is None


# --------------------------------------------------------------------------- transformers
available, why = transformer_models.available()


@pytest.mark.skipif(not available, reason=f"transformer export needs torch and transformers: "
                                          f"{why}")
@pytest.mark.parametrize("name", transformer_models.MODELS)
def test_transformer_saves_runs_like_the_original_and_loads_back(name, tmp_path):
    source = transformer_models.export(name)   # cached
    g = load(source, bind={"batch": 1, "seq": 8})
    path = tmp_path / f"{name}.onnx"
    save_for_test(g, path)
    onnx.checker.check_model(str(path), full_check=True)
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 1000, (1, 8)).astype(np.int64),
             "attention_mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]], np.int64)}
    assert_close_all(ort_outputs(path, feeds), ort_outputs(source, feeds))
    assert structural_diff(load(path), g) is None


# --------------------------------------------------------------------------- tensorir ops
VIEWS = [  # offset, shape, strides over a [4, 6] base
    (7, (2, 2), (6, 2)),        # a strided tile
    (0, (6, 4), (1, 6)),        # the transpose
    (23, (4, 6), (-6, -1)),     # reversed in both dims
    (5, (), ()),                # one element
    (2, (3, 2, 2), (0, 1, 6)),  # a broadcast dim
    (0, (0, 3), (1, 1)),        # empty
]


def test_views_export_as_a_local_function_that_onnxruntime_runs():
    g = Graph("views")
    x = g.add_input("x", TensorType((4, 6), DType.float32))
    results = [g.add_op("tensorir.view", [x], {"offset": o, "shape": s, "strides": t},
                        name=f"view{i}").result for i, (o, s, t) in enumerate(VIEWS)]
    relu = g.add_op("Relu", [results[0]], name="relu").result
    g.set_outputs(results + [relu])
    model = to_model_proto(g)
    onnx.checker.check_model(model, full_check=True)
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 21), ("tensorir", 1)}
    assert model.ir_version == 10
    assert [(f.domain, f.name, list(f.attribute)) for f in model.functions] == \
        [("tensorir", "view", ["offset", "shape", "strides"])]
    node = model.graph.node[0]
    assert (node.domain, node.op_type, node.name) == ("tensorir", "view", "view0")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == \
        {"offset": 7, "shape": [2, 2], "strides": [6, 2]}
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 6), np.float32)}
    expected = interpret(g, feeds)
    got = ort_outputs(model, feeds)
    for value, array in zip(g.outputs, got):
        np.testing.assert_array_equal(array, expected[value.name])


def _body(scale: float, name: str) -> Graph:
    b = Graph(name)
    x = b.add_input("x", TensorType((4, 6), DType.float32))
    w = b.add_constant("w", np.full((4, 6), scale, np.float32))
    tile = b.add_op("tensorir.view", [x], {"offset": 1, "shape": (3, 2), "strides": (6, 1)},
                    name="tile").result
    y = b.add_op("Relu", [b.add_op("Mul", [x, w], name="mul").result], name="relu").result
    b.set_outputs([y, tile])
    return b


def test_an_op_with_a_body_graph_exports_as_a_function_of_its_body():
    # fused.* ops do not exist yet; the exporter needs only the body, not a registered op
    g = Graph("fused")
    x = g.add_input("x", TensorType((4, 6), DType.float32))
    types = [TensorType((4, 6), DType.float32), TensorType((3, 2), DType.float32)]
    bodies = [_body(2.0, "double"), _body(3.0, "triple"), _body(2.0, "double")]
    ops, value = [], x
    for i, body in enumerate(bodies):
        ops.append(g.add_op("fused.mul_relu", [value], {"body": body, "tag": i},
                            name=f"f{i}", result_types=types))
        value = ops[-1].results[0]
    g.set_outputs([value] + [op.results[1] for op in ops])
    model = to_model_proto(g)
    onnx.checker.check_model(model, full_check=True)
    # one function per distinct body: the third op reuses the first's
    assert sorted(f.name for f in model.functions) == \
        ["fused.mul_relu", "fused.mul_relu__1", "view"]
    assert [n.op_type for n in model.graph.node] == \
        ["fused.mul_relu", "fused.mul_relu__1", "fused.mul_relu"]
    assert {tensorir_op_type(n.domain, n.op_type) for n in model.graph.node} == \
        {"fused.mul_relu"}
    assert all([a.name for a in n.attribute] == ["tag"] for n in model.graph.node)
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 6), np.float32)}
    expected, value = [], feeds["x"]
    for body in bodies:
        out = interpret(body, {"x": value})
        value = out[body.outputs[0].name]
        expected.append(out[body.outputs[1].name])
    got = ort_outputs(model, feeds)
    np.testing.assert_allclose(got[0], value, rtol=RTOL, atol=ATOL)
    for array, tile in zip(got[1:], expected):
        np.testing.assert_array_equal(array, tile)


def test_onnx_ops_keep_names_and_attributes_in_onnx_form():
    g = Graph("small")
    x = g.add_input("x", TensorType((2, 3), DType.float32))
    hi = g.add_constant("hi", np.array(0.5, np.float32))
    leaky = g.add_op("LeakyRelu", [x], {"alpha": 1}, name="leaky").result  # an int for a float
    clip = g.add_op("Clip", [leaky, None, hi], name="clip").result
    drop, mask = g.add_op("Dropout", [clip], {"num_outputs": 2}, name="drop",
                          source=("drop", "from/elsewhere")).results
    g.set_outputs([drop, mask])
    model = to_model_proto(g)
    onnx.checker.check_model(model, full_check=True)
    leaky_node, clip_node, drop_node = model.graph.node
    assert leaky_node.attribute[0].type == onnx.AttributeProto.FLOAT
    assert list(clip_node.input) == ["leaky", "", "hi"]
    assert [a.name for a in drop_node.attribute] == []   # num_outputs is tensorir's
    assert list(drop_node.output) == [drop.name, mask.name]
    assert {p.key: p.value for p in drop_node.metadata_props} == \
        {"tensorir.source": "drop\nfrom/elsewhere"}
    feeds = {"x": np.array([[-2, -1, 0], [0.25, 1, 3]], np.float32)}
    expected = interpret(g, feeds)
    assert_close_all(ort_outputs(model, feeds), [expected[v.name] for v in g.outputs])


# --------------------------------------------------------------------------- errors
def test_what_onnx_cannot_hold_is_a_clear_typed_error():
    g = Graph("stripped")
    x = g.add_input("x", TensorType((2,), DType.float32))
    w = g.add_constant("w", type=TensorType((2,), DType.float32))   # no data
    g.set_outputs([g.add_op("Add", [x, w], name="add").result])
    with pytest.raises(TensorIRError, match=r"constant %w \(f32\[2\]\) has no data"):
        to_model_proto(g)
    with pytest.raises(TensorIRError, match="opset 20: tensorir's ops follow the opset-21"):
        to_model_proto(mlp_mixer("S/32", layers=1), opset=20)

    g = Graph("custom")
    x = g.add_input("x", TensorType((2,), DType.float32))
    y = g.add_op("fused.mystery", [x], {}, name="m",
                 result_types=[TensorType((2,), DType.float32)]).result
    g.set_outputs([y])
    with pytest.raises(TensorIRError, match="fused.mystery has no ONNX lowering .* no "
                                            "graph-valued 'body' attribute"):
        to_model_proto(g)


def test_fused_ops_and_views_load_back_from_their_functions(tmp_path):
    """save -> load is exact for tensorir's own ops: views, and fused ops rebuilt from the
    local function holding their body; provenance comes back from metadata_props."""
    from frontends.python import GraphBuilder
    from tensorir import interpret
    b = GraphBuilder("fusedview", seed=0)
    x = b.input("x", [3, 8])
    y = b.relu(b.linear(x, 8, 4, "fc"))
    g = b.build(b.neg(y))
    fused = g.fuse(g.ops[:3], "fused.matmul")
    view = g.add_op("tensorir.view", [g.value("neg")], {"offset": 1, "shape": [3, 2],
                                                         "strides": [4, 2]}, name="tile")
    g.set_outputs([g.value("neg"), view.results[0]])
    path = tmp_path / "fused.onnx"
    save(g, path)
    back = load(path)
    assert structural_diff(back, g) is None
    assert back.ops[0].source == fused.source == ("fc/mat_mul", "fc/add", "relu")
    xs = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    ours = interpret(g, {"x": xs})
    reference = ort_run(onnx.load(path), {"x": xs})
    for name, ref in zip(["neg", view.results[0].name], reference):
        np.testing.assert_allclose(ours[name], ref, rtol=1e-6)
