"""BERT-base and GPT-2 small exported from PyTorch: load, fold, bind, run like onnxruntime."""

import numpy as np
import onnx
import pytest

import transformer_models
from frontends.onnx import load
from onnx_models import ort_run
from tensorir import interpret, parse, print_graph, structural_diff, verify

available, why = transformer_models.available()
pytestmark = pytest.mark.skipif(not available, reason=f"transformer export needs torch and "
                                                        f"transformers: {why}")
BIND = {"batch": 2, "seq": 16}


@pytest.fixture(scope="module", params=transformer_models.MODELS)
def exported(request):
    path = transformer_models.export(request.param)
    return request.param, path, load(path, bind=BIND)


def test_loads_fully_static_and_shape_chains_fold_away(exported):
    name, path, g = exported
    verify(g)
    assert not g.symbols
    op_types = {op.type for op in g.ops}
    # the shape arithmetic of the export is folded; only the embedding Gathers stay
    assert not op_types & {"Shape", "ConstantOfShape", "Range", "Unsqueeze", "Concat"}
    assert str(g.outputs[0].type) == "f32[2, 16, 768]"


def test_equals_onnxruntime_with_a_padding_mask(exported):
    name, path, g = exported
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 1000, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    feeds["attention_mask"][1, 11:] = 0
    ours = interpret(g, feeds)[g.outputs[0].name]
    (ref,) = ort_run(onnx.load(path), feeds)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_prints_and_parses_back(exported):
    name, path, g = exported
    assert structural_diff(parse(print_graph(g)), g) is None
