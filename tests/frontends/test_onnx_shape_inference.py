"""Our type rules against onnx.shape_inference: equal wherever onnx infers a static shape."""

import onnx
import pytest

import transformer_models
from frontends.onnx import load
from frontends.onnx.importer import upgrade_opset
from onnx_models import LIGHT_MODELS, light_path, onnx_static_types
from tensorir.dtypes import dtype_from_onnx


def assert_types_agree(graph, model, bind=None):
    expected = onnx_static_types(upgrade_opset(model, "model"), bind)
    assert expected, "onnx inferred nothing: the cross-check would be empty"
    compared = 0
    for name, (shape, elem_type) in expected.items():
        if not graph.has_value(name):
            continue  # a value onnx names but tensorir folded into another (none today)
        value = graph.value(name)
        assert value.type.shape == shape, (name, value.type, shape)
        assert value.dtype is dtype_from_onnx(elem_type), (name, value.type, elem_type)
        compared += 1
    assert compared >= 0.9 * len(expected)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_types_equal_onnx_shape_inference(name):
    model = onnx.load(light_path(name))
    assert_types_agree(load(model), model)


@pytest.mark.skipif(not transformer_models.available()[0],
                    reason=f"needs torch and transformers: {transformer_models.available()[1]}")
@pytest.mark.parametrize("name", transformer_models.MODELS)
def test_transformer_types_equal_onnx_shape_inference(name):
    bind = {"batch": 2, "seq": 16}
    model = onnx.load(transformer_models.export(name))
    assert_types_agree(load(model, bind=bind), model, bind)
