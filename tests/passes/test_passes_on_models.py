"""The graph passes on real models: the nine ONNX light models (seeded weights) and MLP-Mixer.

Each model is loaded and interpreted once; the pipeline runs with verification after every
pass, and the outputs must match the unoptimised graph's.
"""

from collections import Counter

import numpy as np
import pytest
from dag_strategies import conv_bn_graphs, dag_feeds, random_dags
from hypothesis import given, settings

from frontends.onnx import load
from frontends.zoo import mlp_mixer
from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager

from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights

PIPELINE = "simplify,fold-batchnorm,fold-constants,cse,dce"

# what the pipeline must do to each model (counters of the passes that change it)
EXPECTED = {
    "bvlc_alexnet": {"simplify": {"dropout-mask": 2}},
    "densenet121": {"fold-batchnorm": {"folded": 59, "affine_into_conv": 118,
                                       "affine_into_bn": 124,
                                       # the pre-activation BNs read a Concat or a pool
                                       "refused_not_after_conv": 62}},
    "inception_v1": {"simplify": {"dropout-mask": 1},
                     "fold-constants": {"folded_no_copy": 1}},  # the classifier weight
    "inception_v2": {"fold-batchnorm": {"folded": 69, "affine_into_conv": 138}},
    "resnet50": {"fold-batchnorm": {"folded": 53}},
    "shufflenet": {"fold-batchnorm": {"folded": 49}},
    "squeezenet": {"simplify": {"dropout-mask": 1}},
    "vgg19": {"simplify": {"dropout-mask": 2}},
    "zfnet512": {},
    "mlp_mixer_s16": {},  # biases are seeded random, as trained ones are nonzero: nothing to simplify
}
CHANGING = ("simplify", "fold-batchnorm", "fold-constants")


def model(name: str):
    if name == "mlp_mixer_s16":
        g = mlp_mixer("S/16", batch=1)
        rng = np.random.default_rng(1)
        return g, {v.name: rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs}
    proto = light_model_with_weights(name)
    return load(proto), image_feed(proto)


@pytest.mark.parametrize("name", [*LIGHT_MODELS, "mlp_mixer_s16"])
def test_the_pipeline_keeps_each_models_outputs(name):
    g, feeds = model(name)
    bn_before = sum(o.type == "BatchNormalization" for o in g.ops)
    # verifies after every pass; the graph outputs keep their names
    result = run_and_compare(PassManager(PIPELINE), g, feeds, rtol=1e-4, atol=1e-5)
    did = {r.name: {k: v for k, v in r.stats.items() if v} for r in result.records
           if r.name in CHANGING}
    assert {k: v for k, v in did.items() if v} == EXPECTED[name]
    types = Counter(o.type for o in result.graph.ops)
    folded = EXPECTED[name].get("fold-batchnorm", {}).get("folded", 0)
    assert types["BatchNormalization"] == bn_before - folded
    assert not any(o.type == "BatchNormalization" and o.operands[0].producer is not None
                   and o.operands[0].producer.type == "Conv" for o in result.graph.ops)
    assert types["Dropout"] == 0 and types["Identity"] == 0
    # zfnet512 and the Mixer (seeded biases, no Dropout) have nothing to clean up
    assert len(result.graph) < result.records[0].ops_before or name in ("zfnet512", "mlp_mixer_s16")


@settings(max_examples=examples(40))
@given(random_dags(), conv_bn_graphs())
def test_the_pipeline_keeps_random_graphs_outputs(g, h):
    for graph, feeds in ((g, dag_feeds(g)), (h, dag_feeds(h, seed=1))):
        run_and_compare(PassManager(PIPELINE), graph, feeds, compare=close_to_scale)


def close_to_scale(actual, expected):
    """rtol 1e-5, and an absolute tolerance that scales with the largest finite value."""
    scale = max(1.0, float(np.max(np.abs(np.nan_to_num(expected, posinf=0, neginf=0)),
                                  initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale, equal_nan=True)
