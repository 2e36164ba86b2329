import numpy as np
import pytest
from dag_strategies import dag_feeds, random_dags
from hypothesis import given, settings

from hypothesis_budget import examples
from pass_harness import run_and_compare
from passes import PassManager
from passes.simplify import RULES, Simplify
from tensorir import DType, Graph, TensorType

F32 = DType.float32
X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)


def i64(*values):
    return np.array(values, np.int64)


def simplify(g: Graph, feeds=None) -> dict[str, int]:
    """Run simplify; the outputs, by name, are bit for bit what they were."""
    feeds = {"x": X} if feeds is None else feeds
    result = run_and_compare(Simplify(), g, feeds)
    return {k: v for k, v in result.stats.items() if v}


def graph_of(build, shape=(2, 3, 4)):
    """A graph computing Relu(build(g, x)): the rewritten op is not a graph output."""
    g = Graph("t")
    x = g.add_input("x", TensorType(shape, F32))
    g.set_outputs([g.add_op("Relu", [build(g, x)], name="out").result])
    return g


def c(g, data, dtype=np.float32):
    return g.add_constant(g.unique_name("c"), np.asarray(data, dtype))


def transpose(g, x, perm=None):
    return g.add_op("Transpose", [x], {"perm": perm}).result


def reshape(g, x, spec):
    return g.add_op("Reshape", [x, c(g, spec, np.int64)]).result


FIRES = {
    "identity": lambda g, x: g.add_op("Identity", [x]).result,
    "dropout": lambda g, x: g.add_op("Dropout", [x, c(g, 0.3)]).result,
    "cast-noop": lambda g, x: g.add_op("Cast", [x], {"to": 1}).result,
    "castlike-noop": lambda g, x: g.add_op("CastLike", [x, c(g, [2.5])]).result,
    "reshape-noop": lambda g, x: reshape(g, x, [0, 3, -1]),
    "flatten-noop": lambda g, x: g.add_op("Flatten", [reshape(g, x, [6, 4])]).result,
    "squeeze-noop": lambda g, x: g.add_op("Squeeze", [x]).result,
    "unsqueeze-noop": lambda g, x: g.add_op("Unsqueeze", [x, c(g, [], np.int64)]).result,
    "expand-noop": lambda g, x: g.add_op("Expand", [x, c(g, [3, 1], np.int64)]).result,
    "transpose-identity": lambda g, x: transpose(g, x, [0, 1, 2]),
    "transpose-pair-cancels": lambda g, x: transpose(g, transpose(g, x, [1, 2, 0]), [2, 0, 1]),
    "mul-one": lambda g, x: g.add_op("Mul", [c(g, np.ones((3, 1))), x]).result,
    "add-zero": lambda g, x: g.add_op("Add", [x, c(g, [0.0, -0.0, 0.0, 0.0])]).result,
    "sub-zero": lambda g, x: g.add_op(
        "Sub", [x, c(g, np.broadcast_to(np.float32(0), (1, 3, 4)))]).result,
    "div-one": lambda g, x: g.add_op("Div", [x, c(g, 1.0)]).result,
}


@pytest.mark.parametrize("rule", sorted(FIRES))
def test_each_forwarding_rule_removes_its_op(rule):
    g = graph_of(FIRES[rule])
    n = len(g)
    assert simplify(g) == {rule: 1}
    removed = 2 if rule == "transpose-pair-cancels" else 1
    assert len(g) == n - removed
    assert g.ops[-1].operands[0] is (g.inputs[0] if rule != "flatten-noop" else g.ops[0].result)


def test_every_rule_has_a_test_and_states_its_identity():
    tested = set(FIRES) | {"dropout-mask", "transpose-pair-composes", "reshape-pair"}
    assert {r.name for r in RULES} == tested
    assert all("->" in r.doc for r in RULES)


