import itertools
import logging

import numpy as np
from dag_strategies import dag_feeds, random_dags
from hypothesis import given, settings

import passes.cse as cse_module
from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager
from passes.cse import CommonSubexpressionElimination
from tensorir import DType, Graph, TensorType, interpret, verify
from tensorir.ops.registry import get_op_def

F32 = DType.float32


def run(g: Graph) -> dict[str, int]:
    result = CommonSubexpressionElimination()(g)
    verify(g)
    return {k: v for k, v in result.stats.items() if v}


def run_keeping_outputs(g: Graph, feeds) -> dict[str, int]:
    """Run the pass; the outputs, by name, are bit for bit what they were."""
    result = run_and_compare(CommonSubexpressionElimination(), g, feeds)
    return {k: v for k, v in result.stats.items() if v}


def two_inputs():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3), F32))
    y = g.add_input("y", TensorType((2, 3), F32))
    return g, x, y


FEEDS = {"x": np.arange(6, dtype=np.float32).reshape(2, 3),
         "y": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}


def test_equal_ops_merge_and_their_users_merge_in_the_same_sweep():
    g, x, y = two_inputs()
    a1 = g.add_op("Add", [x, y]).result
    a2 = g.add_op("Add", [y, x]).result  # commutative: operand order ignored
    r1 = g.add_op("Relu", [a1]).result
    r2 = g.add_op("Relu", [a2]).result
    s1 = g.add_op("Sub", [x, y]).result
    s2 = g.add_op("Sub", [y, x]).result  # not commutative: stays
    g.set_outputs([g.add_op("Sum", [r1, r2, s1, s2]).result])
    assert run_keeping_outputs(g, FEEDS) == {"ops_merged": 2}
    types = [o.type for o in g.ops]
    assert types.count("Add") == 1 and types.count("Relu") == 1 and types.count("Sub") == 2


def test_different_attributes_are_counted_and_logged(caplog):
    g, x, _ = two_inputs()
    outs = [g.add_op("LeakyRelu", [x], {"alpha": a}).result for a in (0.1, 0.2, 0.1)]
    outs.append(g.add_op("Transpose", [x], {"perm": [1, 0]}).result)
    g.set_outputs([g.add_op("Concat", outs[:3], {"axis": 0}).result, outs[3]])
    with caplog.at_level(logging.DEBUG, logger="passes.cse"):
        before = interpret(g, FEEDS)
        assert run(g) == {"ops_merged": 1, "skipped_different_attributes": 1}
    assert "attributes differ" in caplog.text
    np.testing.assert_array_equal(interpret(g, FEEDS)["concat"], before["concat"])


def test_identical_constants_merge_by_dtype_shape_and_bytes():
    g, x, _ = two_inputs()
    data = np.arange(3, dtype=np.float32)
    c1 = g.add_constant("c1", data)
    c2 = g.add_constant("c2", data.copy())
    c3 = g.add_constant("c3", data.astype(np.float64).astype(np.float32).reshape(1, 3))  # shape
    c4 = g.add_constant("c4", np.array([0.0, 1.0, -0.0], np.float32) + np.float32([0, 0, 2]))
    c5 = g.add_constant("c5", np.array([0.0, 1.0, 2.0], np.float16))  # dtype
    outs = [g.add_op("Add", [x, c]).result for c in (c1, c2, c3, c4)]
    outs.append(g.add_op("Cast", [c5], {"to": 1}).result)
    g.set_outputs([g.add_op("Sum", outs).result])
    before = interpret(g, FEEDS)
    # c1 = c2 = c4 bytewise; then Add(x, c1) appears three times
    assert run(g) == {"constants_merged": 2, "ops_merged": 2}
    assert {c.name for c in g.constants} == {"c1", "c3", "c5"}
    np.testing.assert_array_equal(interpret(g, FEEDS)["sum"], before["sum"])


def test_zero_sign_and_nan_payloads_are_different_bytes():
    g, x, _ = two_inputs()
    c1 = g.add_constant("c1", np.array([0.0], np.float32))
    c2 = g.add_constant("c2", np.array([-0.0], np.float32))
    g.set_outputs([g.add_op("Mul", [x, c1]).result, g.add_op("Mul", [x, c2]).result])
    assert run(g) == {}


