"""The DRAM arena: no two live values share bytes, the bound holds, and a graph run out of one
byte array at the planned offsets computes what the plain interpreter computes."""

import doctest
import functools
import json
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))

import tensorir.arena as arena_module  # noqa: E402
from dag_strategies import dag_feeds, random_dags  # noqa: E402
from frontends.onnx import load  # noqa: E402
from graph_strategies import random_graphs  # noqa: E402
from hypothesis_budget import examples  # noqa: E402
from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights, light_path  # noqa
from passes import PassManager  # noqa: E402
from tensorir import (DType, Graph, GraphError, TensorIRError, TensorType,  # noqa: E402
                      UnboundDimError, VerificationError)
from tensorir.arena import (STRATEGIES, ArenaPlan, check_arena, list_schedule,  # noqa: E402
                            live_bytes, liveness, lower_bound, memory_order, plan_arena,
                            verify_arena)
from tensorir.interpreter import Interpreter, interpret  # noqa: E402
from tensorir.ops.registry import Category, get_op_def  # noqa: E402
from tensorir.ops.view_op import view_of  # noqa: E402

F32 = DType.float32


# ----------------------------------------------------------------------------- oracles
def brute_overlaps(offsets, sizes, starts, ends):
    """Pairs live at a common step whose byte ranges overlap: plain Python, O(n^2)."""
    bad = []
    n = len(sizes)
    for i in range(n):
        for j in range(i + 1, n):
            if sizes[i] == 0 or sizes[j] == 0:
                continue
            if starts[i] <= ends[j] and starts[j] <= ends[i] and \
                    offsets[i] < offsets[j] + sizes[j] and offsets[j] < offsets[i] + sizes[i]:
                bad.append((i, j))
    return bad


def brute_bound(sizes, starts, ends):
    steps = range(max(ends, default=-1) + 1)
    return max((sum(z for z, s, e in zip(sizes, starts, ends) if s <= t <= e) for t in steps),
               default=0)


class ArenaInterpreter(Interpreter):
    """Runs a graph with every arena value stored at its planned offset in one byte array:
    operands are read from the arena, results written into it (a value that is overwritten
    while still live reads back wrong). Unwritten bytes are 0xFF (NaN for floats).

    An elementwise op written in place runs as a kernel would, ``chunk`` result elements at a
    time in row-major order, each chunk's operands read from the arena just before the chunk
    is written: reading an operand element after its bytes were overwritten shows."""

    def __init__(self, graph, plan: ArenaPlan, chunk: int = 1):
        super().__init__(graph)
        self.plan = plan
        self.chunk = chunk
        self.arena = np.full(plan.peak, 0xFF, dtype=np.uint8)
        self.in_place_ops = {p.step for p in plan.in_place}
        self.step = {op: i for i, op in enumerate(plan.order)}

    def storage(self, v):
        a = self.plan[v.name]
        if a.buffer == v.name:
            raw = self.arena[a.offset:a.offset + a.size]
            return raw.view(v.dtype.numpy).reshape(v.shape)
        producer = v.producer
        base = self.storage(producer.operands[0])
        if producer.type == "tensorir.view":
            return view_of(producer).apply(np.ascontiguousarray(base))
        return base.reshape(v.shape)

    def run(self, inputs):
        for v in self.graph.inputs:
            self.storage(v)[...] = inputs[v.name]
        outputs = super().run(inputs)
        return {name: np.array(a) for name, a in outputs.items()}  # read at the very end

    def run_op(self, op, args):
        args = [a if v is None or v.name not in self.plan.allocations else self.storage(v)
                for v, a in zip(op.operands, args)]
        if self.step[op] in self.in_place_ops and \
                get_op_def(op.type).category is Category.ELEMENTWISE:
            return self.run_streaming(op, args)
        results = super().run_op(op, args)
        out = []
        for r, array in zip(op.results, results):
            if r.name not in self.plan.allocations:
                out.append(array)  # a view of a constant: in the weights region
                continue
            if self.plan[r.name].buffer == r.name:
                self.storage(r)[...] = array
            out.append(self.storage(r))
        return out


    def run_streaming(self, op, args):
        shape = op.results[0].shape
        total = int(np.prod(shape, dtype=np.int64))

        def spread(a):  # operands that broadcast to the result, as views of the arena
            try:
                return np.broadcast_to(a, shape)
            except ValueError:  # CastLike's target: only its dtype matters
                return None
        spread_args = [None if a is None else spread(a) for a in args]
        outs = [self.storage(r).reshape(-1) for r in op.results]
        for k in range(0, total, self.chunk):
            flat = np.arange(k, min(k + self.chunk, total))
            idx = np.unravel_index(flat, shape) if shape else ()
            part = [a if b is None else b[idx] for a, b in zip(args, spread_args)]
            for out, res in zip(outs, super().run_op(op, part)):
                out[flat] = np.asarray(res).reshape(-1)
        return [self.storage(r) for r in op.results]


