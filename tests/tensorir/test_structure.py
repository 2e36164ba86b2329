"""Structural keys (tensorir.structure): equal keys mean the same work, whatever the names."""

import attrs
import numpy as np
from hypothesis import given, settings

from frontends.python import GraphBuilder
from passes import PassManager
from passes.lowering import lower
from tensorir import Interpreter
from tensorir.structure import op_key, schedule_key
from tensorir.target import MemoryLevel, Target
from tests.passes.dag_strategies import random_dags
from tests.passes.fusion_strategies import fusable_graphs


def two_layers(second_activation: str = "relu"):
    """Two matmul + bias + activation layers on two inputs (one after the other would fuse
    into one FFN)."""
    b = GraphBuilder("g", seed=0)
    ys = []
    for i, act in enumerate(["relu", second_activation]):
        x = b.input(f"x{i}", [8, 16])
        mm = b.matmul(x, b.weight(f"w{i}", [16, 16]))
        ys.append(getattr(b, act)(b.add(mm, b.weight(f"b{i}", [16]))))
    g = b.build(*ys)
    PassManager("default", verify=False).run(g)
    return g


def test_repeated_fused_layers_have_one_key():
    first, second = two_layers().ops
    assert first.type == second.type == "fused.matmul"
    assert op_key(first) == op_key(second)


def test_a_different_epilogue_is_a_different_key():
    first, second = two_layers("sigmoid").ops
    assert op_key(first) != op_key(second)


def test_attributes_operand_types_and_aliasing_count():
    b = GraphBuilder("g", seed=0)
    x = b.input("x", [1, 4, 8, 8])
    w = b.weight("w", [4, 4, 3, 3])
    same = [b.conv(x, w, pads=[1, 1, 1, 1]), b.conv(x, w, pads=[1, 1, 1, 1])]
    strided = b.conv(x, w, pads=[1, 1, 1, 1], strides=[2, 2])
    square, product = b.mul(x, x), b.mul(x, b.input("z", [1, 4, 8, 8]))
    wider = b.conv(b.input("x2", [1, 4, 8, 9]), w, pads=[1, 1, 1, 1])
    g = b.build(*same, strided, square, product, wider)
    ops = {op.results[0].name: op for op in g.ops}
    keys = [op_key(op) for op in g.ops]
    assert keys[0] == keys[1]                      # same work on the same types
    assert len(set(keys)) == len(keys) - 1         # strides, x*x vs x*z, a wider input
    assert op_key(ops[square.name]) != op_key(ops[product.name])   # aliasing alone


def test_schedule_keys_ignore_value_names_but_not_tiles():
    g = two_layers()
    target = Target("t", (MemoryLevel("L1", 4096), MemoryLevel("DRAM", 1 << 30)))
    lowered = lower(g, target)
    (k1, k2) = lowered.schedule.kernels
    first, second = lowered.ops
    assert k1.result != k2.result
    assert schedule_key(first, k1) == schedule_key(second, k2)
    (t,) = k1.tilings
    other = attrs.evolve(k1, tilings=(attrs.evolve(t, tile=(4,) + tuple(t.tile[1:])),))
    assert t.tile[0] != 4 and schedule_key(first, other) != schedule_key(first, k1)


def _same_results(g, seed: int) -> None:
    """Ops with equal keys compute equal results from the same operand arrays (the first op's
    constants: a Reshape's target shape, a weight; random data for the rest)."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for op in g.ops:
        groups.setdefault(op_key(op), []).append(op)
    run = Interpreter(g).run_op
    for ops in groups.values():
        if len(ops) < 2:
            continue
        args = [None if v is None else v.data if v.data is not None else
                rng.uniform(0.5, 1.5, [int(d) for d in v.type.shape]).astype(v.dtype.numpy)
                for v in ops[0].operands]
        want = run(ops[0], args)
        for other in ops[1:]:
            for a, b in zip(want, run(other, args)):
                np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_equal_keys_compute_equal_results_on_random_graphs(g):
    _same_results(g, 0)


@settings(max_examples=40, deadline=None)
@given(fusable_graphs())
def test_equal_keys_compute_equal_results_on_fused_graphs(g):
    PassManager("default", verify=False).run(g)
    _same_results(g, 1)


def test_kernels_of_one_structure_share_a_domain_with_their_own_body_ops():
    from tensorir import kernel
    g = two_layers()
    kernel._by_structure.clear()
    domains = [kernel.kernel_domain(op) for op in g.ops]
    assert len(kernel._by_structure) == 1            # composed once, for the first
    assert attrs.evolve(domains[0], steps=()) == attrs.evolve(domains[1], steps=())
    for op, kd in zip(g.ops, domains):
        body_ops = op.attrs["body"].ops
        assert all(any(st.op is o for o in body_ops) for st in kd.steps)