def test_large_constants_equal_where_sampled_but_not_elsewhere_stay_apart():
    """The key samples a few elements; the full byte comparison decides."""
    g, x, _ = two_inputs()
    base = np.arange(3 * 1000, dtype=np.float32).reshape(1000, 3)
    changed = base.copy()
    changed[1, 1] = -1.0  # not a sampled position
    signed = base.copy()
    signed[0, 0] = -0.0  # sampled, and == 0.0: only the bytes tell them apart
    same = base.copy()
    consts = [g.add_constant(f"c{i}", d) for i, d in enumerate((base, changed, same, signed))]
    outs = [g.add_op("ReduceSum", [c], {"keepdims": 0}).result for c in consts]
    g.set_outputs(outs)
    assert cse_module._constant_key(consts[0]) == cse_module._constant_key(consts[1])
    assert run(g) == {"constants_merged": 1, "skipped_graph_outputs": 1}  # c0, c2 outputs
    assert [c.name for c in g.constants] == ["c0", "c1", "c3"]


def test_stripped_weights_merge_without_being_materialised():
    # 2**40 elements each: comparing them element by element, or hashing their bytes, would fail
    g = Graph("t")
    huge = (1 << 20, 1 << 20)
    a = g.add_constant("a", np.broadcast_to(np.float32(0.02), huge))
    b = g.add_constant("b", np.broadcast_to(np.float32(0.02), huge))
    c = g.add_constant("c", np.broadcast_to(np.float32(0.03), huge))
    shapes = [g.add_op("Shape", [v]).result for v in (a, b, c)]
    g.set_outputs([g.add_op("Concat", shapes, {"axis": 0}).result])
    assert run(g) == {"constants_merged": 1, "ops_merged": 1}
    assert {v.name for v in g.constants} == {"a", "c"}


def test_a_merged_graph_output_keeps_its_name_unless_both_are_outputs():
    g, x, y = two_inputs()
    m1 = g.add_op("Mul", [x, y], name="m1").result
    m2 = g.add_op("Mul", [x, y], name="m2").result
    g.set_outputs([g.add_op("Neg", [m1]).result, m2])
    assert run_keeping_outputs(g, FEEDS) == {"ops_merged": 1}
    assert [v.name for v in g.outputs] == ["neg", "m2"] and len(g) == 2
    assert g.outputs[1] is g.ops[0].result  # the kept Mul took the output's name

    h, x, y = two_inputs()
    h.set_outputs([h.add_op("Mul", [x, y], name="p").result,
                   h.add_op("Mul", [x, y], name="q").result])
    assert run(h) == {"skipped_graph_outputs": 1}
    assert [v.name for v in h.outputs] == ["p", "q"]


def test_constants_without_data_are_counted_not_merged():
    g, x, _ = two_inputs()
    t = TensorType((3,), F32)
    c1 = g.add_constant("c1", type=t, digest="0123456789ab")
    c2 = g.add_constant("c2", type=t, digest="0123456789ab")
    g.set_outputs([g.add_op("Add", [x, c]).result for c in (c1, c2)])
    assert run(g) == {"constants_skipped_no_data": 2}


def test_cse_hashes_one_lookup_per_op_not_pairwise(monkeypatch):
    # 700 Transposes of one value differing only in perm, and 2000 equal Relus: comparing
    # candidates pairwise would confirm attributes ~250,000 times
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 2, 2, 2, 2, 2), F32))
    perms = list(itertools.permutations(range(6)))
    outs = [g.add_op("Transpose", [x], {"perm": list(p)}).result for p in perms]
    relus = [g.add_op("Relu", [x]).result for _ in range(2000)]
    g.set_outputs([*outs, g.add_op("Sum", relus).result])
    calls = []
    original = cse_module.attrs_equal
    monkeypatch.setattr(cse_module, "attrs_equal",
                        lambda a, b: calls.append(1) or original(a, b))
    assert run(g) == {"ops_merged": 1999, "skipped_different_attributes": len(perms) - 1}
    assert len(calls) == 1999  # one confirmation per merge, none for the distinct Transposes


@settings(max_examples=examples(60))
@given(random_dags())
def test_cse_keeps_every_output_and_the_graph_verifies(g):
    result = run_and_compare(PassManager("cse"), g, dag_feeds(g))
    # what stays duplicated is only ops whose results are all graph outputs (but one)
    groups: dict[tuple, list] = {}
    for o in result.graph.ops:
        operands = tuple(map(id, o.operands))
        if get_op_def(o.type).commutative:
            operands = tuple(sorted(operands))
        groups.setdefault((o.type, operands, repr(sorted(o.attrs.items()))), []).append(o)
    outs = {id(v) for v in result.graph.outputs}
    for ops in groups.values():
        assert sum(all(id(r) in outs for r in o.results) for o in ops) >= len(ops) - 1
