import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.onnx import load
from frontends.onnx.weights import random_weight
from frontends.python import GraphBuilder
from frontends.zoo import mlp_mixer
from fusion_strategies import feeds_for, fusable_graphs
from graph_strategies import random_graphs
from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager, parse_pipeline
from passes.fusion import (FusePass, Group, fused_counts, group_problem, internal_bytes,
                           kernel_count)
from tensorir import Graph, TensorType, interpret, parse, print_graph, structural_diff, verify
from tensorir.dtypes import DType
from tensorir.ops import op_domain, op_flops

from onnx_models import LIGHT_MODELS, light_path

import transformer_models  # noqa: E402

F32 = DType.float32
HAVE_TORCH, WHY_NOT = transformer_models.available()
TRANSFORMER_BIND = {"batch": 2, "seq": 16}


# ----------------------------------------------------------------------------- helpers


def with_random_weights(g: Graph, seed: int = 0) -> Graph:
    """Replace the light models' stripped weights (zero-stride broadcasts) by seeded He-init
    values, in tensorir (the onnx-level filler takes seconds on VGG's 140M weights)."""
    rng = np.random.default_rng(seed)
    for v in list(g.constants):
        data = v.data
        if data is None or data.size < 2 or any(data.strides) or not v.dtype.is_float:
            continue
        if data.size > 1 << 22:
            continue  # the big classifier matrices of VGG and AlexNet stay uniform (speed)
        new = g.add_constant(g.unique_name(v.name + "__filled"),
                             random_weight(data.shape, data.dtype, rng))
        g.replace_all_uses_with(v, new)
        g.remove_value(v)
        g.rename_value(new, v.name)
    return g


@functools.lru_cache(maxsize=None)
def loaded(name: str) -> tuple[Graph, dict, dict]:
    """(graph, inputs, outputs of the unfused graph): loaded and run once per module."""
    if name == "mlp-mixer":
        g = mlp_mixer("S/16", batch=1)
        feeds = feeds_for(g, seed=1)
    elif name in transformer_models.MODELS:
        g = load(transformer_models.export(name), bind=TRANSFORMER_BIND)
        rng = np.random.default_rng(0)
        shape = (TRANSFORMER_BIND["batch"], TRANSFORMER_BIND["seq"])
        feeds = {"input_ids": rng.integers(0, 1000, shape).astype(np.int64),
                 "attention_mask": np.ones(shape, np.int64)}
        feeds["attention_mask"][1, 11:] = 0  # padding: the mask path matters
    else:
        g = with_random_weights(load(light_path(name)))
        feeds = feeds_for(g, seed=1)
    return g, feeds, interpret(g, feeds)


@functools.lru_cache(maxsize=None)
def fused(name: str):
    g, feeds, expected = loaded(name)
    result = PassManager("fuse").run(g.copy())  # verifies the input and the result
    return result.graph, result.records[0].stats


def total_flops(g: Graph) -> int:
    return sum(op_flops(o) for o in g.ops)


def assert_same_outputs(g: Graph, feeds: dict, expected: dict) -> None:
    got = interpret(g, feeds)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5)


MODELS = LIGHT_MODELS + ["mlp-mixer"] + [
    pytest.param(m, marks=pytest.mark.skipif(not HAVE_TORCH, reason=WHY_NOT))
    for m in transformer_models.MODELS]


# ----------------------------------------------------------------------------- real models


@pytest.mark.parametrize("name", MODELS)
def test_fuse_keeps_outputs_flops_and_text_form(name):
    g, feeds, expected = loaded(name)
    after, stats = fused(name)
    assert kernel_count(after) < kernel_count(g) and internal_bytes(after) > 0
    assert_same_outputs(after, feeds, expected)
    assert total_flops(after) == total_flops(g)  # a kernel's FLOPs are its body's
    for o in after.ops:
        if o.type.startswith("fused."):
            op_domain(o)  # every kernel has an iteration domain (or None), no error
    assert structural_diff(parse(print_graph(after)), after) is None
    assert not FusePass()(after.copy()).modified  # nothing left to fuse: a fixpoint