def run_from_arena(graph, feeds, chunk=1, **options):
    plan = check_arena(plan_arena(graph, **options))
    got = ArenaInterpreter(graph, plan, chunk).run(feeds)
    want = interpret(graph, feeds)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"output %{name}")
    return plan


# ----------------------------------------------------------------------------- pure algorithms
@st.composite
def interval_sets(draw):
    n = draw(st.integers(0, 30))
    sizes = draw(st.lists(st.one_of(st.integers(0, 300), st.sampled_from([64, 128, 4096])),
                          min_size=n, max_size=n))
    starts = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    return (np.array(sizes, np.int64), np.array(starts, np.int64),
            np.array(starts, np.int64) + np.array(lengths, np.int64))


@settings(max_examples=examples(100), deadline=None)
@given(interval_sets(), st.sampled_from([1, 8, 64]))
def test_every_strategy_keeps_live_blocks_apart_and_peaks_above_the_bound(blocks, alignment):
    sizes, starts, ends = blocks
    bound = lower_bound(sizes, starts, ends)
    assert bound == brute_bound(sizes.tolist(), starts.tolist(), ends.tolist())
    peaks = {}
    for name, strategy in STRATEGIES.items():
        offsets = strategy(sizes, starts, ends, alignment)
        assert brute_overlaps(offsets.tolist(), sizes.tolist(), starts.tolist(),
                              ends.tolist()) == [], name
        assert (offsets >= 0).all() and (offsets % alignment == 0).all(), name
        peaks[name] = arena_module.peak_of(offsets, sizes)
        assert peaks[name] >= bound, name
        pairs = arena_module.overlapping_pairs(offsets, sizes, starts, ends)
        assert pairs.size == 0
    assert min(peaks.values()) <= peaks["greedy-by-size"]


def brute_breadth_order(sizes, starts, ends):
    """Steps by bytes live (most first, then earlier); each step's unvisited blocks, largest
    first (then lower index)."""
    n_steps = max(ends, default=-1) + 1
    live = [sum(z for z, s, e in zip(sizes, starts, ends) if s <= t <= e) for t in range(n_steps)]
    order, seen = [], set()
    for t in sorted(range(n_steps), key=lambda t: (-live[t], t)):
        here = [i for i in range(len(sizes)) if starts[i] <= t <= ends[i] and i not in seen]
        for i in sorted(here, key=lambda i: (-sizes[i], i)):
            order.append(i)
            seen.add(i)
    return order


@settings(max_examples=examples(50), deadline=None)
@given(interval_sets())
def test_breadth_order_visits_the_fullest_steps_first(blocks):
    sizes, starts, ends = blocks
    got = arena_module.breadth_order(sizes, starts, ends).tolist()
    assert got == brute_breadth_order(sizes.tolist(), starts.tolist(), ends.tolist())


@settings(max_examples=examples(50), deadline=None)
@given(interval_sets())
def test_overlapping_pairs_equals_the_brute_force_check(blocks):
    sizes, starts, ends = blocks
    offsets = np.random.default_rng(len(sizes)).integers(0, 600, len(sizes))
    want = brute_overlaps(offsets.tolist(), sizes.tolist(), starts.tolist(), ends.tolist())
    got = [tuple(p) for p in arena_module.overlapping_pairs(offsets, sizes, starts, ends)]
    assert sorted(got) == want


