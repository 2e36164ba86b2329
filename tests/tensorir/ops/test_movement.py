"""Data movement ops: onnx.reference, NumPy properties, symbolic dims, domains, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_harness import (assert_results_match, build_op, flops_of, i64, onnx_reference,
                        ort_reference, run_op, shape_and_axes)
from tensorir import DType, Graph, TensorType
from tensorir.errors import ShapeError, UnboundDimError
from tensorir.ops import Category, get_op_def, op_context, op_domain, op_flops

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -2 ** 63

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


# (op, arrays, attrs, indices of constant operands, number of results)
CASES = [
    ("Transpose", [X], {}, [], 1),
    ("Transpose", [X], {"perm": [1, 0, 2]}, [], 1),
    ("Transpose", [X], {"perm": [2, 0, 1]}, [], 1),
    ("Reshape", [X, i64(4, -1)], {}, [1], 1),
    ("Reshape", [X, i64(0, -1)], {}, [1], 1),
    ("Reshape", [X, i64(0, 0, 2, 2)], {}, [1], 1),
    ("Reshape", [X, i64(-1)], {}, [1], 1),
    ("Reshape", [X, i64(2, 0, 4)], {"allowzero": 0}, [1], 1),
    ("Reshape", [np.zeros((0, 3), np.float32), i64(3, 0)], {"allowzero": 1}, [1], 1),
    ("Flatten", [X], {}, [], 1),
    ("Flatten", [X], {"axis": 0}, [], 1),
    ("Flatten", [X], {"axis": 3}, [], 1),
    ("Flatten", [X], {"axis": -1}, [], 1),
    ("Squeeze", [X[:, :1, None]], {}, [], 1),
    ("Squeeze", [X[:, :1, None], i64(-2)], {}, [1], 1),
    ("Squeeze", [X[:, :1, None], i64(1, 2)], {}, [1], 1),
    ("Unsqueeze", [X, i64(0)], {}, [1], 1),
    ("Unsqueeze", [X, i64(-1, 1)], {}, [1], 1),
    ("Unsqueeze", [np.float32(3.0), i64(0, 1)], {}, [1], 1),
    ("Concat", [X, X[:, :1], X[:, 1:]], {"axis": 1}, [], 1),
    ("Concat", [X, X], {"axis": -1}, [], 1),
    ("Concat", [X], {"axis": 0}, [], 1),
    ("Split", [X, i64(1, 2)], {"axis": 1}, [1], 2),
    ("Split", [X, i64(0, 3, 1)], {"axis": -1}, [1], 3),
    ("Split", [X], {"axis": 2, "num_outputs": 2}, [], 2),
    ("Split", [np.arange(7, dtype=np.float32)], {"num_outputs": 4}, [], 4),   # 2,2,2,1
    ("Split", [X], {"axis": 1, "num_outputs": 3}, [], 3),
    ("Slice", [X, i64(1), i64(3)], {}, [1, 2], 1),
    ("Slice", [X, i64(0, 1), i64(INT64_MAX, -1), i64(0, 2)], {}, [1, 2, 3], 1),
    ("Slice", [X, i64(-1), i64(INT64_MIN), i64(2), i64(-1)], {}, [1, 2, 3, 4], 1),
    ("Slice", [X, i64(3, 10), i64(-100, 0), i64(-1, 1), i64(-2, 1)], {}, [1, 2, 3, 4], 1),
    ("Slice", [X, i64(-2), i64(100), i64(1), i64(1)], {}, [1, 2, 3, 4], 1),
    ("Slice", [X, i64(10), i64(20), i64(2), i64(1)], {}, [1, 2, 3, 4], 1),  # empty
    ("Slice", [X, i64(0, 3), i64(2, -5), i64(0, 2), i64(1, -3)], {}, [1, 2, 3, 4], 1),
    ("Gather", [X, i64(1, 0, -1)], {}, [], 1),
    ("Gather", [X, i64(-1, 0)], {"axis": 1}, [], 1),
    ("Gather", [X, np.array([[0, -2], [3, 1]], np.int32)], {"axis": 2}, [], 1),
    ("Gather", [X, np.array(2, np.int64)], {"axis": -1}, [], 1),
    ("Gather", [X, i64(1, -3)], {"axis": 1}, [1], 1),   # constant indices
    ("GatherElements", [X, np.array([[[0, -1, 1, 0], [2, 2, -3, 1]]] * 2)], {"axis": 1}, [], 1),
    ("GatherElements", [X, np.array([[[3, -1], [0, 1], [2, 2]]] * 2)], {"axis": 2}, [], 1),
    ("Expand", [X[:, :1, :], i64(5, 1, 3, 1)], {}, [1], 1),
    ("Expand", [X[:1, :, :1], i64(2, 1, 6)], {}, [1], 1),
    ("Expand", [X, i64(1)], {}, [1], 1),
    ("Pad", [X, i64(1, 0, 2, 0, 1, 1)], {}, [1], 1),
    ("Pad", [X, i64(1, 0, 2, 0, 1, 1), np.float32(-5)], {"mode": "constant"}, [1], 1),
    ("Pad", [X, i64(0, 2, 1, 1, 2, 3)], {"mode": "reflect"}, [1], 1),
    ("Pad", [X, i64(1, 2, 3, 1, 2, 3)], {"mode": "edge"}, [1], 1),
    ("Pad", [X, i64(1, 2, 3, 1, 2, 3)], {"mode": "wrap"}, [1], 1),
    ("Pad", [X, i64(1, 2), np.float32(7), i64(-1)], {}, [1, 3], 1),
    ("Pad", [X, i64(2, 1, 0, 2), None, i64(0, 2)], {"mode": "edge"}, [1, 3], 1),
    ("Tile", [X, i64(2, 1, 3)], {}, [1], 1),
    ("Tile", [X, i64(1, 0, 1)], {}, [1], 1),
]


@pytest.mark.parametrize("op, arrays, attrs, const, n", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_onnx_reference(op: str, arrays: list, attrs: dict, const: list, n: int) -> None:
    assert_results_match(run_op(op, arrays, attrs, const_inputs=const),
                         onnx_reference(op, arrays, attrs, n_outputs=n))


def test_int_and_bool_data_move_unchanged() -> None:
    x = np.arange(6, dtype=np.int8).reshape(2, 3)
    assert_results_match(run_op("Transpose", [x]), [x.T])
    b = x % 2 == 0
    assert_results_match(run_op("Tile", [b, i64(2, 1)], const_inputs=[1]), [np.tile(b, (2, 1))])


def test_gather_elements_negative_axis_and_smaller_indices() -> None:
    # onnx.reference mishandles a negative axis and indices smaller than data off the axis
    idx = np.array([[[3, -1]], [[0, -4]]])
    (ours,) = run_op("GatherElements", [X, idx], {"axis": -1})
    expected = np.take_along_axis(X[:, :1, :], np.where(idx < 0, idx + 4, idx), axis=-1)
    assert_results_match([ours], [expected])


def test_negative_pads_crop() -> None:
    # onnxruntime semantics (the reference implementation rejects negative pads)
    (ours,) = run_op("Pad", [X, i64(0, -1, 1, 0, 0, -2)], {}, const_inputs=[1])
    expected = np.pad(X[:, 1:, :2], [(0, 0), (0, 0), (1, 0)])
    assert_results_match([ours], [expected])


@pytest.mark.parametrize("op, arrays, attrs, const", [
    ("Transpose", [X], {"perm": [0, 1, 2]}, []),
    ("Reshape", [X, i64(2, 3, 4)], {}, [1]),
    ("Squeeze", [X, i64()], {}, [1]),
    ("Expand", [X, i64(2, 3, 4)], {}, [1]),
    ("Slice", [X, i64(0), i64(INT64_MAX)], {}, [1, 2]),
    ("Concat", [X], {"axis": 0}, []),
    ("Tile", [X, i64(1, 1, 1)], {}, [1]),
    ("Pad", [X, i64(0, 0, 0, 0, 0, 0)], {}, [1]),
    ("Flatten", [X.reshape(6, 4)], {"axis": 1}, []),
    ("Split", [X, i64(2)], {}, [1]),
])
def test_results_never_alias_operands(op: str, arrays: list, attrs: dict, const: list) -> None:
    """An identity-like move still returns a fresh array: mutating the operand leaves it alone."""
    arrays = [None if a is None else np.array(a) for a in arrays]
    g, node = build_op(op, arrays, attrs, const_inputs=const)
    results = get_op_def(op).evaluate(op_context(node), arrays)
    before = [r.copy() for r in results]
    arrays[0][...] = -1
    for r, b in zip(results, before):
        assert not np.shares_memory(r, arrays[0])
        np.testing.assert_array_equal(r, b)


# ---------------------------------------------------------------- properties


@st.composite
def _slice_case(draw):
    shape, axes = draw(shape_and_axes(min_dim=0, max_dim=6))
    bound = st.one_of(st.integers(-9, 9), st.sampled_from([INT64_MAX, INT64_MIN]))
    starts = [draw(bound) for _ in axes]
    ends = [draw(bound) for _ in axes]
    steps = [draw(st.integers(-4, 4).filter(bool)) for _ in axes]
    return shape, starts, ends, axes, steps


@settings(max_examples=100, deadline=None)
@given(_slice_case())
def test_slice_equals_numpy_slicing(case) -> None:
    shape, starts, ends, axes, steps = case
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    (ours,) = run_op("Slice", [x, i64(*starts), i64(*ends), i64(*axes), i64(*steps)],
                     const_inputs=[1, 2, 3, 4])
    index = [slice(None)] * len(shape)
    for s, e, a, st_ in zip(starts, ends, axes, steps):
        # the one place ONNX differs from NumPy: a start below -dim with a negative step
        # clamps to index 0 (included) where NumPy takes nothing; NumPy's 0 start is the same
        index[a] = slice(0 if st_ < 0 and s < -shape[a] else s, e, st_)
    np.testing.assert_array_equal(ours, x[tuple(index)])
    # and the ONNX spec's clamping written out independently
    expected = x
    for s, e, a, st_ in zip(starts, ends, axes, steps):
        dim = shape[a]
        s, e = s + dim if s < 0 else s, e + dim if e < 0 else e
        lo, hi = (0, dim) if st_ > 0 else (0, dim - 1)
        s = min(max(s, lo), hi)
        e = min(max(e, lo if st_ > 0 else -1), hi)
        expected = np.take(expected, np.arange(s, e, st_, dtype=np.int64), axis=a)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("start, end, step", [
    (-100, -100, -1), (-100, -6, -1), (-6, INT64_MIN, -1), (-6, -100, -2), (10, -100, -1),
    (INT64_MIN, 2, 1), (-1, INT64_MIN, -2),
])
def test_slice_negative_step_clamping_matches_onnxruntime(start: int, end: int, step: int
                                                          ) -> None:
    """ONNX clamps a start below -dim to 0 for negative steps (NumPy/onnx.reference do not)."""
    x = np.arange(5, dtype=np.float32)
    arrays = [x, i64(start), i64(end), i64(0), i64(step)]
    (ours,) = run_op("Slice", arrays, const_inputs=[1, 2, 3, 4])
    assert_results_match([ours], ort_reference("Slice", arrays))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=5).flatmap(
    lambda shape: st.tuples(st.just(tuple(shape)), st.permutations(range(len(shape))))))
def test_transpose_equals_numpy(case) -> None:
    shape, perm = case
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    (ours,) = run_op("Transpose", [x], {"perm": list(perm)})
    np.testing.assert_array_equal(ours, np.transpose(x, perm))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 3, 5]), min_size=1, max_size=5), st.data())
def test_reshape_with_minus_one_random_factorizations(factors: list, data) -> None:
    n = math.prod(factors)
    x = np.arange(n, dtype=np.float32).reshape(data.draw(st.permutations(factors)))
    groups = data.draw(st.lists(st.integers(0, 2), min_size=len(factors), max_size=len(factors)))
    target = [math.prod(f for f, g in zip(factors, groups) if g == k) for k in range(3)]
    hole = data.draw(st.integers(0, 2))
    spec = [-1 if k == hole else t for k, t in enumerate(target)]
    (ours,) = run_op("Reshape", [x, i64(*spec)], const_inputs=[1])
    assert ours.shape == tuple(target)
    np.testing.assert_array_equal(ours, x.reshape(target))


# ---------------------------------------------------------------- symbolic dims


def _sym_op(op: str, consts: list, attrs: dict | None = None, shape=("batch", 196, 512)):
    g = Graph()
    x = g.add_input("x", TensorType(shape, DType.float32))
    operands = [x] + [None if c is None else g.add_constant(f"c{i}", np.asarray(c))
                      for i, c in enumerate(consts)]
    return g.add_op(op, operands, attrs or {})


@pytest.mark.parametrize("op, consts, attrs, expected", [
    ("Reshape", [i64(-1, 512)], {}, "f32[196*batch, 512]"),
    ("Reshape", [i64(0, -1)], {}, "f32[batch, 100352]"),
    ("Reshape", [i64(0, 14, 14, -1)], {}, "f32[batch, 14, 14, 512]"),
    ("Reshape", [i64(-1)], {}, "f32[100352*batch]"),
    ("Reshape", [i64(0, 196, 8, 64)], {}, "f32[batch, 196, 8, 64]"),
    ("Flatten", [], {}, "f32[batch, 100352]"),
    ("Flatten", [], {"axis": 2}, "f32[196*batch, 512]"),
    ("Flatten", [], {"axis": 0}, "f32[1, 100352*batch]"),
    ("Transpose", [], {"perm": [1, 0, 2]}, "f32[196, batch, 512]"),
    ("Transpose", [], {}, "f32[512, 196, batch]"),
    ("Unsqueeze", [i64(1)], {}, "f32[batch, 1, 196, 512]"),
    ("Tile", [i64(2, 1, 1)], {}, "f32[2*batch, 196, 512]"),
    ("Expand", [i64(3, 1, 1, 1)], {}, "f32[3, batch, 196, 512]"),
    ("Slice", [i64(0), i64(INT64_MAX), i64(0)], {}, "f32[batch, 196, 512]"),
    ("Slice", [i64(-1), i64(INT64_MIN), i64(0), i64(-1)], {}, "f32[batch, 196, 512]"),
    ("Slice", [i64(0, 2), i64(INT64_MAX, 10), i64(0, 1)], {}, "f32[batch, 8, 512]"),
    ("Gather", [i64(0, 1)], {"axis": 1}, "f32[batch, 2, 512]"),
    ("Pad", [i64(0, 1, 0, 0, 2, 0)], {}, "f32[batch, 199, 512]"),
    ("Split", [], {"axis": 1, "num_outputs": 2}, "f32[batch, 98, 512]"),
])
def test_symbolic_result_types(op: str, consts: list, attrs: dict, expected: str) -> None:
    node = _sym_op(op, consts, attrs)
    assert all(str(r.type) == expected for r in node.results)


def test_symbolic_squeeze_and_concat() -> None:
    node = _sym_op("Squeeze", [], shape=("batch", 1, 196, 1))
    assert str(node.result.type) == "f32[batch, 196]"  # a symbol is never assumed to be 1
    g = Graph()
    x = g.add_input("x", TensorType(("batch", 196), DType.float32))
    y = g.add_input("y", TensorType(("2*batch", 196), DType.float32))
    assert str(g.add_op("Concat", [x, y, x], {"axis": 0}).result.type) == "f32[4*batch, 196]"
    assert str(g.add_op("Concat", [x, x], {"axis": 1}).result.type) == "f32[batch, 392]"
    # the second operand starts at the symbolic offset "batch": not an integer map
    d = op_domain(g.add_op("Concat", [x, x], {"axis": 0}))
    assert d.inputs[0].format(d.names) == "[d0, d1]" and d.inputs[1] is None
    # Split offsets of a symbolic dim are symbolic too: no domain
    assert op_domain(g.add_op("Split", [y], {"axis": 0, "num_outputs": 2})) is None
    assert len(g.add_op("Split", [y], {"axis": 0, "num_outputs": 2}).results) == 2


def test_symbolic_reshape_count_mismatch() -> None:
    with pytest.raises(ShapeError, match=r"cannot reshape \[batch, 196, 512\] \(100352\*batch "
                                         r"elements\) to \[batch, 196, 256\] \(50176\*batch"):
        _sym_op("Reshape", [i64(0, 196, 256)])


def test_symbolic_reshape_evaluates_after_binding() -> None:
    node = _sym_op("Reshape", [i64(-1, 512)])
    x = np.random.default_rng(0).standard_normal((3, 196, 512)).astype(np.float32)
    (ours,) = get_op_def("Reshape").evaluate(op_context(node), [x, i64(-1, 512)])
    np.testing.assert_array_equal(ours, x.reshape(-1, 512))


@pytest.mark.parametrize("op, consts, attrs, match", [
    ("Slice", [i64(0), i64(4), i64(0)], {}, "slicing dim 0 of size 'batch'"),
    ("Pad", [i64(1, 0, 0, 0, 0, 0)], {}, "padding dim 0"),
    ("Split", [], {"num_outputs": 2}, "cannot split the symbolic dim 'batch'"),
    ("Reshape", [i64(-1, 3)], {}, "cannot infer the -1"),
])
def test_symbolic_dims_that_need_binding(op: str, consts: list, attrs: dict, match: str) -> None:
    with pytest.raises(UnboundDimError, match=match):
        _sym_op(op, consts, attrs)


# ---------------------------------------------------------------- domains


def _op(op: str, arrays: list, attrs: dict | None = None, const=()):
    return build_op(op, arrays, attrs, const_inputs=const)[1]


def test_transpose_domain_is_the_permutation() -> None:
    d = op_domain(_op("Transpose", [X], {"perm": [2, 0, 1]}))
    assert d.extents == (4, 2, 3) and d.reduction_dims() == ()
    # result[i, j, k] = x[j, k, i]
    assert d.inputs[0].format(d.names) == "[d1, d2, d0]"
    assert d.inputs[0].evaluate((3, 1, 2)) == (1, 2, 3)
    assert d.outputs[0].format(d.names) == "[d0, d1, d2]"


def test_concat_domain_offsets() -> None:
    d = op_domain(_op("Concat", [X, X[:, :1], X[:, 1:]], {"axis": 1}))
    assert d.extents == (2, 6, 4)
    assert [m.format(d.names) for m in d.inputs] == [
        "[d0, d1, d2]", "[d0, d1 - 3, d2]", "[d0, d1 - 4, d2]"]


def test_slice_domain_step_coefficients() -> None:
    node = _op("Slice", [X, i64(-1, 0), i64(INT64_MIN, 4), i64(2, 1), i64(-2, 2)],
               const=[1, 2, 3, 4])
    d = op_domain(node)
    assert d.extents == (2, 2, 2)
    data = d.inputs[0]
    assert data.exprs[1].coeffs == (0, 2, 0) and data.exprs[1].const == 0   # 2*d1
    assert data.exprs[2].coeffs == (0, 0, -2) and data.exprs[2].const == 3  # 3 - 2*d2
    assert d.inputs[1:] == (None, None, None, None)
    # every domain point reads the element the evaluation puts there
    (out,) = run_op("Slice", [X, i64(-1, 0), i64(INT64_MIN, 4), i64(2, 1), i64(-2, 2)],
                    const_inputs=[1, 2, 3, 4])
    for point in np.ndindex(*d.extents):
        assert out[point] == X[data.evaluate(point)]


def test_split_domain_over_input_with_output_offsets() -> None:
    d = op_domain(_op("Split", [X, i64(1, 2)], {"axis": 1}, const=[1]))
    assert d.extents == (2, 3, 4)
    assert d.inputs[0].format(d.names) == "[d0, d1, d2]"
    assert [m.format(d.names) for m in d.outputs] == ["[d0, d1, d2]", "[d0, d1 - 1, d2]"]


def test_pad_expand_squeeze_unsqueeze_gather_domains() -> None:
    d = op_domain(_op("Pad", [X, i64(1, 0, 2, 0, 1, 1)], const=[1]))
    assert d.extents == (3, 4, 7) and d.inputs[0].format(d.names) == "[d0 - 1, d1, d2 - 2]"
    assert op_domain(_op("Pad", [X, i64(1, 0, 2, 0, 1, 1)], {"mode": "reflect"},
                         const=[1])).inputs[0] is None
    d = op_domain(_op("Expand", [X[:, :1], i64(5, 1, 3, 1)], const=[1]))
    assert d.extents == (5, 2, 3, 4) and d.inputs[0].format(d.names) == "[d1, 0, d3]"
    d = op_domain(_op("Squeeze", [X[:, :1, None], i64(1)], const=[1]))
    assert d.inputs[0].format(d.names) == "[d0, 0, d1, d2]"
    d = op_domain(_op("Unsqueeze", [X, i64(0, -1)], const=[1]))
    assert d.extents == (1, 2, 3, 4, 1) and d.inputs[0].format(d.names) == "[d1, d2, d3]"
    d = op_domain(_op("Gather", [X, np.zeros((5, 6), np.int64)], {"axis": 1}))
    assert d.extents == (2, 5, 6, 4)
    assert d.inputs[0] is None and d.inputs[1].format(d.names) == "[d1, d2]"


def test_non_affine_domains_are_opaque() -> None:
    for node in [_op("Reshape", [X, i64(4, 6)], const=[1]),
                 _op("Tile", [X, i64(2, 1, 1)], const=[1])]:
        d = op_domain(node)
        assert d.inputs[0] is None and d.extents == node.result.type.shape


def test_reshapes_that_split_or_merge_dims_are_affine() -> None:
    """Row-major order is kept: loops run over the finer shape, the coarser side is indexed
    by row-major offsets."""
    d = op_domain(_op("Reshape", [X, i64(2, 3, 2, 2)], const=[1]))  # split the last dim
    assert d.extents == (2, 3, 2, 2) and d.inputs[0].format(d.names) == "[d0, d1, 2*d2 + d3]"
    d = op_domain(_op("Flatten", [X]))  # merge: the result is written at offsets
    assert d.extents == (2, 3, 4) and d.outputs[0].format(d.names) == "[d0, 4*d1 + d2]"
    assert d.inputs[0].format(d.names) == "[d0, d1, d2]"


def test_zero_flops_and_category() -> None:
    for op in ["Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split",
               "Slice", "Gather", "GatherElements", "Expand", "Pad", "Tile"]:
        assert get_op_def(op).category is Category.DATA_MOVEMENT
    assert flops_of("Transpose", [X]) == 0
    assert flops_of("Pad", [X, i64(1, 1, 1, 1, 1, 1)], const_inputs=[1]) == 0
    assert op_flops(_sym_op("Reshape", [i64(-1, 512)])) == 0


# ---------------------------------------------------------------- errors


def _fails(op: str, arrays: list, attrs: dict | None = None, const=(), exc=ShapeError) -> str:
    with pytest.raises(exc) as e:
        build_op(op, arrays, attrs, const_inputs=const)
    return str(e.value)


def test_reshape_element_count_error() -> None:
    msg = _fails("Reshape", [np.zeros((2, 3), np.float32), i64(4, 2)], const=[1])
    assert msg.startswith("Reshape operand 1: cannot reshape [2, 3] (6 elements) to [4, 2] "
                          "(8 elements)")
    assert "f32[2, 3], i64[2]" in msg


def test_reshape_minus_one_not_divisible() -> None:
    msg = _fails("Reshape", [np.zeros((2, 3), np.float32), i64(4, -1)], const=[1])
    assert "Reshape operand 1: cannot reshape [2, 3] (6 elements) to [4, -1]" in msg
    assert "not a multiple of 4" in msg
    assert "more than one -1" in _fails("Reshape", [X, i64(-1, -1)], const=[1])


def test_reshape_shape_must_be_constant() -> None:
    msg = _fails("Reshape", [X, i64(4, 6)])
    assert "Reshape operand 1 (shape): must be a constant" in msg


def test_concat_mismatched_dims() -> None:
    msg = _fails("Concat", [X, np.zeros((2, 5, 3), np.float32)], {"axis": 1})
    assert msg.startswith("Concat operand 1: shape [2, 5, 3] differs from operand 0's "
                          "[2, 3, 4] in dim 2 (3 vs 4)")
    assert "rank 2" in _fails("Concat", [X, np.zeros((2, 3), np.float32)], {"axis": 0})
    assert "dtype i32 differs" in _fails("Concat", [X, X.astype(np.int32)], {"axis": 0})


def test_axis_out_of_range_errors() -> None:
    assert "Concat: axis 3 is out of range for rank 3" in _fails("Concat", [X, X], {"axis": 3})
    assert "Gather: axis -4 is out of range" in _fails("Gather", [X, i64(0)], {"axis": -4})
    assert "Flatten operand 0: axis 4 is out of range [-3, 3] for [2, 3, 4]" in _fails(
        "Flatten", [X], {"axis": 4})
    assert "Split: axis 5 is out of range" in _fails("Split", [X, i64(1, 1)], {"axis": 5},
                                                      const=[1])


def test_gather_indices_must_be_integers() -> None:
    msg = _fails("Gather", [X, np.zeros(2, np.float32)])
    assert msg.startswith("Gather operand 1: indices must be int32 or int64, got f32[2]")
    assert "GatherElements operand 1" in _fails("GatherElements", [X, np.zeros((2, 3), np.int64)])


def test_gather_out_of_range_index_fails_at_run_time() -> None:
    from tensorir.errors import InterpreterError
    with pytest.raises(InterpreterError, match="Gather"):
        run_op("Gather", [X, i64(2)])
    with pytest.raises(InterpreterError, match="GatherElements"):
        run_op("GatherElements", [X, np.full((2, 3, 4), -4, np.int64)], {"axis": 1})


def test_other_shape_errors() -> None:
    assert "perm [0, 0, 1] is not a permutation" in _fails("Transpose", [X], {"perm": [0, 0, 1]})
    assert "cannot squeeze dim 1 of [2, 3, 4]: its size is 3, not 1" in _fails(
        "Squeeze", [X, i64(1)], const=[1])
    assert "split sizes [1, 1] add up to 2, not to the size 3 of axis 1" in _fails(
        "Split", [X, i64(1, 1)], {"axis": 1}, const=[1])
    assert "needs the split operand or the num_outputs attribute" in _fails("Split", [X])
    assert "either the split operand or num_outputs" in _fails(
        "Split", [X, i64(1, 2)], {"axis": 1, "num_outputs": 2}, const=[1])
    assert "cannot split a dim of size 5 into 4 outputs" in _fails(
        "Split", [np.zeros(5, np.float32)], {"num_outputs": 4})
    assert "Slice operand 4: step of axis 0 is 0" in _fails(
        "Slice", [X, i64(0), i64(1), i64(0), i64(0)], const=[1, 2, 3, 4])
    assert "Expand operand 1: cannot expand [2, 3, 4] to [5, 4]: dim 1 is 3 vs 5" in _fails(
        "Expand", [X, i64(5, 4)], const=[1])
    assert "pads [1, 1] must have 2 * 3 entries" in _fails("Pad", [X, i64(1, 1)], const=[1])
    assert "unknown mode 'mirror'" in _fails("Pad", [X, i64(0, 0, 0, 0, 0, 0)],
                                             {"mode": "mirror"}, const=[1])
    assert "Tile operand 1: repeats [2] must have one entry per dim of [2, 3, 4]" in _fails(
        "Tile", [X, i64(2)], const=[1])
    assert "Unsqueeze: axis 4 is out of range for rank 4" in _fails(
        "Unsqueeze", [X, i64(4)], const=[1])
