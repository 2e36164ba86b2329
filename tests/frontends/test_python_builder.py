import numpy as np
import pytest

from frontends.python import GraphBuilder
from frontends.zoo import mlp_mixer
from tensorir import (UnknownOpError, interpret, parse, print_graph, structurally_equal,
                      verify)
from tensorir.analysis import graph_stats


def test_builder_methods_cover_every_registered_op_and_name_by_scope():
    b = GraphBuilder("t", seed=1)
    x = b.input("x", ["batch", 8])
    with b.scope("fc"):
        y = b.linear(x, 8, 4, "proj")
        y = b.layer_normalization(y, b.weight("s", [4], init="ones"), axis=-1)
    z = b.reshape(y, [0, -1])
    g = b.build(z)
    assert [op.name for op in g.ops] == ["fc/proj/mat_mul", "fc/proj/add",
                                         "fc/layer_normalization", "reshape"]
    assert str(z.type) == "f32[batch, 4]"
    verify(g)
    with pytest.raises(UnknownOpError, match="GraphBuilder has no op 'not_an_op'"):
        b.not_an_op(x)


def test_builder_weights_are_seeded():
    w1 = GraphBuilder(seed=3).weight("w", [4, 4]).data
    w2 = GraphBuilder(seed=3).weight("w", [4, 4]).data
    assert np.array_equal(w1, w2) and w1.dtype == np.float32


def test_builder_graph_runs_like_numpy():
    b = GraphBuilder("mlp", seed=0)
    x = b.input("x", [2, 8])
    w = b.weight("w", [8, 3], std=1.0)
    y = b.relu(b.matmul(x, w))
    g = b.build(y)
    xs = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(interpret(g, {"x": xs})[y.name],
                               np.maximum(xs @ w.data, 0), rtol=1e-6)


def test_mixer_s16_parameters_match_the_paper_and_a_hand_count():
    g = mlp_mixer("S/16", batch=1)
    stats = graph_stats(g)
    # Hand count for Mixer-S/16 (C=512, S=196 tokens, D_S=256, D_C=2048, 8 layers, 1000 classes):
    stem = 3 * 16 * 16 * 512 + 512
    token_mlp = 196 * 256 + 256 + 256 * 196 + 196
    channel_mlp = 512 * 2048 + 2048 + 2048 * 512 + 512
    norms = 2 * (2 * 512)
    head = 2 * 512 + 512 * 1000 + 1000
    expected = stem + 8 * (token_mlp + channel_mlp + norms) + head
    assert stats.params == expected == 18_528_264  # the paper's Table 1 rounds this to 18M
    # multiply-adds: stem 196*768*512, per layer 512*(196*256*2) + 196*(512*2048*2), head 512*1000
    macs = 196 * 768 * 512 + 8 * (512 * 196 * 256 * 2 + 196 * 512 * 2048 * 2) + 512 * 1000
    assert stats.contraction_macs == macs
    assert round(macs / 1e9, 2) == 3.78  # "about 3.8 G"


def test_mixer_is_batch_symbolic_and_round_trips_through_text():
    g = mlp_mixer("S/16", batch="batch", layers=2)
    assert str(g.outputs[0].type) == "f32[batch, 1000]"
    text = print_graph(g)
    back = parse(text)
    assert structurally_equal(back, g) and print_graph(back) == text
    verify(back)


def test_mixer_runs_and_matches_a_direct_numpy_forward_pass():
    g = mlp_mixer("S/32", batch=2, layers=1, seed=5)
    image = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (logits,) = interpret(g, {"image": image}).values()
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()

    w = {v.name: v.data for v in g.constants}
    p = 32
    patches = image.reshape(2, 3, 7, p, 7, p).transpose(0, 2, 4, 1, 3, 5).reshape(2, 49, -1)
    y = patches @ w["stem/weight"].reshape(512, -1).T + w["stem/bias"]

    def ln(v, prefix):
        mu = v.mean(-1, keepdims=True)
        var = v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * w[f"{prefix}/scale"] + w[f"{prefix}/bias"]

    from math import erf, sqrt
    gelu = np.vectorize(lambda t: 0.5 * t * (1 + erf(t / sqrt(2))))

    def mlp(v, prefix):
        h = gelu(v @ w[f"{prefix}/fc1/weight"] + w[f"{prefix}/fc1/bias"])
        return h @ w[f"{prefix}/fc2/weight"] + w[f"{prefix}/fc2/bias"]

    t = ln(y, "block0/norm1").transpose(0, 2, 1)
    y = y + mlp(t, "block0/token_mixing").transpose(0, 2, 1)
    y = y + mlp(ln(y, "block0/norm2"), "block0/channel_mixing")
    y = ln(y, "head/norm").mean(1)
    expected = y @ w["head/fc/weight"] + w["head/fc/bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