def test_first_fit_and_best_fit_choose_different_gaps():
    # three long-lived blocks leave gaps of 100 (at 100) and 70 (at 300) below the top (470)
    sizes = np.array([100, 100, 100, 70, 100])
    starts = np.array([0, 0, 0, 0, 0])
    ends = np.array([9, 0, 9, 0, 9])
    order = np.array([0, 1, 2, 3, 4])
    # 0 at 0, 1 at 100 (dies at 0), 2 at 200, 3 at 300 (dies at 0), 4 at 370
    offsets = arena_module.place(sizes, starts, ends, order, best_fit=False, alignment=1)
    assert offsets.tolist() == [0, 100, 200, 300, 370]
    # a block living 1..9 sees gaps [100, 200) (100 bytes) and [300, 370) (70 bytes)
    s2 = np.append(sizes, 60)
    b2, e2 = np.append(starts, 1), np.append(ends, 9)
    o2 = np.append(order, 5)
    ff = arena_module.place(s2, b2, e2, o2, best_fit=False, alignment=1)
    bf = arena_module.place(s2, b2, e2, o2, best_fit=True, alignment=1)
    assert ff[5] == 100 and bf[5] == 300


def test_live_bytes_counts_every_step_of_inclusive_intervals():
    assert live_bytes(np.array([5, 7]), np.array([0, 1]), np.array([1, 3])).tolist() == \
        [5, 12, 7, 7]


# ----------------------------------------------------------------------------- small graphs
def chain_graph():
    g = Graph("chain")
    x = g.add_input("x", TensorType((256,), F32))
    w = g.add_constant("w", np.ones(256, np.float32))
    y = g.add_op("Exp", [x], result_names=["y"]).result
    z = g.add_op("Add", [y, w], result_names=["z"]).result         # in place over y
    v = g.add_op("Reshape", [z, g.add_constant("s", np.array([16, 16], np.int64))],
                 result_names=["v"]).result                        # alias of z
    t = g.add_op("Transpose", [v], {"perm": [1, 0]}, result_names=["t"]).result
    u = g.add_op("Mul", [t, t], result_names=["u"]).result         # in place over t
    g.set_outputs([u])
    return g


def test_module_doctest_runs():
    assert doctest.testmod(arena_module).failed == 0


def test_aliases_share_their_base_and_extend_its_life():
    g = chain_graph()
    plan = plan_arena(g)
    assert plan["v"].buffer == "z" and plan["v"].offset == plan["z"].offset
    assert plan["z"].end == 3  # read through %v by the Transpose at step 3
    assert "w" not in plan.allocations and "s" not in plan.allocations
    assert plan.weights == 256 * 4 + 2 * 8
    assert [(p.result, p.operand) for p in plan.in_place] == [("z", "y"), ("u", "t")]
    assert verify_arena(plan) == []
    run_from_arena(g, {"x": np.linspace(-1, 1, 256, dtype=np.float32)})


def test_inputs_and_outputs_are_never_written_in_place():
    g = Graph("io")
    x = g.add_input("x", TensorType((64,), F32))
    y = g.add_op("Relu", [x], result_names=["y"]).result     # x is an input: no
    z = g.add_op("Neg", [y], result_names=["z"]).result      # y is an output: no
    g.set_outputs([y, z])
    plan = plan_arena(g)
    assert plan.in_place == ()
    assert (plan["x"].start, plan["x"].end) == (0, 0)
    assert plan["y"].end == plan["z"].end == 1
    assert plan.peak == 2 * 256 == plan.lower_bound


