import networkx as nx
import numpy as np
import pytest

from tensorir import DType, Graph, GraphError, TensorType, interpret, structurally_equal, verify

F32 = DType.float32


def small_graph():
    g = Graph("g")
    x = g.add_input("x", TensorType((2, 3), F32))
    c = g.add_constant("c", np.ones(3, np.float32))
    a = g.add_op("Add", [x, c], name="add").result
    m = g.add_op("Mul", [a, a], name="square").result
    r = g.add_op("Relu", [m], name="relu").result
    g.set_outputs([r])
    return g, x, c, a, m, r


def test_one_edge_per_operand_slot():
    g, x, c, a, m, r = small_graph()
    square = m.producer
    assert g.nx.number_of_edges(a, square) == 2  # Mul(a, a) is two edges
    assert g.users(a) == [(square, 0), (square, 1)]
    assert g.producer(m) is square
    verify(g)


def test_replace_all_uses_keeps_networkx_and_operands_in_step():
    g, x, c, a, m, r = small_graph()
    b = g.add_op("Sub", [x, c], name="sub").result
    n = g.replace_all_uses_with(a, b)
    assert n == 2
    assert m.producer.operands == [b, b]
    assert g.nx.number_of_edges(b, m.producer) == 2 and g.nx.out_degree(a) == 0
    g.remove_op(a.producer)
    assert not g.has_value("add")
    verify(g)
    assert [op.type for op in g.ops] == ["Sub", "Mul", "Relu"]


def test_remove_used_op_is_refused_with_reason():
    g, x, c, a, m, r = small_graph()
    with pytest.raises(GraphError, match="still used by Mul 'square'"):
        g.remove_op(a.producer)


def test_replace_that_would_create_a_cycle_is_refused():
    g, x, c, a, m, r = small_graph()
    z = g.add_op("Relu", [a], name="z").result  # z depends on a
    with pytest.raises(GraphError, match="cycle"):
        g.replace_all_uses_with(a, z)


def test_topological_order_is_deterministic_and_valid():
    g = Graph("order")
    x = g.add_input("x", TensorType((4,), F32))
    outs = [g.add_op("Relu", [x], name=f"r{i}").result for i in range(5)]
    total = outs[0]
    for o in outs[1:]:
        total = g.add_op("Add", [total, o]).result
    g.set_outputs([total])
    names = [op.name for op in g.ops]
    assert names[:5] == [f"r{i}" for i in range(5)]  # insertion order breaks ties
    position = {op: i for i, op in enumerate(g.ops)}
    for op in g.ops:
        for v in op.operands:
            if v.producer is not None:
                assert position[v.producer] < position[op]
    assert nx.is_directed_acyclic_graph(g.nx)


def test_copy_is_structurally_equal_and_independent():
    g, *_ = small_graph()
    h = g.copy()
    assert structurally_equal(g, h)
    h.set_outputs([h.value("square")])
    h.remove_op(h.value("relu").producer)
    assert len(h) == 2 and len(g) == 3
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    np.testing.assert_array_equal(interpret(g, feeds)["relu"], interpret(h, feeds)["square"])


def test_topological_order_equals_networkx_lexicographical_sort_after_rewiring():
    """The ops' own sort gives networkx's order over the bipartite graph, value nodes
    included: here a value created late makes its older user wait."""
    g = Graph("rewired")
    x = g.add_input("x", TensorType((4,), F32))
    a = g.add_op("Relu", [x], name="a").result
    user = g.add_op("Neg", [a], name="user").result
    b = g.add_op("Abs", [x], name="b").result
    late = g.add_op("Exp", [x], name="late").result  # created after user, then read by it
    g.set_operand(user.producer, 0, late)
    g.set_outputs([g.add_op("Sum", [user, b, a]).result])
    expected = [n for n in nx.lexicographical_topological_sort(g.nx, key=g._seq.__getitem__)
                if not hasattr(n, "kind")]
    assert g.ops == expected
    assert [op.name for op in g.ops][:4] == ["a", "b", "late", "user"]


def test_copy_keeps_the_order_and_layout_of_a_subgraph_copy():
    g, x, c, a, m, r = small_graph()
    g.set_operand(m.producer, 1, g.add_op("Abs", [a], name="abs").result)  # not in seq order
    fast, slow = g.copy(), g.subgraph(g.ops, name=g.name, keep_interface=True)
    assert str(fast) == str(slow)
    assert [v.name for v in fast.values()] == [v.name for v in slow.values()]
    assert list(fast._seq.values()) == list(slow._seq.values())
    fast._topo = None  # the order carried over is the one a sort gives
    assert [o.name for o in fast.ops] == [o.name for o in slow.ops]
    verify(fast)


