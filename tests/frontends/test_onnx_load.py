import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from frontends.onnx import load
from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights, light_path, ort_run
from tensorir import (ModelLoadError, ShapeError, UnsupportedOpsError, interpret, parse,
                      print_graph, structural_diff, verify)


def test_all_nine_light_models_are_found():
    assert LIGHT_MODELS == ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2",
                            "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"]


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_equals_onnxruntime_with_seeded_weights(name):
    model = light_model_with_weights(name)
    g = load(model)
    verify(g)
    assert not g.symbols and all(v.type.is_static for v in g.values())
    feeds = image_feed(model)
    ours = interpret(g, feeds)
    ref = ort_run(model, feeds)
    for value, expected in zip(g.outputs, ref):
        np.testing.assert_allclose(ours[value.name], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_prints_and_parses_back(name):
    g = load(light_path(name))
    text = print_graph(g)
    back = parse(text)
    assert structural_diff(g, back) is None


def test_stripped_weights_load_as_broadcast_constants_with_their_fill_value():
    g = load(light_path("resnet50"))
    w = g.value("gpu_0/conv1_w_0")
    assert w.is_constant and w.type.shape == (64, 3, 7, 7)
    assert w.data.strides == (0, 0, 0, 0) and float(w.data[0, 0, 0, 0]) == pytest.approx(0.02)


def _tiny_model(nodes, inputs, outputs, initializers=(), opset=21):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_symbolic_dims_stay_symbols_until_bound_and_shape_chains_fold():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "zero1"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
             helper.make_tensor("zero1", TensorProto.INT64, [1], [0]),
             helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])]
    model = _tiny_model(nodes, [x], [y], inits)
    with pytest.raises(ShapeError, match="Reshape operand 1 \\(shape\\): must be a constant"):
        load(model)  # batch unbound: Shape cannot fold, so neither can the Reshape's shape
    g = load(model, bind={"batch": 2, "seq": 5})
    assert [op.type for op in g.ops] == ["Reshape"]   # the whole Shape chain folded
    assert str(g.outputs[0].type) == "f32[2, 40]"


def test_unsupported_ops_are_listed_all_at_once_with_counts():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("FancyA", ["a"], ["b"], name="fa1"),
             helper.make_node("FancyA", ["b"], ["c"], name="fa2"),
             helper.make_node("FancyB", ["c"], ["y"], name="fb", domain="com.example")]
    with pytest.raises(UnsupportedOpsError) as info:
        load(_tiny_model(nodes, [x], [y]))
    assert info.value.counts == {"FancyA": 2, "com.example.FancyB": 1}
    assert str(info.value) == ("model uses 2 unsupported op type(s):\n"
                               "  FancyA x2 (first: 'fa1')\n"
                               "  com.example.FancyB x1 (first: 'fb')")


def test_missing_empty_garbage_and_truncated_files(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="the file is empty"):
        load(empty)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf at all \x00\x01")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        load(garbage)
    data = light_path("squeezenet").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load(truncated)
    with pytest.raises(ModelLoadError, match="is a directory"):
        load(tmp_path)


def test_shape_errors_name_the_file_and_node():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _tiny_model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [a, b], [y])
    with pytest.raises(ShapeError, match="model: node 'mm' \\(MatMul\\): MatMul 'mm' operand 1"):
        load(model)