def test_a_strided_view_of_the_operand_blocks_in_place():
    g = Graph("strided")
    x = g.add_input("x", TensorType((4, 4), F32))
    a = g.add_op("Exp", [x], result_names=["a"]).result
    at = g.add_op("tensorir.view", [a], {"offset": 0, "shape": (4, 4), "strides": (1, 4)},
                  result_names=["at"]).result
    b = g.add_op("Add", [a, at], result_names=["b"]).result       # a read transposed: no
    c = g.add_op("Exp", [b], result_names=["c"]).result           # over b
    cf = g.add_op("tensorir.view", [c], {"offset": 0, "shape": (16,), "strides": (1,)},
                  result_names=["cf"]).result
    d = g.add_op("Mul", [cf, cf], result_names=["d"]).result      # over c, read contiguously
    g.set_outputs([d])
    live = liveness(g)
    assert live.intervals["a"] == (0, 2) and live.storage["at"] == "a"
    assert [(p.result, p.operand) for p in live.in_place] == [("c", "b"), ("d", "c")]
    run_from_arena(g, {"x": np.arange(16, dtype=np.float32).reshape(4, 4) / 16})


def test_symbolic_sizes_raise_naming_the_value():
    g = Graph("sym")
    x = g.add_input("x", TensorType(("batch", 8), F32))
    g.set_outputs([g.add_op("Relu", [x], result_names=["y"]).result])
    with pytest.raises(UnboundDimError, match=r"%x: f32\[batch, 8\]"):
        plan_arena(g)
    assert plan_arena(g.bind({"batch": 2})).peak == 2 * 64


def test_int4_sizes_round_up_and_a_graph_without_ops_plans():
    g = Graph("i4")
    x = g.add_input("x", TensorType((3,), DType.int4))
    g.set_outputs([x])
    plan = plan_arena(g)
    assert plan["x"].size == 2 and plan.peak == 2 and plan.naive == 2
    assert plan.occupancy().bytes_live.tolist() == [2]


def test_verify_arena_lists_every_problem():
    g = chain_graph()
    plan = plan_arena(g)
    assert verify_arena(plan) == []
    moved = dict(plan.allocations)
    moved["x"] = attrs.evolve(moved["x"], offset=plan["y"].offset)  # x and y live at step 0
    moved["t"] = attrs.evolve(moved["t"], offset=3)                 # misaligned
    bad = attrs.evolve(plan, allocations=moved)
    problems = verify_arena(bad)
    assert any("%x" in p and "%y" in p and "overlap" in p for p in problems)
    assert any("%t" in p and "alignment" in p for p in problems)
    assert any("outside the arena" in p for p in verify_arena(attrs.evolve(plan, peak=10)))
    with pytest.raises(VerificationError) as info:
        check_arena(bad)
    assert len(info.value.problems) == len(problems)


def test_occupancy_tables_follow_the_plan():
    plan = plan_arena(chain_graph())
    occ = plan.occupancy()
    assert int(occ.bytes_live.max()) == plan.merged_bound
    assert int(occ.high_water[-1]) == plan.peak
    assert (np.diff(occ.high_water) >= 0).all()
    lines = plan.to_csv().splitlines()
    assert lines[0] == "step,op,bytes_live,arena_high_water" and len(lines) == 1 + 5
    assert lines[1] == f"0,Exp,{2 * 1024},{int(occ.high_water[0])}"  # x and y
    data = json.loads(plan.to_json())
    assert data["peak"] == plan.peak and len(data["steps"]) == 5
    assert data["steps"][0]["op"] == "Exp"


def test_a_given_order_must_be_topological():
    g = chain_graph()
    ops = g.ops
    with pytest.raises(GraphError, match="runs before"):
        plan_arena(g, list(reversed(ops)))
    with pytest.raises(GraphError, match="not the same ops"):
        plan_arena(g, ops[:-1])
    with pytest.raises(TensorIRError, match="unknown op order"):
        plan_arena(g, "fastest")


