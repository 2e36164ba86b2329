import numpy as np
import pytest

from frontends.python import GraphBuilder
from passes import PassManager, register_pass
from passes.rewriter import RewritePass, RewriteRule, apply_rules, const, explain, op, value
from tensorir import PassError, interpret, verify

GEMM = RewriteRule(
    "matmul-add-to-gemm",
    pattern=op("Add", op("MatMul", value("a"), const("b"), name="mm"), const("c"), name="add"),
    check=lambda m: None if m["a"].type.rank == 2 else "A is not 2-D",
    replace=lambda g, m: g.add_op("Gemm", [m["a"], m["b"], m["c"]]).results,
)


def graph(commuted=False, rank=2, extra_use=False):
    b = GraphBuilder("t", seed=0)
    x = b.input("x", [2] * (rank - 2) + [4, 8])
    mm = b.matmul(x, b.weight("w", [8, 3]))
    c = b.weight("c", [3])
    y = b.add(c, mm) if commuted else b.add(mm, c)
    outs = [b.relu(y)] + ([b.neg(mm)] if extra_use else [])
    return b.build(*outs)


@pytest.mark.parametrize("commuted", [False, True])
def test_rule_rewrites_commuted_operands_and_keeps_results(commuted):
    g = graph(commuted)
    xs = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    before = interpret(g, {"x": xs})["relu"]
    assert apply_rules(g, [GEMM]) == {"matmul-add-to-gemm": 1}
    verify(g)
    assert [o.type for o in g.ops] == ["Gemm", "Relu"]
    gemm = g.ops[0]
    assert gemm.name == "add" and gemm.source == ("mat_mul", "add")  # provenance: union
    np.testing.assert_allclose(interpret(g, {"x": xs})["relu"], before, rtol=1e-6)


def test_tracer_says_why_not_and_shows_the_partial_match():
    g = graph(extra_use=True)
    add = next(o for o in g.ops if o.type == "Add")
    (entry,) = explain(g, add, [GEMM])
    assert not entry.matched
    assert entry.reason == "%mat_mul (MatMul 'mat_mul') is used elsewhere (2 uses)"
    assert str(entry).startswith("matmul-add-to-gemm: no: %mat_mul")
    g3 = graph(rank=3)
    add3 = next(o for o in g3.ops if o.type == "Add")
    (entry3,) = explain(g3, add3, [GEMM])
    assert entry3.reason == "A is not 2-D" and not entry3.matched
    assert apply_rules(g3, [GEMM]) == {}  # a refused match changes nothing


def test_a_rule_that_keeps_firing_is_named():
    flip = RewriteRule("flip-add", pattern=op("Add", value("p"), value("q"), name="add"),
                       replace=lambda g, m: g.add_op("Add", [m["q"], m["p"]]).results)
    with pytest.raises(PassError, match="rule 'flip-add' keeps firing"):
        apply_rules(graph(), [flip], max_iterations=5)


def test_a_replacement_that_changes_nothing_is_not_a_match():
    same = RewriteRule("same", pattern=op("Relu", value("x"), name="r"),
                       replace=lambda g, m: m["r"].results)
    assert apply_rules(graph(), [same]) == {}


def test_rewrite_pass_counts_matches_per_rule_in_the_pipeline():
    @register_pass
    class ToGemm(RewritePass):
        name = "test-to-gemm"
        description = "MatMul + Add of constants into Gemm"
        rules = (GEMM,)

    result = PassManager("test-to-gemm").run(graph())
    assert result.records[0].stats == {"matmul-add-to-gemm": 1}
    assert "matmul-add-to-gemm=1" in result.table()