@pytest.mark.skipif(not HAVE_TORCH, reason=WHY_NOT)
@pytest.mark.parametrize("name, gelu_op", [("bert-base", "Erf"), ("gpt2", "Tanh")])
def test_transformers_have_one_attention_kernel_per_layer_and_twelve_gelus(name, gelu_op):
    after, stats = fused(name)
    assert stats["attention"] == 12 and stats["gelu"] == 12 and stats["ffn"] == 12
    counts = fused_counts(after)
    assert counts["attention"] == 12 and counts["gelu"] == 12 and counts["ffn"] == 12
    assert fused_counts(after, nested=False)["attention"] == 12
    for o in after.ops:
        body_types = [b.type for b in o.attrs["body"].ops] if o.type.startswith("fused.") else []
        if o.type == "fused.attention":
            # Q K^T, softmax, P V and the head split/merge all inside: one kernel
            assert body_types.count("MatMul") == 2 and "Softmax" in body_types
            assert "Transpose" in body_types and o.results[0].type.shape[-1] == 768
        if o.type == "fused.ffn":  # two contraction kernels, the first with the GELU inside
            inner = [b for b in o.attrs["body"].ops if b.type.startswith("fused.")]
            assert len(inner) == 2
            first_body = [b.type for b in inner[0].attrs["body"].ops]
            assert "fused.gelu" in first_body
            gelu = next(b for b in inner[0].attrs["body"].ops if b.type == "fused.gelu")
            assert gelu_op in [b.type for b in gelu.attrs["body"].ops]
    assert not {"Softmax", "Erf", "Tanh", "MatMul"} & {o.type for o in after.ops}


def test_mlp_mixer_blocks_become_two_ffn_kernels_each():
    after, stats = fused("mlp-mixer")
    assert stats["ffn"] == 16 and fused_counts(after, nested=False)["ffn"] == 16
    token_mixing = [o for o in after.ops if o.type == "fused.ffn"
                    and any("token_mixing" in s for s in o.source)]  # provenance: the union
    assert len(token_mixing) == 8
    # the transpose back and the residual Add are the second MatMul's epilogue
    second = [b for b in token_mixing[0].attrs["body"].ops][-1]
    assert [b.type for b in second.attrs["body"].ops] == ["MatMul", "Add", "Transpose", "Add"]


def test_resnet_convolutions_take_bn_residual_and_relu():
    after, stats = fused("resnet50")
    assert stats["conv"] == 53 and kernel_count(after) == 57
    bodies = [[b.type for b in o.attrs["body"].ops] for o in after.ops if o.type == "fused.conv"]
    assert ["Conv", "BatchNormalization", "Sum", "Relu"] in bodies
    assert all(b[:2] == ["Conv", "BatchNormalization"] for b in bodies)


# ----------------------------------------------------------------------------- recognisers


def run_fuse(g: Graph, pipeline: str = "fuse"):
    result = run_and_compare(PassManager(pipeline), g, feeds_for(g), rtol=1e-4, atol=1e-5)
    return result.graph, result.records[0].stats


@pytest.mark.parametrize("form", [0, 1, 2, 3])
def test_decomposed_gelu_in_every_association_becomes_one_op(form):
    from fusion_strategies import _gelu_erf, _gelu_tanh
    g = Graph("g")
    x = g.add_input("x", TensorType((2, 8), F32))
    g.set_outputs([g.add_op("Neg", [_gelu_tanh(g, x) if form == 3 else _gelu_erf(g, x, form)])
                   .result])
    fused_g, stats = run_fuse(g)
    assert stats["gelu"] == 1 and [o.type for o in fused_g.ops] == ["fused.elementwise"]
    inner = fused_g.ops[0].attrs["body"].ops
    assert [o.type for o in inner] == ["fused.gelu", "Neg"]
    body = inner[0].attrs["body"]
    assert ("Tanh" if form == 3 else "Erf") in [o.type for o in body.ops]


def test_gelu_with_a_wrong_constant_is_refused_with_the_reason():
    b = GraphBuilder("g")
    x = b.input("x", [2, 8])
    erf = b.erf(b.div(x, 1.5))  # not sqrt(2)
    y = b.mul(b.mul(x, b.add(erf, 1.0)), 0.5)
    g = b.build(y)
    fuse = FusePass()
    root = g.value(y.name).producer
    trace = {e.rule: e for e in fuse.explain(g, root)}
    assert trace["gelu-erf"].outcome == "no"
    assert "GELU needs 1.41421" in trace["gelu-erf"].reason
    after = fuse(g)
    assert "gelu" not in after.stats and after.stats["skipped_constants"] == 1
    assert after.stats["elementwise"] == 1  # still one elementwise kernel