# ----------------------------------------------------------------------------- random graphs
def legal_in_place(graph, plan):
    """Each in-place pair, checked from the graph alone: the op is pointwise, the operand's
    buffer has no reader after the op and is no input or output, the sizes agree."""
    step_of = {op: i for i, op in enumerate(plan.order)}
    storage = {name: a.buffer for name, a in plan.allocations.items()}
    outputs = {storage[v.name] for v in graph.outputs if v.name in storage}
    inputs = {v.name for v in graph.inputs}
    for p in plan.in_place:
        op = plan.order[p.step]
        category = get_op_def(op.type).category
        assert category is Category.ELEMENTWISE or op.type in ("fused.elementwise",
                                                               "fused.gelu",
                                                               "BatchNormalization")
        assert p.result in {r.name for r in op.results}
        assert any(v is not None and storage.get(v.name) == p.operand for v in op.operands)
        assert p.operand not in inputs and p.operand not in outputs
        readers = [step_of[o] for o in plan.order for v in o.operands
                   if v is not None and storage.get(v.name) == p.operand]
        assert max(readers) == p.step
        assert plan[p.result].size == plan[p.operand].size


@settings(max_examples=examples(60), deadline=None)
@given(random_dags(max_ops=12))
def test_random_dag_plans_verify_and_run_from_the_arena(g):
    plan = run_from_arena(g, dag_feeds(g))
    legal_in_place(g, plan)
    assert plan.peak <= plan.greedy_by_size <= plan.naive + 64 * len(plan.buffers())
    plain = plan_arena(g, in_place=False)
    assert plain.peak >= plain.lower_bound == plan.lower_bound
    assert verify_arena(plain) == []


@settings(max_examples=examples(40), deadline=None)
@given(random_graphs(max_ops=10, symbolic=False))
def test_random_graph_plans_verify_in_every_order(g):
    for order in (None, "memory"):
        plan = plan_arena(g, order)
        assert verify_arena(plan) == []
        legal_in_place(g, plan)
    topo = plan_arena(g, in_place=False)
    assert plan_arena(g, "memory", in_place=False).lower_bound <= topo.lower_bound
    for rule in ("eager", "greedy"):
        plan_arena(g, list_schedule(g, rule))  # a topological order, or it raises


@st.composite
def view_graphs(draw):
    """Chains of elementwise ops over strided views (transposed, sub-blocks, whole-buffer)."""
    g = Graph("views")
    n = draw(st.sampled_from([2, 3, 4]))
    pool = [g.add_input("x", TensorType((n, n), F32))]
    row = g.add_input("r", TensorType((n,), F32))
    for _ in range(draw(st.integers(1, 10))):
        x = pool[-1] if draw(st.booleans()) else draw(st.sampled_from(pool))
        kind = draw(st.sampled_from(["unary", "binary", "view", "view", "reshape",
                                     "self-view", "broadcast"]))
        if kind == "broadcast" and x.shape == (n, n):  # a smaller operand dies here
            small = g.add_op("Neg", [row]).result
            op = g.add_op(draw(st.sampled_from(["Add", "Mul"])),
                          [small, x] if draw(st.booleans()) else [x, small])
        elif kind == "self-view" and x.shape == (n, n):  # x op x^T: x may die here
            flip = draw(st.sampled_from([((1, n), 0), ((-n, -1), n * n - 1)]))
            xt = g.add_op("tensorir.view", [x], {"offset": flip[1], "shape": (n, n),
                                                 "strides": flip[0]}).result
            pool.append(xt)
            pair = [x, xt] if draw(st.booleans()) else [xt, x]
            op = g.add_op(draw(st.sampled_from(["Add", "Sub"])), pair)
        elif kind == "unary":
            op = g.add_op(draw(st.sampled_from(["Exp", "Neg", "Relu", "Tanh"])), [x])
        elif kind == "binary":
            partners = [v for v in pool if v.shape == x.shape]
            op = g.add_op(draw(st.sampled_from(["Add", "Mul", "Sub"])),
                          [x, draw(st.sampled_from(partners))])
        elif kind == "view":
            size = x.type.numel
            shape, strides, offset = draw(st.sampled_from([
                ((size,), (1,), 0),                       # the whole buffer
                ((n, n), (1, n), 0) if size == n * n else ((size,), (1,), 0),  # transposed
                ((size - 1,), (1,), 1),                   # shifted
                ((size,), (-1,), size - 1),               # reversed
            ]))
            if size == n * n and len(shape) == 1 and draw(st.booleans()):
                shape, strides, offset = (n, n), (n, 1), 0
            op = g.add_op("tensorir.view", [x], {"offset": offset, "shape": shape,
                                                 "strides": strides})
        else:
            op = g.add_op("Reshape", [x, g.add_constant(g.unique_name("s"),
                                                        np.array([-1], np.int64))])
        pool.extend(op.results)
    outs = draw(st.lists(st.sampled_from(pool[1:] or pool), min_size=1, max_size=2,
                         unique=True))
    g.set_outputs(outs)
    return g