def test_snapshot_restores_what_copy_gave_whatever_happens_after():
    g, x, c, a, m, r = small_graph()
    before, snapshot = str(g.copy()), g.snapshot()
    square = m.producer
    g.set_operand(square, 1, c)
    g.rename_value(a, "renamed")
    square.attrs["note"] = 1
    g.set_outputs([m])
    g.remove_op(r.producer)
    assert str(snapshot.restore()) == before


def test_ops_added_since_a_mark_are_the_new_ones_still_there():
    g, x, c, a, m, r = small_graph()
    mark = g.mark()
    first = g.add_op("Abs", [x])
    second = g.add_op("Neg", [first.result])
    g.add_constant("k", np.zeros(2, np.float32))
    g.remove_op(second)
    assert g.ops_added_since(mark) == [first]


def test_subgraph_turns_external_values_into_inputs():
    g, x, c, a, m, r = small_graph()
    sub = g.subgraph([m.producer, r.producer])
    assert [v.name for v in sub.inputs] == ["add"]
    assert [v.name for v in sub.outputs] == ["relu"]
    verify(sub)
    # a subgraph with an internal value used outside exposes it as an output
    sub2 = g.subgraph([a.producer])
    assert [v.name for v in sub2.outputs] == ["add"] and sub2.constants[0].name == "c"


def test_bind_resolves_symbols_everywhere():
    g = Graph("sym")
    x = g.add_input("x", TensorType(("batch", 3), F32))
    y = g.add_op("Relu", [x]).result
    g.set_outputs([y])
    assert g.symbols == {"batch"}
    h = g.bind({"batch": 4})
    assert h.symbols == set() and h.outputs[0].type.shape == (4, 3)


def test_names_must_be_unique_and_values_must_belong():
    g, x, *_ = small_graph()
    with pytest.raises(GraphError, match="already has a value named %x"):
        g.add_input("x", TensorType((1,), F32))
    other = Graph("other")
    y = other.add_input("y", TensorType((2, 3), F32))
    with pytest.raises(GraphError, match="not a value of graph 'g'"):
        g.add_op("Relu", [y])


def test_replace_op_keeps_graph_output_names_stable():
    g, x, c, a, m, r = small_graph()
    clip = g.add_op("Neg", [m], name="neg")
    g.replace_op(r.producer, clip.results)
    assert [v.name for v in g.outputs] == ["relu"] and g.outputs[0].producer is clip
    verify(g)
    # a replacement that is not an op result (here a graph input) keeps its own name
    h = Graph("h")
    xin = h.add_input("x", TensorType((2,), F32))
    h.set_outputs([h.add_op("Relu", [xin], name="r").result])
    h.replace_op(h.ops[0], [xin])
    assert [v.name for v in h.outputs] == ["x"] and len(h) == 0


def test_replacing_an_output_moves_its_name_to_the_replacement():
    g, x, c, a, m, r = small_graph()
    neg = g.add_op("Neg", [m], name="neg").result
    g.replace_all_uses_with(r, neg)
    assert g.outputs == [neg] and neg.name == "relu" and r.name.startswith("relu__replaced")
    keep = g.add_op("Abs", [m], name="abs").result
    g.replace_all_uses_with(a, a)  # a no-op replacement changes nothing
    g.replace_all_uses_with(keep, g.add_op("Exp", [m], name="exp").result, take_name=True)
    assert g.value("abs").producer.type == "Exp"
    verify(g)


def test_inline_undoes_fuse():
    """Fusing ops into a fused op and inlining it back gives the same ops and results."""
    from frontends.python import GraphBuilder
    from tensorir.interpreter import Interpreter
    b = GraphBuilder("f", seed=0)
    x = b.input("x", [4, 8])
    g = b.build(b.relu(b.add(b.matmul(x, b.weight("w", [8, 3])), b.weight("b", [3]))))
    feed = {"x": np.arange(32, dtype=np.float32).reshape(4, 8) / 10}
    want = Interpreter(g).run(feed)
    before = [op.type for op in g.ops]
    fused = g.fuse(list(g.ops), "fused.matmul")
    assert [op.type for op in g.ops] == ["fused.matmul"]
    added = g.inline(fused)
    assert [op.type for op in added] == before == [op.type for op in g.ops]
    got = Interpreter(g).run(feed)
    assert list(got) == list(want)
    assert all(np.array_equal(got[k], want[k]) for k in want)
