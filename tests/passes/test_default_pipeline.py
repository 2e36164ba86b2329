"""The default pipeline on every real model: verified after every pass, outputs unchanged."""

import numpy as np
import pytest

import transformer_models
from frontends.onnx import load
from frontends.zoo import mlp_mixer
from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights
from pass_harness import run_and_compare
from passes import PassManager
from tensorir import parse, print_graph, structural_diff

have_torch, why = transformer_models.available()
MODELS = LIGHT_MODELS + ["mlp-mixer"] + [
    pytest.param(m, marks=pytest.mark.skipif(not have_torch, reason=why))
    for m in transformer_models.MODELS]


def model_and_feeds(name):
    if name == "mlp-mixer":
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        return mlp_mixer("S/16", batch=1), {"image": x}
    if name in transformer_models.MODELS:
        rng = np.random.default_rng(0)
        feeds = {"input_ids": rng.integers(0, 1000, (1, 32)).astype(np.int64),
                 "attention_mask": np.ones((1, 32), np.int64)}
        feeds["attention_mask"][0, 25:] = 0
        return load(transformer_models.export(name), bind={"batch": 1, "seq": 32}), feeds
    model = light_model_with_weights(name)
    return load(model), image_feed(model)


@pytest.mark.parametrize("name", MODELS)
def test_default_pipeline_keeps_outputs_and_verifies_after_every_pass(name):
    graph, feeds = model_and_feeds(name)
    # graph output names are stable
    result = run_and_compare(PassManager("default", verify=True), graph, feeds,
                             rtol=1e-4, atol=1e-5)
    assert len(result.graph) < result.records[0].ops_before
    assert structural_diff(parse(print_graph(result.graph)), result.graph) is None
    if name in transformer_models.MODELS:
        kinds = [op.type for op in result.graph.ops]
        assert kinds.count("fused.attention") == 12