@settings(max_examples=examples(80), deadline=None)
@given(view_graphs())
def test_view_graphs_run_from_the_arena(g):
    rng = np.random.default_rng(0)
    plan = run_from_arena(g, {v.name: rng.uniform(-1, 1, v.shape).astype(np.float32)
                              for v in g.inputs})
    legal_in_place(g, plan)
    for name, a in plan.allocations.items():
        if g.value(name).producer is not None and g.value(name).producer.type == "tensorir.view":
            assert a.buffer != name  # a view never owns memory


# ----------------------------------------------------------------------------- real models
@functools.lru_cache(maxsize=None)
def model_graphs(name):
    graph = load(light_path(name))
    return graph, PassManager("default").run(graph.copy()).graph


@pytest.fixture(scope="module")
def model_plans():
    plans = {}
    for name in LIGHT_MODELS:
        for tag, graph in zip(("loaded", "pipeline"), model_graphs(name)):
            plans[name, tag] = plan_arena(graph)
    return plans


def test_model_plans_beat_greedy_by_size_and_stay_near_the_bound(model_plans):
    ratios = []
    for (name, tag), plan in model_plans.items():
        assert verify_arena(plan) == [], (name, tag)
        legal_in_place(model_graphs(name)[tag == "pipeline"], plan)
        assert plan.peak <= plan.greedy_by_size, (name, tag)
        assert plan.greedy_by_size >= plan.lower_bound and plan.naive >= plan.peak
        ratios.append(plan.peak / plan.lower_bound)
    assert sum(ratios) / len(ratios) <= 1.02, ratios


def test_resnet50_matches_the_known_footprint(model_plans):
    plan = model_plans["resnet50", "loaded"]
    # batch 1, fp32: three 256x56x56 tensors (3.21 MB each) live at the first residual Sum
    assert plan.lower_bound == 3 * 256 * 56 * 56 * 4
    assert 145e6 < plan.naive < 155e6
    assert plan.peak < plan.lower_bound  # Relu and Sum written in place
    assert 90e6 < plan.weights < 110e6   # 25.5 M parameters


def test_memory_order_never_raises_the_bound_on_models():
    for name in ("shufflenet", "inception_v1"):
        graph = model_graphs(name)[0]
        topo = plan_arena(graph, in_place=False)
        mem = plan_arena(graph, "memory", in_place=False)
        assert mem.lower_bound <= topo.lower_bound and verify_arena(mem) == []
    shuffle = model_graphs("shufflenet")[0]
    order = memory_order(shuffle)
    assert order != shuffle.ops  # the shortcut AveragePool runs first, freeing the MaxPool
    assert plan_arena(shuffle, order).lower_bound < plan_arena(shuffle).lower_bound


def test_squeezenet_runs_from_its_arena():
    model = light_model_with_weights("squeezenet")
    graph = load(model)
    plan = run_from_arena(graph, image_feed(model), chunk=4096)
    assert plan.in_place  # the Relus write over their Conv results


def test_a_memoised_placement_equals_the_strategy_and_is_read_only():
    sizes = np.array([256, 64, 128, 512], dtype=np.int64)
    starts = np.array([0, 1, 1, 2], dtype=np.int64)
    ends = np.array([1, 3, 2, 3], dtype=np.int64)
    for name, strategy in STRATEGIES.items():
        first = arena_module._placed(name, sizes, starts, ends, 64)
        again = arena_module._placed(name, sizes.copy(), starts.copy(), ends.copy(), 64)
        assert again is first                        # found by content
        assert np.array_equal(first, strategy(sizes, starts, ends, 64))
        assert not first.flags.writeable
