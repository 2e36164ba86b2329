import numpy as np
import pytest
from dag_strategies import dag_feeds, random_dags
from hypothesis import given, settings

from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager
from passes.fold_constants import FoldConstants
from tensorir import DType, Graph, TensorType, interpret, verify

F32 = DType.float32


def run(g: Graph, **options):
    result = FoldConstants(**options)(g)
    verify(g)
    return {k: v for k, v in result.stats.items() if v}


def test_a_chain_of_constant_ops_folds_in_one_sweep_into_named_constants():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3), F32))
    a = g.add_constant("a", np.arange(6, dtype=np.float32).reshape(2, 3))
    b = g.add_constant("b", np.full(3, 0.5, np.float32))
    s = g.add_op("Add", [a, b], name="s").result
    t = g.add_op("Mul", [s, s], name="t").result
    y = g.add_op("Sub", [x, t], name="y").result
    g.set_outputs([y, t])
    result = run_and_compare(FoldConstants(), g, {"x": np.ones((2, 3), np.float32)})
    assert {k: v for k, v in result.stats.items() if v} == {"folded": 2}
    assert [o.type for o in g.ops] == ["Sub"]
    folded = g.value("t")  # named after the op's result, which was a graph output
    assert folded.is_constant and [v.name for v in g.outputs] == ["y", "t"]
    np.testing.assert_array_equal(folded.data, (np.arange(6).reshape(2, 3) + 0.5) ** 2)


def test_shape_and_size_of_a_static_value_fold_without_its_data():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 5), F32))
    shape = g.add_op("Shape", [x]).result
    size = g.add_op("Size", [x]).result
    g.set_outputs([shape, size])
    assert run(g) == {"folded": 2}
    assert len(g) == 0
    out = interpret(g, {"x": np.zeros((2, 5), np.float32)})
    np.testing.assert_array_equal(out["shape"], [2, 5])
    assert int(out["size"]) == 10


def test_a_result_over_the_limit_is_not_computed_and_is_counted():
    g = Graph("t")
    a = g.add_constant("a", np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32))
    y = g.add_op("MatMul", [a, a], name="mm").result
    g.set_outputs([y])
    before = interpret(g, {})["mm"]
    assert run(g, max_elements=63) == {"skipped_too_large": 1}
    assert len(g) == 1
    assert run(g, max_elements=64) == {"folded": 1}
    np.testing.assert_array_equal(interpret(g, {})["mm"], before)


def test_stripped_weights_fold_elementwise_without_being_materialised():
    # zero-stride broadcasts of one value, as weight-stripped models load: 2**40 elements,
    # which no evaluation could materialise
    g = Graph("t")
    huge = (1 << 20, 1 << 20)
    w = g.add_constant("w", np.broadcast_to(np.float32(0.02), huge))
    k = g.add_constant("k", np.broadcast_to(np.float32(3.0), (1, 1 << 20)))
    y = g.add_op("Mul", [w, k], name="y").result
    z = g.add_op("Reshape", [y, g.add_constant("s", np.array([-1], np.int64))], name="z").result
    g.set_outputs([z])
    assert run(g, max_elements=16) == {"folded_no_copy": 2}
    data = g.value("z").data
    assert data.shape == (1 << 40,) and data.strides == (0,)
    assert float(data[12345]) == pytest.approx(0.06)


def test_rank_0_constants_fold_through_the_one_element_path():
    g = Graph("t")
    a = g.add_constant("a", np.array(2.0, np.float32))
    b = g.add_constant("b", np.array(-3.0, np.float32))
    g.set_outputs([g.add_op("Mul", [a, b], name="y").result])
    assert run(g) == {"folded_no_copy": 1}
    assert g.value("y").data.shape == () and float(g.value("y").data) == -6.0


def test_reshape_of_a_large_contiguous_constant_is_a_view_of_its_data():
    g = Graph("t")
    w = g.add_constant("w", np.arange(100_000, dtype=np.float32).reshape(1, 1, 1000, 100))
    y = g.add_op("Reshape", [w, g.add_constant("s", np.array([1000, 100], np.int64))],
                 name="y").result
    g.set_outputs([y])
    assert run(g, max_elements=10) == {"folded_no_copy": 1}
    assert np.shares_memory(g.value("y").data, w.data)
    # a non-contiguous one would need a copy: the limit applies
    h = Graph("h")
    wt = h.add_constant("wt", np.arange(20_000, dtype=np.float32).reshape(100, 200).T)
    h.set_outputs([h.add_op("Reshape", [wt, h.add_constant("s", np.array([-1], np.int64))],
                            name="y").result])
    assert run(h, max_elements=10) == {"skipped_too_large": 1}


def test_constants_without_data_and_failing_evaluations_are_skipped():
    g = Graph("t")
    stripped = g.add_constant("w", type=TensorType((3,), F32), digest="0123456789ab")
    y = g.add_op("Relu", [stripped]).result
    d = g.add_constant("d", np.arange(3, dtype=np.float32))
    bad = g.add_op("Gather", [d, g.add_constant("i", np.array([5], np.int64))]).result
    g.set_outputs([y, bad])
    assert run(g) == {"skipped_no_data": 1, "skipped_error": 1}
    assert [o.type for o in g.ops] == ["Relu", "Gather"]


def test_multi_result_ops_fold_every_used_result():
    g = Graph("t")
    a = g.add_constant("a", np.arange(8, dtype=np.float32))
    lo, hi = g.add_op("Split", [a], {"axis": 0, "num_outputs": 2}, name="split").results
    g.set_outputs([hi])
    name = hi.name
    assert run(g) == {"folded": 1}
    assert len(g) == 0 and g.outputs[0].name == name and g.outputs[0].is_constant
    np.testing.assert_array_equal(interpret(g, {})[name], [4, 5, 6, 7])


@settings(max_examples=examples(60))
@given(random_dags(), random_dags())
def test_folding_keeps_every_output_and_the_graph_verifies(g, h):
    for graph, limit in ((g, 65536), (h, 4)):
        # output names are kept; NaNs compare equal (assert_allclose's equal_nan)
        result = run_and_compare(PassManager(f"fold-constants{{max-elements={limit}}}"),
                                 graph, dag_feeds(graph), rtol=1e-6)
        for o in result.graph.ops:  # what is left reads a run-time value or is too large
            assert (not all(v.is_constant for v in o.operands if v is not None)
                    or sum(r.type.numel for r in o.results) > limit), o