def test_large_weights_are_read_in_place_from_the_bytes():
    """load(bytes) views the large initializers in the bytes it was given and builds the same
    graph as load(ModelProto), which reads every tensor with numpy_helper."""
    model = light_model_with_weights("squeezenet")
    data = model.SerializeToString()
    g, reference = load(data), load(model)
    assert str(g) == str(reference)
    big = [c for c in g.constants if c.data.size > 1024]
    viewed = [c for c in big if np.shares_memory(c.data, np.frombuffer(data, np.uint8))]
    assert viewed and not any(c.data.flags.writeable for c in big)
    # every large weight is a view, aligned or not; evaluation reads an aligned copy (a
    # misaligned one would make numpy copy it into every matmul), made once
    assert len(viewed) == len(big)
    misaligned = [c for c in big if not c.data.flags.aligned]
    assert misaligned
    first = misaligned[0].evaluation_data()
    assert first.flags.aligned and not first.flags.writeable
    assert misaligned[0].evaluation_data() is first and misaligned[0].data is first
    np.testing.assert_array_equal(first, reference.value(misaligned[0].name).data)
    interpret(g, {v.name: np.zeros(v.shape, v.dtype.numpy) for v in g.inputs})
    assert all(c.data.flags.aligned for c in big)
    small = [c for c in g.constants if c.data.size <= 1024]
    assert not any(np.shares_memory(c.data, np.frombuffer(data, np.uint8)) for c in small)


def test_weights_as_external_data_are_loaded(tmp_path):
    model = light_model_with_weights("squeezenet")
    path = tmp_path / "squeezenet.onnx"
    external = onnx.ModelProto()
    external.CopyFrom(model)  # save_model rewrites the tensors it externalises in place
    onnx.save_model(external, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    assert (tmp_path / "weights.bin").stat().st_size > 1_000_000
    g = load(path)
    feeds = image_feed(model)
    np.testing.assert_allclose(interpret(g, feeds)[g.outputs[0].name],
                               ort_run(model, feeds)[0], rtol=1e-4, atol=1e-5)


def test_inspect_resnet50_matches_published_totals(capsys):
    from tensorir.cli import main
    assert main(["inspect", str(light_path("resnet50"))]) == 0
    out = capsys.readouterr().out
    # torchvision / onnx-tool: 4.09 G multiply-adds; 25.6 M parameters (25,557,032 trainable in
    # torchvision plus 53,120 BatchNorm running means and variances, weights in ONNX)
    assert "model resnet50: 176 ops, 25.6 M parameters" in out
    assert "(4.09 G multiply-adds in MatMul/Gemm/Conv" in out
    from tensorir.analysis import graph_stats
    stats = graph_stats(load(light_path("resnet50")))
    assert stats.contraction_macs == 4_089_184_256 and stats.params == 25_610_152


def test_opset_1_models_are_upgraded_by_the_version_converter():
    # onnx's own test_not_2d is opset 1; the converter also turns Reshape's opset-1 shape
    # attribute into an operand and drops Add's opset-1 broadcast flag
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])
    m = helper.make_tensor_value_info("m", TensorProto.BOOL, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    n = helper.make_tensor_value_info("n", TensorProto.BOOL, None)
    nodes = [helper.make_node("Add", ["x", "b"], ["s"], broadcast=1),
             helper.make_node("Reshape", ["s"], ["y"], shape=[6, 4]),
             helper.make_node("Not", ["m"], ["n"])]
    model = _tiny_model(nodes, [x, b, m], [y, n], opset=1)
    model.ir_version = 3
    g = load(model)
    assert [op.type for op in g.ops] == ["Add", "Reshape", "Not"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3, 4), np.float32),
             "b": rng.standard_normal(4, np.float32), "m": rng.random((2, 3)) < 0.5}
    out = interpret(g, feeds)
    np.testing.assert_array_equal(out["y"], (feeds["x"] + feeds["b"]).reshape(6, 4))
    np.testing.assert_array_equal(out["n"], ~feeds["m"])


def test_a_model_without_the_default_domain_reports_its_ops_as_unsupported():
    # it imports only ai.onnx.ml: nothing to upgrade, and every op is another domain's
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", name="bin")
    model = helper.make_model(helper.make_graph([node], "ml", [x], [y]),
                              opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])
    with pytest.raises(UnsupportedOpsError) as info:
        load(model)
    assert info.value.counts == {"ai.onnx.ml.Binarizer": 1}