@pytest.mark.parametrize("variant", ["pow-div-affine", "mul-rsqrt-scale", "pow-div"])
def test_decomposed_layernorm_becomes_fused_layernorm(variant):
    b = GraphBuilder("ln", seed=0)
    x = b.input("x", [2, 3, 8])
    mean = b.reduce_mean(x, [-1])
    d = b.sub(x, mean)
    sq = b.pow(d, 2.0) if variant.startswith("pow") else b.mul(d, d)
    std = b.sqrt(b.add(b.reduce_mean(sq, [-1]), 1e-5))
    y = b.div(d, std) if "div" in variant else b.mul(d, b.reciprocal(std))
    if not variant.endswith("div"):
        y = b.mul(y, b.weight("gamma", [8], std=1.0))
    if variant.endswith("affine"):
        y = b.add(y, b.weight("beta", [8], std=1.0))
    g = b.build(b.relu(y))
    fused_g, stats = run_fuse(g)
    assert stats["layernorm"] == 1
    ln = next(o for o in fused_g.ops if o.type == "fused.layernorm")
    expected = {"pow-div-affine": 9, "mul-rsqrt-scale": 9, "pow-div": 7}[variant]
    assert len(ln.attrs["body"].ops) == expected
    # and it matches LayerNormalization itself
    ref = GraphBuilder("ref")
    rx = ref.input("x", [2, 3, 8])
    ones = np.ones(8, np.float32)
    ref_g = ref.build(ref.layer_normalization(rx, ones, np.zeros(8, np.float32), epsilon=1e-5))
    if variant == "pow-div":
        feeds = feeds_for(g)
        np.testing.assert_allclose(
            interpret(fused_g, feeds)[fused_g.outputs[0].name],
            np.maximum(interpret(ref_g, feeds)[ref_g.outputs[0].name], 0), rtol=1e-4, atol=1e-5)


def test_layernorm_over_the_wrong_axes_is_refused():
    b = GraphBuilder("ln")
    x = b.input("x", [2, 3, 8])
    d = b.sub(x, b.reduce_mean(x, [1]))  # a mean over axis 1, the variance over axis 2
    g = b.build(b.div(d, b.sqrt(b.add(b.reduce_mean(b.pow(d, 2.0), [-1]), 1e-5))))
    root = g.ops[-1]
    entry = next(e for e in FusePass().explain(g, root) if e.rule == "layernorm-pow-div")
    assert entry.outcome == "no" and "same trailing axes" in entry.reason


@pytest.mark.parametrize("stable", [True, False])
def test_decomposed_softmax_becomes_fused_softmax(stable):
    b = GraphBuilder("sm")
    x = b.input("x", [2, 5])
    z = b.sub(x, b.reduce_max(x, [-1])) if stable else x
    e = b.exp(z)
    g = b.build(b.div(e, b.reduce_sum(e, [-1])))
    fused_g, stats = run_fuse(g)
    assert stats == {"softmax": 1, "skipped": 0}
    assert [o.type for o in fused_g.ops] == ["fused.softmax"]
    assert len(fused_g.ops[0].attrs["body"].ops) == (5 if stable else 3)