REFUSALS = {
    "reshape-noop": (lambda g, x: reshape(g, x, [6, 4]), "changes f32[2, 3, 4] to f32[6, 4]"),
    "transpose-identity": (lambda g, x: transpose(g, x, [0, 2, 1]),
                           "perm [0, 2, 1] is not the identity"),
    "mul-one": (lambda g, x: g.add_op("Mul", [x, c(g, [1.0, 1.0, 2.0, 1.0])]).result,
                "is not all 1"),
    "add-zero": (lambda g, x: g.add_op("Add", [x, c(g, np.zeros((2, 2, 3, 4)))]).result,
                 "changes f32[2, 3, 4] to f32[2, 2, 3, 4]"),
    "sub-zero": (lambda g, x: g.add_op("Sub", [c(g, 0.0), x]).result, "%x is not a constant"),
    "cast-noop": (lambda g, x: g.add_op("Cast", [x], {"to": 11}).result,
                  "changes f32[2, 3, 4] to f64[2, 3, 4]"),
    "castlike-noop": (lambda g, x: g.add_op("CastLike", [x, c(g, [1], np.int64)]).result,
                      "changes f32[2, 3, 4] to i64[2, 3, 4]"),
    "expand-noop": (lambda g, x: g.add_op("Expand", [x, c(g, [2, 1, 1, 1], np.int64)]).result,
                    "changes f32[2, 3, 4] to f32[2, 2, 3, 4]"),
}


@pytest.mark.parametrize("rule", sorted(REFUSALS))
def test_each_refusal_says_why(rule):
    build, reason = REFUSALS[rule]
    g = graph_of(build)
    root = g.ops[-2]
    entry = next(e for e in Simplify().explain(g, root) if e.rule == rule)
    assert not entry.matched and reason in entry.reason
    assert simplify(g) == {} and len(g) == 2


def test_dropout_in_training_mode_at_run_time_is_kept():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3, 4), F32))
    training = g.add_input("training", TensorType((), DType.bool))
    y = g.add_op("Dropout", [x, c(g, 0.0), training]).result
    z = g.add_op("Dropout", [y, c(g, 0.5), training]).result
    g.set_outputs([z])
    stats = simplify(g, {"x": X, "training": np.array(False)})
    assert stats == {"dropout": 1}  # ratio 0 is the identity whatever the mode
    (entry,) = [e for e in Simplify().explain(g, g.ops[0]) if e.rule == "dropout"]
    assert entry.reason == "training_mode is not a constant false (the dropout may be random)"


def test_dropout_with_its_mask_forwards_x_and_an_all_true_mask():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3, 4), F32))
    y, mask = g.add_op("Dropout", [x], {"num_outputs": 2}).results
    g.set_outputs([g.add_op("Relu", [y]).result, g.add_op("Cast", [mask], {"to": 1}).result])
    assert simplify(g) == {"dropout-mask": 1}
    true = next(o for o in g.ops if o.type == "Cast").operands[0]
    assert true.is_constant and true.data.strides == (0, 0, 0) and true.data.all()


def test_transpose_pairs_compose_into_one():
    g = graph_of(lambda g, x: transpose(g, transpose(g, x, [1, 2, 0]), [1, 0, 2]))
    assert simplify(g) == {"transpose-pair-composes": 1}
    t = g.ops[0]
    assert t.type == "Transpose" and t.attrs["perm"] == (2, 1, 0) and t.operands[0] is g.inputs[0]


def test_transpose_without_perm_reverses_and_two_of_them_cancel():
    g = graph_of(lambda g, x: transpose(g, transpose(g, x)))
    assert simplify(g) == {"transpose-pair-cancels": 1}
    assert [o.type for o in g.ops] == ["Relu"]


