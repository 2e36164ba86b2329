"""One op evaluated on a tile of its iteration domain is that tile of its result; split
reductions combine to the result; illegal tiles say why."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.python import GraphBuilder
from hypothesis_budget import examples
from op_harness import build_op, check_op, i64, ort_reference, shape_and_axes
from tensorir import DType, Graph, TensorType
from tensorir.errors import InvalidOpError
from tensorir.ops import Category, get_op_def, op_context, op_domain, registered_ops
from tensorir.ops.domain import AffineExpr, AffineMap
from tensorir.tile_eval import (box_slices, clip_box, combine, combiner_identity,
                                evaluate_tile, operand_box, plan_tile, slice_operands,
                                tile_is_legal)
from tensorir.traffic import _box_sizes

RTOL = ATOL = 1e-5


def arrays_for(data, shapes, dtype=np.float32):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    return [None if s is None else rng.standard_normal(s).astype(dtype) for s in shapes]


def full_results(op, arrays):
    return get_op_def(op.type).evaluate(op_context(op), list(arrays))


@st.composite
def sub_range(draw, extent):
    start = draw(st.integers(0, extent - 1))
    return start, draw(st.integers(start + 1, extent))


@st.composite
def splits(draw, extent):
    """A random partition of 0..extent into consecutive ranges (at least two if it can)."""
    cuts = sorted(draw(st.sets(st.integers(1, extent - 1), min_size=1, max_size=3))
                  if extent > 1 else [])
    bounds = [0, *cuts, extent]
    return list(zip(bounds[:-1], bounds[1:]))


def check_tiles(data, op, arrays, fix_box=None):
    """A random parallel sub-box gives ``full[out box]``. Reduction dims are whole, or, for an
    op with a combiner, split into random tiles whose partial results combine to it."""
    domain = op_domain(op)
    extents = [int(e) for e in domain.extents]
    opdef = get_op_def(op.type)
    reductions = set(domain.reduction_dims())
    split = opdef.combiner is not None and data.draw(st.booleans(), label="split reductions")
    ranges = []
    for i, e in enumerate(extents):
        if i not in reductions:
            ranges.append([data.draw(sub_range(e), label=domain.names[i])])
        elif split:
            ranges.append(data.draw(splits(e), label=domain.names[i]))
        else:
            ranges.append([(0, e)])
    if fix_box is not None:
        ranges = fix_box(domain, ranges)
    full = full_results(op, arrays)
    acc = None
    for k, box in enumerate(itertools.product(*ranges)):
        assert tile_is_legal(op, box) is None, tile_is_legal(op, box)
        parts = evaluate_tile(op, box, slice_operands(op, box, arrays),
                              first_reduction_tile=(k == 0))
        if acc is None:
            acc = [np.full(p.shape, combiner_identity(opdef.combiner, p.dtype), p.dtype)
                   if opdef.combiner else p for p in parts]
        if opdef.combiner:
            acc = [combine(opdef.combiner, a, p) for a, p in zip(acc, parts)]
    for got, whole, amap in zip(acc, full, domain.outputs):
        want = whole[box_slices(operand_box(amap, box))]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)


# ----------------------------------------------------------------------------- boxes

@settings(max_examples=examples(100), deadline=None)
@given(st.data())
def test_operand_box_is_the_range_of_the_map_over_the_loop_box(data):
    nd = data.draw(st.integers(1, 3))
    extents = [data.draw(st.integers(1, 5)) for _ in range(nd)]
    amap = AffineMap([AffineExpr(tuple(data.draw(st.integers(-3, 3)) for _ in range(nd)),
                                 data.draw(st.integers(-4, 4)))
                      for _ in range(data.draw(st.integers(0, 3)))])
    loop_box = tuple(data.draw(sub_range(e)) for e in extents)
    box = operand_box(amap, loop_box)
    points = np.array(list(itertools.product(*(range(a, b) for a, b in loop_box))))
    for expr, (lo, stop) in zip(amap.exprs, box):
        values = points @ np.array(expr.coeffs) + expr.const
        assert (lo, stop) == (values.min(), values.max() + 1)
    shape = [data.draw(st.integers(1, 6)) for _ in box]
    inside, below, above = clip_box(box, shape)
    starts = [np.array(a) for a, _ in loop_box]
    sizes = [np.array(b - a) for a, b in loop_box]
    for expr, (lo, stop), (a, b), cb, ca, n in zip(amap.exprs, box, inside, below, above, shape):
        positions = np.arange(lo, stop)
        kept = positions[(positions >= 0) & (positions < n)]
        assert 0 <= a <= b <= n and b - a == kept.size
        if kept.size:
            assert (a, b) == (kept[0], kept[-1] + 1)
        assert (cb, ca) == (np.sum(positions < 0), np.sum(positions >= n))
        assert b - a == int(_box_sizes(expr, starts, sizes, n))  # the traffic model's box


def test_clip_box_by_hand():
    assert clip_box(((-2, 3), (4, 9), (-5, -1), (7, 8)), (10, 6, 4, 5)) == (
        ((0, 3), (4, 6), (0, 0), (5, 5)), (2, 0, 4, 0), (0, 3, 0, 1))


# ----------------------------------------------------------------------------- contractions

@st.composite
def matmul_case(draw):
    out_batch = draw(st.lists(st.integers(1, 3), max_size=2))
    m, n, k = (draw(st.integers(1, 5)) for _ in range(3))

    def batch_of():
        kept = out_batch[draw(st.integers(0, len(out_batch))):]
        return [1 if draw(st.booleans()) else d for d in kept]
    a = [k] if draw(st.integers(0, 4)) == 0 else batch_of() + [m, k]
    b = [k] if draw(st.integers(0, 4)) == 0 else batch_of() + [k, n]
    return a, b


@settings(max_examples=examples(60), deadline=None)
@given(matmul_case(), st.data())
def test_matmul_tile_equals_the_result_box(shapes, data):
    arrays = arrays_for(data, shapes)
    _, op = build_op("MatMul", arrays)
    check_tiles(data, op, arrays)


@settings(max_examples=examples(60), deadline=None)
@given(st.data())
def test_gemm_tile_equals_the_result_box(data):
    m, n, k = (data.draw(st.integers(1, 6)) for _ in range(3))
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    c = data.draw(st.sampled_from([None, [m, n], [n], [1, n], [m, 1], [1], []]))
    arrays = arrays_for(data, [[k, m] if ta else [m, k], [n, k] if tb else [k, n], c])
    attrs = {"transA": int(ta), "transB": int(tb),
             "alpha": data.draw(st.sampled_from([1.0, 0.5, -2.0])),
             "beta": data.draw(st.sampled_from([1.0, 0.0, 3.0]))}
    _, op = build_op("Gemm", arrays, attrs)
    check_tiles(data, op, arrays)


AUTO_PADS = ["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]


@st.composite
def window_attrs(draw, r, kernel):
    """strides, dilations, pads (asymmetric) or an auto_pad, and an input size that fits."""
    strides = [draw(st.integers(1, 3)) for _ in range(r)]
    dilations = [draw(st.integers(1, 2)) for _ in range(r)]
    auto_pad = draw(st.sampled_from(AUTO_PADS))
    attrs = {"strides": strides, "dilations": dilations, "auto_pad": auto_pad}
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, 2)) for _ in range(2 * r)]
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    spatial = [draw(st.integers(e, e + 6)) for e in eff]
    return attrs, spatial


def conv_group_fix(domain, ranges):
    """A tile over several groups takes all their channels (else it is illegal, see
    test_illegal_tiles_say_why)."""
    names = domain.names
    if "g" in names and any(b - a > 1 for a, b in ranges[names.index("g")]):
        for name in ("oc", "ic"):
            ranges[names.index(name)] = [(0, int(domain.extents[names.index(name)]))]
    return ranges


@settings(max_examples=examples(80), deadline=None)
@given(st.data())
def test_conv_tile_equals_the_result_box(data):
    r = data.draw(st.integers(1, 2))
    group = data.draw(st.integers(1, 3))
    cg, ocg = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(r)]
    attrs, spatial = data.draw(window_attrs(r, kernel))
    attrs["group"] = group
    bias = data.draw(st.booleans())
    arrays = arrays_for(data, [[data.draw(st.integers(1, 2)), group * cg, *spatial],
                               [group * ocg, cg, *kernel], [group * ocg] if bias else None])
    _, op = build_op("Conv", arrays, attrs)
    check_tiles(data, op, arrays, fix_box=conv_group_fix)


# ----------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("op_type,include_pad", [("MaxPool", None), ("AveragePool", 0),
                                                  ("AveragePool", 1)])
@settings(max_examples=examples(60), deadline=None)
@given(data=st.data())
def test_pool_tile_equals_the_result_box(data, op_type, include_pad):
    r = data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(1, 3)) for _ in range(r)]
    attrs, spatial = data.draw(window_attrs(r, kernel))
    attrs["kernel_shape"] = kernel
    attrs["ceil_mode"] = int(data.draw(st.booleans()))
    if include_pad is not None:
        attrs["count_include_pad"] = include_pad
    arrays = arrays_for(data, [[data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)),
                                *spatial]])
    _, op = build_op(op_type, arrays, attrs)
    check_tiles(data, op, arrays)


@settings(max_examples=examples(40), deadline=None)
@given(data=st.data())
def test_average_pool_edge_tiles_count_only_the_explicit_padding(data):
    """ceil_mode's last window reaches past the explicit padding; count_include_pad counts the
    explicit padding only, so the tile must keep the two apart (pads vs ceil_mode)."""
    r = data.draw(st.integers(1, 2))
    kernel = [data.draw(st.integers(2, 3)) for _ in range(r)]
    strides = [data.draw(st.integers(2, 3)) for _ in range(r)]
    pads = [data.draw(st.integers(0, 1)) for _ in range(2 * r)]
    spatial = [data.draw(st.integers(k, k + 5)) for k in kernel]
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "ceil_mode": 1,
             "count_include_pad": 1}
    arrays = arrays_for(data, [[1, 2, *spatial]])
    _, op = build_op("AveragePool", arrays, attrs)

    def last_windows(domain, ranges):  # every spatial tile ends at the last output
        return [[(a, int(d.extent))] if d.name.startswith("o") else rg
                for d, (a, _), rg in zip(domain.dims, (rg[0] for rg in ranges), ranges)]
    check_tiles(data, op, arrays, fix_box=last_windows)


@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool", "LRN"])
@settings(max_examples=examples(20), deadline=None)
@given(data=st.data())
def test_global_pool_and_lrn_tiles_equal_the_result_box(data, op_type):
    shape = [data.draw(st.integers(1, 3)) for _ in range(data.draw(st.integers(3, 4)))]
    attrs = {"size": data.draw(st.integers(1, 4))} if op_type == "LRN" else {}
    arrays = arrays_for(data, [shape])
    _, op = build_op(op_type, arrays, attrs)

    def whole_channels(domain, ranges):  # LRN: the channel loop stays whole (full_dims)
        return [[(0, int(d.extent))] if d.name in get_op_def(op.type).full_dims else rg
                for d, rg in zip(domain.dims, ranges)]
    check_tiles(data, op, arrays, fix_box=whole_channels)


# ----------------------------------------------------------------------------- reductions

@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean"])
@settings(max_examples=examples(40), deadline=None)
@given(shape_axes=shape_and_axes(max_dim=5), data=st.data())
def test_reduce_tile_equals_the_result_box(shape_axes, data, op_type):
    shape, axes = shape_axes
    arrays = arrays_for(data, [shape])
    if data.draw(st.booleans(), label="axes operand"):
        arrays.append(i64(*axes))
    attrs = {"keepdims": int(data.draw(st.booleans()))}
    _, op = build_op(op_type, arrays, attrs, const_inputs=(1,))
    check_tiles(data, op, arrays)


# ----------------------------------------------------------------------------- elementwise

@st.composite
def broadcast_shapes(draw, n):
    out = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    shapes = []
    for _ in range(n):
        kept = out[draw(st.integers(0, len(out))):]
        shapes.append([1 if draw(st.booleans()) else d for d in kept])
    return shapes


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Where", "PRelu"])
@settings(max_examples=examples(20), deadline=None)
@given(data=st.data())
def test_elementwise_tile_equals_the_result_box(data, op_type):
    if op_type == "Where":
        shapes = data.draw(broadcast_shapes(3))
        arrays = arrays_for(data, shapes)
        arrays[0] = arrays[0] > 0
    elif op_type == "PRelu":  # the slope broadcasts to X one way
        x, slope = data.draw(broadcast_shapes(2))
        x = [max(a, b) for a, b in itertools.zip_longest(x[::-1], slope[::-1], fillvalue=1)][::-1]
        arrays = arrays_for(data, [x, slope])
    else:
        arrays = arrays_for(data, data.draw(broadcast_shapes(data.draw(st.integers(2, 3))
                                                            if op_type == "Max" else 2)))
    _, op = build_op(op_type, arrays)
    check_tiles(data, op, arrays)


@settings(max_examples=examples(30), deadline=None)
@given(st.data())
def test_clip_and_dropout_tiles_read_scalar_operands_whole(data):
    shape = [data.draw(st.integers(1, 4)) for _ in range(data.draw(st.integers(0, 3)))]
    arrays = arrays_for(data, [shape, [], [1] * len(shape)])
    arrays[2] = np.abs(arrays[2]) + arrays[1]  # max >= min
    _, op = build_op("Clip", arrays)
    check_tiles(data, op, arrays)
    x = arrays_for(data, [shape])
    _, op = build_op("Dropout", x, {"num_outputs": 2})
    check_tiles(data, op, x)


# ----------------------------------------------------------------------------- normalizations

@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "LayerNormalization",
                                     "RMSNormalization", "BatchNormalization",
                                     "InstanceNormalization"])
@settings(max_examples=examples(25), deadline=None)
@given(data=st.data())
def test_normalization_tile_equals_the_result_box(data, op_type):
    rank = data.draw(st.integers(3 if op_type == "InstanceNormalization" else 1, 4))
    shape = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    axis = data.draw(st.integers(-rank, rank - 1))
    attrs = {} if op_type in ("BatchNormalization", "InstanceNormalization") else {"axis": axis}
    if op_type in ("BatchNormalization", "InstanceNormalization"):
        c = shape[1] if rank >= 2 else 1
        arrays = arrays_for(data, [shape] + [[c]] * (4 if op_type == "BatchNormalization" else 2))
        if op_type == "BatchNormalization":
            arrays[4] = np.abs(arrays[4]) + 0.1  # variance
    else:
        arrays = arrays_for(data, [shape])
        if op_type in ("LayerNormalization", "RMSNormalization"):
            normed = shape[axis % rank:]
            scale = normed[data.draw(st.integers(0, len(normed) - 1)):]
            scale = [1 if data.draw(st.booleans()) else d for d in scale]
            params = [scale]
            if op_type == "LayerNormalization" and data.draw(st.booleans()):
                params.append(list(scale))
            arrays += arrays_for(data, params)
    _, op = build_op(op_type, arrays, attrs)
    check_tiles(data, op, arrays)


# ----------------------------------------------------------------------------- combiners

def test_combiners_are_declared_where_partial_results_merge():
    declared = {name: get_op_def(name).combiner for name in registered_ops()
                if get_op_def(name).combiner}
    assert declared == {"MatMul": "add", "Gemm": "add", "Conv": "add", "ReduceSum": "add",
                        "ReduceMax": "max", "ReduceMin": "min"}


def test_additive_operands_count_on_the_first_reduction_tile_only():
    a, b, c = np.ones((2, 4), np.float32), np.ones((4, 3), np.float32), np.full(3, 10, np.float32)
    _, op = build_op("Gemm", [a, b, c])
    assert plan_tile(op, ((0, 2), (0, 3), (0, 2))).additive == (2,)
    box = ((0, 2), (0, 3), (2, 4))
    operands = slice_operands(op, box, [a, b, c])
    np.testing.assert_array_equal(evaluate_tile(op, box, operands)[0], np.full((2, 3), 12))
    np.testing.assert_array_equal(
        evaluate_tile(op, box, operands, first_reduction_tile=False)[0], np.full((2, 3), 2))


def test_combiner_identities():
    assert combiner_identity("add", np.float32) == 0
    assert combiner_identity("max", np.float32) == -np.inf
    assert combiner_identity("min", np.int32) == np.iinfo(np.int32).max
    assert combiner_identity("max", np.bool_) == np.False_


def test_window_tile_pads_by_hand():
    # MaxPool k=3 s=2 pads 1/1 on 7 with ceil_mode: 4 outputs, the last window reads 5..7
    # where 7 is the end pad; a tile of outputs 2..4 reads 3..7: no begin pad, end pad 1
    x = np.arange(7, dtype=np.float32).reshape(1, 1, 7)
    _, op = build_op("MaxPool", [x], {"kernel_shape": [3], "strides": [2], "pads": [1, 1],
                                      "ceil_mode": 1})
    box = ((0, 1), (0, 1), (2, 4), (0, 3))
    assert plan_tile(op, box).attrs["pads"] == (0, 1)
    np.testing.assert_array_equal(evaluate_tile(op, box, slice_operands(op, box, [x]))[0],
                                  [[[5, 6]]])
    # count_include_pad: AveragePool k=2 s=2 pads 0/0 on 5 with ceil_mode; the last window
    # is 4..5 where 5 is only ceil_mode's: it divides by 1, not 2
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    _, op = build_op("AveragePool", [x], {"kernel_shape": [2], "strides": [2], "ceil_mode": 1,
                                          "count_include_pad": 1})
    box = ((0, 1), (0, 1), (2, 3), (0, 2))
    plan = plan_tile(op, box)
    assert (plan.attrs["pads"], plan.attrs["ceil_mode"]) == ((0, 0), 0)  # explicit part only
    np.testing.assert_array_equal(evaluate_tile(op, box, slice_operands(op, box, [x]))[0],
                                  [[[4.0]]])


@pytest.mark.parametrize("op_type,include_pad", [("MaxPool", None), ("AveragePool", 0),
                                                  ("AveragePool", 1)])
def test_a_tile_of_windows_wholly_in_the_end_padding_keeps_them(op_type, include_pad):
    # h: 1 row, end pad 3, k=1: windows 0, 1, 2 (1 and 2 wholly in the end padding, kept with
    # ceil_mode: only the last one past them is dropped); w: 5 columns, k=2, s=2, ceil_mode:
    # windows 0, 2, 4, the last needing one extra column. A tile with ceil_mode would drop its
    # h window 2 (it starts in its end padding): tiles take no ceil_mode.
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5) + 1
    attrs = {"kernel_shape": [1, 2], "strides": [1, 2], "pads": [0, 0, 3, 0], "ceil_mode": 1}
    if include_pad is not None:
        attrs["count_include_pad"] = include_pad
    _, op = build_op(op_type, [x], attrs)
    (full,) = full_results(op, [x])
    assert full.shape == (1, 1, 3, 3)
    box = ((0, 1), (0, 1), (1, 3), (2, 3), (0, 1), (0, 2))
    (tile,) = evaluate_tile(op, box, slice_operands(op, box, [x]))
    np.testing.assert_array_equal(tile, full[:, :, 1:3, 2:3])


@pytest.mark.parametrize("op_type,attrs", [
    ("MaxPool", {"kernel_shape": [2], "dilations": [2], "strides": [2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3], "strides": [2], "ceil_mode": 1,
                     "count_include_pad": 1}),
])
def test_a_ceil_window_overhanging_by_less_than_a_stride_counts_as_in_onnxruntime(op_type,
                                                                                  attrs):
    # a window of 3 over 2 elements with stride 2: ONNX's ceil formula and onnxruntime give one
    # output (window_geometry refused it before; a pooling tile at the edge needs it)
    ours = check_op(op_type, [np.array([[[1, 2]]], np.float32)], attrs, ref=ort_reference,
                    rtol=0, atol=0)
    assert ours.shape == (1, 1, 1)


# ----------------------------------------------------------------------------- illegal tiles

def _op(op_type, arrays, attrs=None, const_inputs=()):
    return build_op(op_type, arrays, attrs, const_inputs)[1]


def _whole(op):
    return tuple((0, int(e)) for e in op_domain(op).extents)


X = np.zeros((2, 4, 6), np.float32)


def _fused_op():
    b = GraphBuilder("t", seed=0)
    x = b.input("x", [3, 8])
    g = b.build(b.relu(b.linear(x, 8, 4, "fc")))
    return g.fuse(g.ops[:3], "fused.matmul")


def _symbolic_matmul():
    g = Graph("s")
    x = g.add_input("x", TensorType(("batch", 4), DType.float32))
    w = g.add_input("w", TensorType((4, 3), DType.float32))
    return g.add_op("MatMul", [x, w], {})


ILLEGAL = {
    "Slice": (lambda: _op("Slice", [X, i64(1), i64(3)], const_inputs=(1, 2)), None,
              "Slice: data movement with absolute positions"),
    "Pad": (lambda: _op("Pad", [X, i64(0, 0, 1, 0, 0, 1)], const_inputs=(1,)), None,
            "Pad: data movement"),
    "Concat": (lambda: _op("Concat", [X, X], {"axis": 1}), None, "Concat: data movement"),
    "Gather": (lambda: _op("Gather", [X, i64(0, 1)], const_inputs=(1,)), None,
               "Gather: data movement"),
    "Shape": (lambda: _op("Shape", [X]), None, "Shape: shape ops"),
    "ConvTranspose": (lambda: _op("ConvTranspose", [X, np.zeros((4, 2, 3), np.float32)]), None,
                      "ConvTranspose: its output map is a scatter"),
    "fused": (_fused_op, None, "fused.matmul 'relu': a fused kernel"),
    "LRN channel tile": (lambda: _op("LRN", [X], {"size": 3}),
                         ((0, 2), (1, 3), (0, 6), (0, 3)), "LRN: loop dim c must stay whole"),
    "ReduceMean split": (lambda: _op("ReduceMean", [X, i64(2)], const_inputs=(1,)),
                         ((0, 2), (0, 4), (0, 3)),
                         "ReduceMean: reduction dim d2 must be whole (0..6), got 0..3: the op "
                         "declares no combiner"),
    "Softmax split": (lambda: _op("Softmax", [X]), ((0, 2), (0, 4), (2, 6)),
                      "Softmax: reduction dim d2 must be whole"),
    "MaxPool window split": (lambda: _op("MaxPool", [X], {"kernel_shape": [3]}),
                             ((0, 2), (0, 4), (0, 4), (0, 2)),
                             "MaxPool: reduction dim kw must be whole"),
    "Conv groups": (lambda: _op("Conv", [X, np.zeros((4, 2, 3), np.float32)], {"group": 2}),
                    ((0, 2), (0, 2), (0, 1), (0, 4), (0, 2), (0, 3)),
                    "Conv: a tile over 2 groups"),
    "out of range": (lambda: _op("Relu", [X]), ((0, 2), (0, 5), (0, 6)),
                     "Relu: loop dim d1 range 0..5 is empty or outside 0..4"),
    "empty": (lambda: _op("Relu", [X]), ((0, 2), (2, 2), (0, 6)), "Relu: loop dim d1 range"),
    "rank": (lambda: _op("Relu", [X]), ((0, 2),), "Relu: the loop box has 1 ranges"),
    "symbolic": (_symbolic_matmul, ((0, 1), (0, 3), (0, 4)), "MatMul: the iteration domain "
                 "has symbolic dims"),
}


@pytest.mark.parametrize("case", sorted(ILLEGAL))
def test_illegal_tiles_say_why(case):
    make, box, reason = ILLEGAL[case]
    op = make()
    if box is None:
        box = _whole(op) if op_domain(op) is not None else ((0, 1),)
    why = tile_is_legal(op, box)
    assert why is not None and why.startswith(reason), why
    with pytest.raises(InvalidOpError) as exc:
        evaluate_tile(op, box, [None if v is None else np.zeros(
            [int(d) if isinstance(d, int) else 1 for d in v.type.shape], v.type.dtype.numpy)
            for v in op.operands])
    assert str(exc.value) == why


def test_the_same_tiles_are_legal_when_whole_or_in_one_group():
    conv = _op("Conv", [X, np.zeros((4, 2, 3), np.float32)], {"group": 2})
    assert tile_is_legal(conv, ((0, 2), (0, 1), (0, 1), (0, 4), (0, 2), (0, 3))) is None
    assert tile_is_legal(conv, ((0, 2), (0, 2), (0, 2), (1, 3), (0, 2), (0, 3))) is None
    assert tile_is_legal(op_context(conv), ((0, 2), (1, 2), (0, 1), (0, 4), (0, 1), (1, 3))) \
        is None  # an OpContext works as well as the op
    assert tile_is_legal(_op("LRN", [X], {"size": 3}), ((1, 2), (0, 4), (2, 5), (0, 3))) is None


def test_wrong_operand_shapes_are_refused():
    op = _op("Relu", [X])
    with pytest.raises(InvalidOpError, match=r"operand 0 has shape \[2, 4, 6\], expected "
                                             r"\[1, 4, 6\]"):
        evaluate_tile(op, ((0, 1), (0, 4), (0, 6)), [X])


TILEABLE_CATEGORIES = {Category.ELEMENTWISE, Category.REDUCTION, Category.CONTRACTION,
                       Category.POOLING, Category.NORMALIZATION}
# data movement that keeps elements in a fixed affine pattern: a tile of the result is the
# operand's tile permuted (Transpose) or re-shaped (the rest, when they split or merge dims)
RELAYOUTS = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}


@pytest.mark.parametrize("name", registered_ops())
def test_tileability_follows_the_category_unless_the_op_says(name):
    opdef = get_op_def(name)
    refusal = opdef.tiling_refusal()
    if name in RELAYOUTS:
        assert refusal is None
    elif name == "ConvTranspose" or opdef.category not in TILEABLE_CATEGORIES:
        assert refusal and "not tileable" in refusal
    else:
        assert refusal is None