def attention_block(b: GraphBuilder, x, heads=2, dim=8, scale_form="div", mask=True,
                    nan_guard=False):
    seq = x.type.shape[1]
    q, k, v = (b.linear(x, dim, dim, n) for n in ("q", "k", "v"))

    def split(t):
        return b.transpose(b.reshape(t, [1, seq, heads, dim // heads]), perm=[0, 2, 1, 3])

    kt = b.transpose(b.reshape(k, [1, seq, heads, dim // heads]), perm=[0, 2, 3, 1])
    s = b.matmul(split(q), kt)
    s = b.div(s, math.sqrt(dim // heads)) if scale_form == "div" else b.mul(s, 0.5)
    if mask:
        s = b.add(s, b.weight("mask", [1, 1, seq, seq], std=1.0))
    p = b.softmax(s, axis=-1)
    if nan_guard:
        p = b.where(b.isnan(p), 0.0, p)
    o = b.matmul(p, split(v))
    return b.reshape(b.transpose(o, perm=[0, 2, 1, 3]), [1, seq, dim])


@pytest.mark.parametrize("scale_form, mask, nan_guard", [("div", True, False),
                                                         ("mul", False, True)])
def test_attention_block_is_one_kernel(scale_form, mask, nan_guard):
    b = GraphBuilder("attn", seed=0)
    x = b.input("x", [1, 4, 8])
    g = b.build(b.relu(attention_block(b, x, scale_form=scale_form, mask=mask,
                                        nan_guard=nan_guard)))
    fused_g, stats = run_fuse(g)
    assert stats["attention"] == 1 and stats["matmul"] == 3  # the projections: MatMul+bias
    attn = next(o for o in fused_g.ops if o.type == "fused.attention")
    types = [o.type for o in attn.attrs["body"].ops]
    assert types.count("Reshape") == 4 and types.count("Transpose") == 4
    # q, k and v are computed; the scale (and the mask, and the NaN guard's 0) are constants
    assert sum(not v.is_constant for v in attn.operands) == 3
    assert sum(v.is_constant for v in attn.operands) == 2


def test_attention_whose_scores_are_read_elsewhere_is_refused():
    b = GraphBuilder("attn", seed=0)
    x = b.input("x", [1, 4, 8])
    out = attention_block(b, x)
    g = b.build(out)
    softmax = next(o for o in g.ops if o.type == "Softmax")
    scores = softmax.operands[0]
    g.set_outputs([out, scores])  # the masked scores are also an output
    (entry,) = [e for e in FusePass().explain(g, softmax) if e.stage == "attention"]
    assert entry.outcome == "no" and "used outside the attention block" in entry.reason
    assert "attention" not in FusePass()(g).stats


def test_conv_epilogue_bias_bn_relu_residual_and_clip():
    b = GraphBuilder("c", seed=0)
    x = b.input("x", [1, 4, 6, 6])
    y = b.conv(x, b.weight("w", [4, 4, 3, 3], std=0.3), pads=[1, 1, 1, 1])
    y = b.add(y, b.weight("bias", [4, 1, 1]))
    y = b.batch_normalization(y, *(b.weight(n, [4], init="ones") for n in "sbmv"))
    y = b.clip(b.add(b.relu(y), x), None, 6.0)
    g = b.build(b.max_pool(y, kernel_shape=[2, 2]))
    fused_g, stats = run_fuse(g)
    assert stats["conv"] == 1
    conv = fused_g.ops[0]
    assert [o.type for o in conv.attrs["body"].ops] == ["Conv", "Add", "BatchNormalization",
                                                        "Relu", "Add", "Clip"]
    assert [o.type for o in fused_g.ops] == ["fused.conv", "MaxPool"]


def test_epilogue_stops_at_a_broadcast_and_at_max_ops():
    b = GraphBuilder("m", seed=0)
    x = b.input("x", [3, 4])
    y = b.matmul(x, b.weight("w", [4, 1]))
    y = b.add(b.relu(y), b.weight("wide", [3, 5]))  # [3, 1] + [3, 5] grows the tensor
    g = b.build(y)
    mm = g.ops[0]
    entry = next(e for e in FusePass().explain(g, mm) if e.rule == "contraction-epilogue")
    assert entry.outcome == "fuses" and "2 ops" in entry.reason  # MatMul + Relu only
    b2 = GraphBuilder("m", seed=0)
    x2 = b2.input("x", [3, 4])
    y2 = b2.matmul(x2, b2.weight("w", [4, 4]))
    for _ in range(5):
        y2 = b2.tanh(y2)
    g2 = b2.build(y2)
    fused_g, stats = run_fuse(g2, "fuse{max-ops=3}")
    assert stats == {"elementwise": 1, "matmul": 1, "skipped": 0}
    assert [len(o.attrs["body"].ops) for o in fused_g.ops] == [3, 3]  # MatMul+2 Tanh, 3 Tanh


def test_ffn_nests_the_two_contraction_kernels_and_round_trips():
    b = GraphBuilder("mlp", seed=0)
    x = b.input("x", [2, 3, 8])
    h = b.gelu(b.linear(x, 8, 16, "fc1"))
    y = b.add(b.linear(h, 16, 8, "fc2"), x)  # residual
    g = b.build(b.layer_normalization(y, np.ones(8, np.float32)))
    fused_g, stats = run_fuse(g)
    assert stats == {"ffn": 1, "matmul": 2, "skipped": 0}
    ffn = fused_g.ops[0]
    assert ffn.type == "fused.ffn" and [o.type for o in fused_g.ops][1] == "LayerNormalization"
    first, second = ffn.attrs["body"].ops
    assert [o.type for o in first.attrs["body"].ops] == ["MatMul", "Add", "Gelu"]
    assert [o.type for o in second.attrs["body"].ops] == ["MatMul", "Add", "Add"]
    text = print_graph(fused_g)
    assert text.count("body = graph") == 3
    back = parse(text)
    assert structural_diff(back, fused_g) is None and print_graph(back) == text
    verify(back)


def test_elementwise_chains_respect_max_ops_and_graph_outputs():
    b = GraphBuilder("ew")
    x = b.input("x", [4])
    chain = [x]
    for _ in range(7):
        chain.append(b.sigmoid(chain[-1]))
    g = b.build(chain[-1], chain[3])  # chain[3] is also an output: a group boundary
    fused_g, stats = run_fuse(g, "fuse{max-ops=3}")
    sizes = [len(o.attrs["body"].ops) if o.type == "fused.elementwise" else 1
             for o in fused_g.ops]
    assert sizes == [3, 1, 3] and stats["elementwise"] == 2


def test_group_problem_refuses_a_group_that_would_be_its_own_ancestor():
    b = GraphBuilder("cyc")
    x = b.input("x", [4])
    a = b.relu(x)
    outside = b.matmul(b.reshape(a, [1, 4]), np.ones((4, 4), np.float32))
    c = b.add(a, b.reshape(outside, [4]))
    g = b.build(c)
    group = Group((a.producer, c.producer), c)
    refusal = group_problem(g, group)
    assert refusal.key == "cycle" and "cycle" in refusal.reason
    # the pass never proposes it (Relu's result is read by the Reshape outside); it fuses the
    # MatMul with the Reshape and the Add that follow, reading Relu's result as an input
    fused_g, stats = run_fuse(g)
    assert stats == {"matmul": 1, "skipped": 0}
    assert [o.type for o in fused_g.ops] == ["Relu", "Reshape", "fused.matmul"]


# ----------------------------------------------------------------------------- explain


def test_explain_a_matmul_used_twice_is_not_fused_and_says_why():
    b = GraphBuilder("t", seed=0)
    x = b.input("x", [2, 8])
    mm = b.matmul(x, b.weight("w", [8, 4]))
    g = b.build(b.relu(b.add(mm, b.weight("b", [4]))), b.neg(mm))
    matmul = mm.producer
    fuse = FusePass()
    trace = fuse.explain(g, matmul)
    entry = next(e for e in trace if e.rule == "contraction-epilogue")
    assert entry.outcome == "no"
    assert entry.reason.startswith("MatMul 'mat_mul' has no epilogue: %mat_mul is used 2 times "
                                   "(Add 'add', Neg 'neg')")
    assert trace[-1].outcome == "no" and "stays unfused" in trace[-1].reason
    assert "epilogue/contraction-epilogue: no: MatMul 'mat_mul' has no epilogue" in \
        "\n".join(map(str, trace))
    result = fuse(g)
    assert result.stats["skipped_multi_use"] == 1 and "matmul" not in result.stats
    assert fuse.skipped == [("MatMul 'mat_mul'", "contraction-epilogue", entry.reason)]
    assert matmul in g.ops  # still there, unfused; Add+Relu became one elementwise kernel
    assert result.stats["elementwise"] == 1


def test_explain_names_the_kernel_an_op_ended_up_in():
    b = GraphBuilder("t", seed=0)
    x = b.input("x", [2, 8])
    y = b.relu(b.linear(x, 8, 4, "fc"))
    g = b.build(y)
    relu = g.ops[-1]
    trace = FusePass().explain(g, relu)
    assert str(trace[-1]) == "epilogue/-: fused: %relu is now computed inside fused.matmul 'relu'"
    assert trace[0].rule == "*" and "Relu is not the root of any softmax rule" in trace[0].reason


def test_max_ops_option_in_pipelines():
    (p,) = parse_pipeline("fuse{max-ops=8}")
    assert p.spec() == "fuse{max-ops=8}" and p.options.max_ops == 8
    with pytest.raises(Exception, match="max-ops must be at least 2"):
        FusePass(max_ops=1)(Graph("empty"))


# ----------------------------------------------------------------------------- properties


def check_fusion_preserves(g: Graph, max_ops: int, bind: dict | None = None) -> None:
    feeds = feeds_for(g, bind=bind)
    before = interpret(g, feeds)
    flops = total_flops(g.bind(bind)) if bind else total_flops(g)
    after = PassManager(f"fuse{{max-ops={max_ops}}}").run(g).graph
    got = interpret(after, feeds)
    for name, array in before.items():  # a kernel runs its body's own evaluations
        np.testing.assert_array_equal(got[name], array)
    assert (total_flops(after.bind(bind)) if bind else total_flops(after)) == flops
    assert structural_diff(parse(print_graph(after)), after) is None


@settings(max_examples=examples(60))
@given(fusable_graphs(), st.sampled_from([2, 3, 16]))
def test_fused_random_dags_compute_the_same(g, max_ops):
    check_fusion_preserves(g, max_ops)


@settings(max_examples=examples(25))
@given(random_graphs(max_ops=8), st.sampled_from([2, 16]))
def test_fused_random_graphs_with_symbols_and_odd_names_compute_the_same(g, max_ops):
    check_fusion_preserves(g, max_ops, bind={"batch": 2} if g.symbols else None)