def test_reshape_pairs_merge_and_resolve_zeros_against_the_static_shape():
    g = graph_of(lambda g, x: reshape(g, reshape(g, x, [6, 4]), [0, 2, -1]))
    assert simplify(g) == {"reshape-pair": 1}
    merged = g.ops[0]
    assert merged.operands[0] is g.inputs[0]
    assert merged.operands[1].data.tolist() == [6, 2, 2]  # the 0 copied the middle dim 6
    # without 0 entries b itself is kept (a -1 depends only on the element count)
    h = graph_of(lambda g, x: reshape(g, reshape(g, x, [6, 4]), [-1, 8]))
    assert simplify(h) == {"reshape-pair": 1}
    assert h.ops[0].operands[1].data.tolist() == [-1, 8]


def test_reshape_pair_with_a_symbolic_result_and_zero_entries_is_refused():
    g = Graph("t")
    x = g.add_input("x", TensorType(("batch", 6, 4), F32))
    mid = g.add_op("Reshape", [x, c(g, [0, 24], np.int64)]).result
    out = g.add_op("Reshape", [mid, c(g, [0, 2, -1], np.int64)]).result
    g.set_outputs([g.add_op("Relu", [out]).result])
    (entry,) = [e for e in Simplify().explain(g, out.producer) if e.rule == "reshape-pair"]
    assert "copies dims of the middle shape" in entry.reason
    # with -1 only it merges, symbolic or not
    h = Graph("h")
    x = h.add_input("x", TensorType(("batch", 6, 4), F32))
    mid = h.add_op("Reshape", [x, c(h, [-1, 24], np.int64)]).result
    h.set_outputs([h.add_op("Reshape", [mid, c(h, [-1, 4], np.int64)]).result])
    feeds = {"x": np.arange(48, dtype=np.float32).reshape(2, 6, 4)}
    assert simplify(g, feeds) == {}
    assert simplify(h, feeds) == {"reshape-pair": 1} and len(h) == 1


def test_a_graph_output_keeps_its_name_or_the_rule_refuses_and_counts():
    # the op result that takes an output's place takes its name
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3, 4), F32))
    r = g.add_op("Relu", [x], name="r").result
    g.set_outputs([g.add_op("Identity", [r], name="y").result])
    assert simplify(g) == {"identity": 1}
    assert [v.name for v in g.outputs] == ["y"] and g.outputs[0].producer.type == "Relu"
    # a graph input, a constant or another output cannot: refused and counted
    h = Graph("h")
    x = h.add_input("x", TensorType((2, 3, 4), F32))
    k = c(h, np.ones((2, 3, 4)))
    r = h.add_op("Relu", [x], name="r").result
    h.set_outputs([h.add_op("Identity", [x], name="y1").result,
                   h.add_op("Identity", [k], name="y2").result,
                   r, h.add_op("Identity", [r], name="y3").result])
    assert simplify(h) == {"skipped_graph_output": 3}
    assert [v.name for v in h.outputs] == ["y1", "y2", "r", "y3"] and len(h) == 4
    reasons = [e.reason for o in h.ops if o.type == "Identity"
               for e in Simplify().explain(h, o) if e.rule == "identity"]
    assert reasons == [f"%{y} is a graph output and %{v}, {what}, cannot take its name"
                       for y, v, what in (("y1", "x", "a graph input"),
                                          ("y2", k.name, "a constant"),
                                          ("y3", "r", "a graph output"))]


def test_the_pass_reports_per_rule_counts_in_a_pipeline():
    g = graph_of(lambda g, x: g.add_op("Identity", [g.add_op("Identity", [x]).result]).result)
    result = PassManager("simplify,dce").run(g)
    assert result.records[0].stats == {"identity": 2, "skipped_graph_output": 0}
    assert "identity=2" in result.table()


@settings(max_examples=examples(60))
@given(random_dags())
def test_simplify_keeps_every_output_and_the_graph_verifies(g):
    result = run_and_compare(PassManager("simplify"), g, dag_feeds(g))  # names are kept
    outputs = {id(v) for v in result.graph.outputs}
    for o in result.graph.ops:  # what is left of the identities is there for an output's name
        if o.type == "Identity":
            assert id(o.results[0]) in outputs
