"""Lowered kernels compute what the untiled ops compute, move what the closed form says, and
print and parse back.

For random op shapes and random legal tilings (1 to 3 on-chip levels, any tile sizes, any loop
order with the split reductions innermost), the loop nest run by the ScheduleInterpreter equals
the plain interpreter; the elements every load and store moved, counted from the views it
copied, equal :func:`tensorir.schedule.statement_traffic`; the text form parses back equal.
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from frontends.python import GraphBuilder
from hypothesis_budget import examples
from schedule_strategies import random_tilings
from passes.manager import PassManager
from tensorir.errors import ShapeError
from tensorir.interpreter import Interpreter
from tensorir.kernel import kernel_domain
from tensorir.parser import parse
from tensorir.printer import print_graph
from tensorir.schedule import (LevelTiling, Load, Schedule, Store, lower_kernel,
                               statement_traffic)
from tensorir.schedule_exec import ScheduleInterpreter
from tensorir.target import Managed, MemoryLevel, Target

LEVELS = [MemoryLevel("L3", 1 << 20, managed=Managed.SCRATCHPAD, double_buffered=True),
          MemoryLevel("L2", 1 << 16, managed=Managed.SCRATCHPAD, double_buffered=True),
          MemoryLevel("L1", 1 << 12, managed=Managed.SCRATCHPAD)]
DRAM = MemoryLevel("DRAM", 1 << 34)


@st.composite
def level_tilings(draw, kd):
    """Random tilings over 1 to 3 levels, outermost first, each inside the one above."""
    n_levels = draw(st.integers(1, 3))
    levels = LEVELS[3 - n_levels:]
    return levels, draw(random_tilings(kd, levels))


def check_lowered(g, draw, rtol=1e-4, atol=1e-5):
    """Lower every op of ``g`` with random tilings, then check results, traffic and text."""
    kernels = []
    for op in g.ops:
        kd = kernel_domain(op)
        levels, tilings = draw(level_tilings(kd))
        kernels.append((op, kd, lower_kernel(op, kd, tilings, levels), levels))
    lowered = g.copy()
    lowered.schedule = Schedule(Target("t", tuple(LEVELS) + (DRAM,)),
                                tuple(ks for _, _, ks, _ in kernels))
    rng = np.random.default_rng(0)
    feed = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    want = Interpreter(g).run(feed)
    run = ScheduleInterpreter(lowered)
    got = run.run(feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol)
    for op, kd, ks, _ in kernels:
        closed = statement_traffic(kd, ks, [None if v is None else v.type.shape
                                            for v in op.operands],
                                   op.results[0].type.shape,
                                   None if kd.anchor is None else
                                   kd.steps[kd.anchor].op.results[0].type.shape)
        counted = run.traffic[ks.result]
        assert {i: counted.get(i, 0) for i in closed} == closed
        assert set(counted) <= set(closed)
    assert parse(print_graph(lowered)).schedule == lowered.schedule
    return kernels


def builder(seed=0):
    return GraphBuilder("k", seed=seed)


@settings(max_examples=examples(60), deadline=None)
@given(st.data(), st.integers(1, 3), st.integers(1, 24), st.integers(1, 24), st.integers(1, 24))
def test_matmul(data, batch, m, n, k):
    b = builder()
    x = b.input("x", [batch, m, k])
    g = b.build(b.matmul(x, b.weight("w", [k, n])))
    check_lowered(g, data.draw)


@settings(max_examples=examples(60), deadline=None)
@given(st.data(), st.integers(1, 2), st.sampled_from([1, 2, 3]), st.integers(1, 3),
       st.integers(1, 4), st.integers(4, 12), st.sampled_from([1, 3]), st.integers(1, 2),
       st.integers(0, 2), st.integers(1, 2), st.booleans())
def test_conv(data, n, groups, cin_g, cout_g, hw, kernel, stride, pad, dilation, bias):
    b = builder()
    x = b.input("x", [n, groups * cin_g, hw, hw + 1])
    w = b.weight("w", [groups * cout_g, cin_g, kernel, kernel])
    operands = [x, w] + ([b.weight("b", [groups * cout_g])] if bias else [])
    try:
        y = b.conv(*operands, strides=[stride, stride], pads=[pad, pad + 1, pad, 0],
                   dilations=[dilation, dilation], group=groups)
    except ShapeError:
        assume(False)  # the window does not fit: not a legal conv
    check_lowered(b.build(y), data.draw)


@settings(max_examples=examples(40), deadline=None)
@given(st.data(), st.sampled_from(["MaxPool", "AveragePool"]), st.integers(4, 10),
       st.sampled_from([2, 3]), st.integers(1, 2), st.integers(0, 1), st.booleans())
def test_pooling(data, kind, hw, kernel, stride, pad, count_include_pad):
    b = builder()
    x = b.input("x", [1, 3, hw, hw])
    attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    if kind == "AveragePool":
        attrs["count_include_pad"] = int(count_include_pad)
    check_lowered(b.build(b.op(kind, x, **attrs)), data.draw)


@settings(max_examples=examples(40), deadline=None)
@given(st.data(), st.sampled_from(["ReduceSum", "ReduceMax", "ReduceMean"]),
       st.lists(st.integers(1, 9), min_size=2, max_size=3), st.integers(0, 1), st.data())
def test_reduction(data, kind, shape, keepdims, axes_data):
    b = builder()
    x = b.input("x", shape)
    axes = sorted(axes_data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    check_lowered(b.build(b.op(kind, x, np.array(axes, np.int64), keepdims=keepdims)),
                  data.draw)


@settings(max_examples=examples(40), deadline=None)
@given(st.data(), st.lists(st.integers(1, 9), min_size=1, max_size=3),
       st.sampled_from(["Add", "Mul", "Sub", "Max"]))
def test_elementwise_broadcast(data, shape, kind):
    b = builder()
    x = b.input("x", shape)
    y = b.input("y", [1] * (len(shape) - 1) + [shape[-1]])
    check_lowered(b.build(b.relu(b.op(kind, x, y))), data.draw)


def fused(build):
    b = builder()
    g = b.build(build(b))
    PassManager("simplify,fuse,dce").run(g)
    return g


@settings(max_examples=examples(40), deadline=None)
@given(st.data(), st.integers(1, 20), st.integers(1, 20), st.integers(1, 20))
def test_fused_matmul_bias_gelu(data, m, n, k):
    def build(b):
        x = b.input("x", [m, k])
        h = b.add(b.matmul(x, b.weight("w", [k, n])), b.weight("b", [n]))
        return b.mul(b.mul(h, 0.5), b.add(b.erf(b.div(h, 1.4142135)), 1.0))
    g = fused(build)
    assert [op.type for op in g.ops] == ["fused.matmul"]
    check_lowered(g, data.draw)


@settings(max_examples=examples(30), deadline=None)
@given(st.data(), st.integers(1, 6), st.integers(3, 9), st.integers(0, 1))
def test_fused_conv_bias_relu(data, c, hw, pad):
    def build(b):
        x = b.input("x", [1, c, hw, hw])
        y = b.conv(x, b.weight("w", [c + 1, c, 3, 3]), pads=[pad] * 4)
        return b.relu(b.add(y, b.weight("b", [1, c + 1, 1, 1])))
    g = fused(build)
    assert [op.type for op in g.ops] == ["fused.conv"]
    check_lowered(g, data.draw)


@settings(max_examples=examples(30), deadline=None)
@given(st.data(), st.integers(1, 6), st.integers(2, 24))
def test_fused_softmax_and_layernorm(data, rows, cols):
    def build(b):
        x = b.input("x", [rows, cols])
        mean = b.reduce_mean(x, np.array([-1], np.int64), keepdims=1)
        d = b.sub(x, mean)
        var = b.reduce_mean(b.mul(d, d), np.array([-1], np.int64), keepdims=1)
        ln = b.div(d, b.sqrt(b.add(var, 1e-5)))
        return b.softmax(b.add(ln, b.weight("b", [cols])), axis=-1)
    g = fused(build)
    check_lowered(g, data.draw)


def test_matmul_traffic_closed_form():
    """One level, order (m, n, k): A is reloaded for every n tile, B for every m tile, the
    result is written once: M*K*ceil(N/tn) + K*N*ceil(M/tm) + M*N elements."""
    M, N, K, tm, tn, tk = 40, 24, 36, 16, 8, 12
    b = builder()
    g = b.build(b.matmul(b.input("x", [M, K]), b.weight("w", [K, N])))
    op = g.ops[0]
    kd = kernel_domain(op)
    ks = lower_kernel(op, kd, [LevelTiling("L1", (tm, tn, tk), (0, 1, 2))], [LEVELS[2]])
    closed = statement_traffic(kd, ks, [(M, K), (K, N)], (M, N), (M, N))
    by_buffer = {}
    for i, (s, _) in enumerate(ks.statements()):
        if isinstance(s, (Load, Store)):
            by_buffer[s.buffer] = by_buffer.get(s.buffer, 0) + closed[i]
    assert by_buffer["a0.L1"] == M * K * math.ceil(N / tn)
    assert by_buffer["a1.L1"] == K * N * math.ceil(M / tm)
    assert by_buffer["acc.L1"] == M * N


def test_untileable_kernel_reason():
    b = builder()
    x = b.input("x", [4, 6])
    g = b.build(b.reshape(x, [6, 4]))
    from passes.lowering import lower_op
    ks = lower_op(g.ops[0], Target("t", (LEVELS[2], DRAM)))
    assert ks.untiled


def test_kernel_too_big_for_scratchpad_names_it():
    from passes.lowering import lower
    from tensorir.errors import PassError
    b = builder()
    x = b.input("x", [4, 4096])
    g = b.build(b.softmax(x, axis=-1))  # a whole row must fit: 16 KiB > 4 KiB
    with pytest.raises(PassError, match="does not fit target"):
        lower(g, Target("t", (LEVELS[2], DRAM)))


def attention_graph(seq, heads, head_dim, masked=True):
    """BERT's self-attention as exported: split heads with Reshape + Transpose, scaled scores,
    an additive mask, softmax, weighted values, heads merged back."""
    b = builder()
    width = heads * head_dim
    q, k, v = (b.input(n, [1, seq, width]) for n in "qkv")
    split = np.array([1, seq, heads, head_dim], np.int64)
    qh = b.transpose(b.reshape(q, split), perm=[0, 2, 1, 3])
    kh = b.transpose(b.reshape(k, split), perm=[0, 2, 3, 1])
    vh = b.transpose(b.reshape(v, split), perm=[0, 2, 1, 3])
    scores = b.matmul(b.mul(qh, np.float32(head_dim ** -0.25)),
                      b.mul(kh, np.float32(head_dim ** -0.25)))
    if masked:
        scores = b.add(scores, b.input("mask", [1, 1, seq, seq]))
    context = b.matmul(b.softmax(scores, axis=-1), vh)
    merged = b.reshape(b.transpose(context, perm=[0, 2, 1, 3]),
                       np.array([1, seq, width], np.int64))
    g = b.build(merged)
    PassManager("simplify,fuse,dce").run(g)
    return g


@settings(max_examples=examples(30), deadline=None)
@given(st.data(), st.integers(1, 12), st.integers(1, 3), st.integers(1, 8), st.booleans())
def test_fused_attention(data, seq, heads, head_dim, masked):
    g = attention_graph(seq, heads, head_dim, masked)
    assert [op.type for op in g.ops] == ["fused.attention"]
    kd = kernel_domain(g.ops[0])
    # tiles over batch, query positions and heads, and may split the scores' head-dim
    # reduction; keys, values and the output's head dim stay whole
    splittable = {d for d in range(len(kd.dims)) if d not in kd.whole}
    assert splittable <= {0, 1, 2} | set(kd.split_reductions())
    check_lowered(g, data.draw)
