"""TensorView follows NumPy exactly, and the tensorir.view op is a bounds-checked strided read.

NumPy is the oracle: a view of ``np.arange(n)`` holds, at every position, its own storage
offset, so ``arr[idx].ravel()`` lists the offsets the same index must touch.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_harness import build_op, flops_of, run_op
from tensorir import DType, Graph, InvalidOpError, ShapeError, TensorType, ViewError
from tensorir.ops import Category, get_op_def, op_context, op_domain
from tensorir.ops.domain import IterKind
from tensorir.ops.view_op import view_of
from tensorir.view import TensorView, contiguous_strides

FAST = settings(max_examples=200, deadline=None)
SLOW = settings(max_examples=60, deadline=None)

shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
maybe_int = st.none() | st.integers(-9, 9)
slices = st.builds(slice, maybe_int, maybe_int, st.none() | st.integers(-4, 4).filter(bool))
index_items = st.one_of(st.integers(-8, 8), slices, st.just(Ellipsis), st.none())
# a bare item (not a tuple) is indexed like a one-element tuple
index_keys = st.lists(index_items, max_size=5).map(tuple) | index_items


def numpy_view(arr: np.ndarray, key) -> np.ndarray:
    """``arr[key]``, always as an array view: an index with Ellipsis never returns a scalar,
    and a trailing Ellipsis changes nothing else."""
    key = key if isinstance(key, tuple) else (key,)
    if not any(k is Ellipsis for k in key):
        key = key + (Ellipsis,)
    return arr[key]


def layout(arr: np.ndarray, base: np.ndarray) -> tuple[int, tuple, tuple]:
    """(offset, shape, strides) of a NumPy view of ``base``, in elements."""
    item = base.itemsize
    start = arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return start // item, arr.shape, tuple(s // item for s in arr.strides)


def assert_same(view: TensorView, arr: np.ndarray, base: np.ndarray) -> None:
    """The view touches the elements ``arr`` (a view of ``base = arange``) holds, in order,
    with NumPy's offset and strides (size-1 dims' strides never move and are free)."""
    assert view.shape == arr.shape
    np.testing.assert_array_equal(view.element_offsets(), arr.ravel())
    if arr.size:
        offset, _, np_strides = layout(arr, base)
        assert view.offset == offset
        assert [s for d, s in zip(view.shape, view.strides) if d != 1] == \
            [s for d, s in zip(arr.shape, np_strides) if d != 1]
    assert view.is_contiguous == arr.flags.c_contiguous


def brute_offsets(view: TensorView) -> list[int]:
    """Oracle independent of NumPy: loop over every multi-index."""
    return [view.offset + sum(i * s for i, s in zip(idx, view.strides))
            for idx in itertools.product(*(range(d) for d in view.shape))]


# arbitrary strided views (overlapping, broadcast, reversed), not only NumPy-reachable ones
@st.composite
def raw_views(draw, itemsizes=st.just(1)):
    shape = draw(st.lists(st.integers(0, 5), max_size=4))
    strides = draw(st.lists(st.integers(-7, 7), min_size=len(shape), max_size=len(shape)))
    return TensorView(draw(st.integers(-5, 60)), shape, strides, draw(itemsizes))


# ------------------------------------------------------------------------ construction

def test_contiguous_strides_are_row_major_and_count_zero_dims_as_one():
    assert contiguous_strides((2, 3, 4)) == (12, 4, 1)
    assert contiguous_strides(()) == ()
    v = TensorView.contiguous((2, 0, 3))
    assert v.strides == tuple(s // 8 for s in np.arange(0).reshape(2, 0, 3).strides)
    assert str(TensorView.contiguous((2, 3), offset=4)) == "view(offset=4, shape=[2, 3], strides=[3, 1])"


def test_construction_rejects_malformed_views():
    with pytest.raises(ViewError, match="needs 2 strides"):
        TensorView(0, (2, 3), (1,))
    with pytest.raises(ViewError, match="negative dimension"):
        TensorView(0, (2, -1), (1, 1))
    with pytest.raises(ViewError, match="integer"):
        TensorView(0.5, (2,), (1,))
    with pytest.raises(ViewError, match="integer"):
        TensorView(0, (True,), (1,))
    with pytest.raises(ViewError, match="itemsize"):
        TensorView(0, (2,), (1,), itemsize=0)
    # numpy integers are accepted and stored as Python ints
    v = TensorView(np.int64(3), (np.int32(2),), [np.int64(1)], DType.float32)
    assert (v.offset, v.shape, v.strides, v.itemsize) == (3, (2,), (1,), 4)
    assert type(v.offset) is int and type(v.shape[0]) is int
    assert TensorView.contiguous((2,), itemsize=DType.int4).itemsize == Fraction(1, 2)


# ---------------------------------------------------------------------------- indexing

@FAST
@given(shapes, index_keys)
def test_indexing_touches_exactly_numpy_elements(shape, key):
    base = np.arange(math.prod(shape), dtype=np.int64)
    arr = base.reshape(shape)
    view = TensorView.contiguous(shape)
    try:
        expected = numpy_view(arr, key)
    except IndexError:
        with pytest.raises(ViewError):
            view[key]
        return
    assert_same(view[key], expected, base)


@FAST
@given(shapes, st.lists(index_keys, min_size=1, max_size=3))
def test_repeated_indexing_equals_numpy_repeated_indexing(shape, keys):
    base = np.arange(math.prod(shape), dtype=np.int64)
    arr, view = base.reshape(shape), TensorView.contiguous(shape)
    for key in keys:
        try:
            arr = numpy_view(arr, key)
        except IndexError:
            with pytest.raises(ViewError):
                view[key]
            return
        view = view[key]
        assert_same(view, arr, base)


def test_indexing_examples_and_errors():
    v = TensorView.contiguous((4, 5))
    assert str(v[-1]) == "view(offset=15, shape=[5], strides=[1])"
    assert str(v[::-2, 1:4]) == "view(offset=16, shape=[2, 3], strides=[-10, 1])"
    assert str(v[None, ..., 2]) == "view(offset=2, shape=[1, 4], strides=[0, 5])"
    assert v[()] == v and v[...] == v
    assert v[np.int64(1), np.array(2)] == v[1, 2]  # 0-d integer arrays index like ints
    assert v[9:].shape == (0, 5)
    with pytest.raises(ViewError, match="out of bounds for dim 0 with size 4"):
        v[4]
    with pytest.raises(ViewError, match="out of bounds"):
        v[0, -6]
    with pytest.raises(ViewError, match="too many indices"):
        v[0, 0, 0]
    with pytest.raises(ViewError, match="single ellipsis"):
        v[..., ...]
    with pytest.raises(ViewError, match="slice"):
        v[::0]
    for advanced in (True, [0, 1], np.array([0, 1]), 1.0):
        with pytest.raises(ViewError, match="advanced indexing"):
            v[advanced]
    scalar = TensorView.contiguous(())
    assert scalar[None].shape == (1,)
    with pytest.raises(ViewError, match="too many indices"):
        scalar[0]


# -------------------------------------------------- transpose, broadcast_to, reshape chains

@st.composite
def reshape_targets(draw, numel: int):
    """Shapes of ``numel`` elements (sometimes with a -1), built from its prime factors."""
    if numel == 0:
        dims = draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))
        if 0 not in dims:
            dims[draw(st.integers(0, len(dims) - 1))] = 0
    else:
        factors, n, p = [], numel, 2
        while n > 1:
            while n % p == 0:
                factors.append(p)
                n //= p
            p += 1
        groups = draw(st.integers(1, 4))
        dims = [1] * groups
        for f in draw(st.permutations(factors)):
            dims[draw(st.integers(0, groups - 1))] *= f
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@st.composite
def broadcast_targets(draw, shape: tuple):
    lead = draw(st.lists(st.integers(0, 3), max_size=2))
    return tuple(lead) + tuple(draw(st.integers(0, 3)) if d == 1 else d for d in shape)


def check_reshape(view: TensorView, arr: np.ndarray, target: tuple,
                  base: np.ndarray) -> tuple[TensorView, np.ndarray] | None:
    """Reshape both; they must succeed together (copy-free) or fail for the same reason."""
    try:
        out = np.reshape(arr, target, copy=False)
    except ValueError as exc:
        # NumPy says "Unable to avoid creating a copy" or "cannot reshape array of size"
        match = "needs a copy" if "copy" in str(exc) else "cannot reshape"
        with pytest.raises(ViewError, match=match):
            view.reshape(target)
        return None
    assert np.shares_memory(out, arr) or out.size == 0
    got = view.reshape(target)
    assert_same(got, out, base)
    return got, out


@SLOW
@given(shapes, st.data())
def test_chains_of_view_ops_equal_the_same_numpy_chain(shape, data):
    base = np.arange(math.prod(shape), dtype=np.int64)
    arr, view = base.reshape(shape), TensorView.contiguous(shape)
    for _ in range(data.draw(st.integers(1, 5))):
        step = data.draw(st.sampled_from(["index", "transpose", "T", "broadcast", "reshape",
                                          "squeeze", "expand"]))
        if step == "index":
            key = data.draw(index_keys)
            try:
                arr = numpy_view(arr, key)
            except IndexError:
                continue
            view = view[key]
        elif step == "transpose":
            perm = data.draw(st.permutations(range(arr.ndim)))
            arr, view = arr.transpose(perm), view.transpose(*perm)
        elif step == "T":
            arr, view = arr.T, view.T
        elif step == "broadcast":
            target = data.draw(broadcast_targets(arr.shape))
            arr, view = np.broadcast_to(arr, target), view.broadcast_to(target)
        elif step == "reshape":
            done = check_reshape(view, arr, data.draw(reshape_targets(arr.size)), base)
            if done is None:
                continue
            view, arr = done
        elif step == "squeeze":
            arr, view = arr.squeeze(), view.squeeze()
        else:
            axis = data.draw(st.integers(-arr.ndim - 1, arr.ndim))
            arr, view = np.expand_dims(arr, axis), view.expand_dims(axis)
        assert_same(view, arr, base)


@FAST
@given(shapes, index_keys, st.data())
def test_reshape_succeeds_exactly_when_numpy_needs_no_copy(shape, key, data):
    base = np.arange(math.prod(shape), dtype=np.int64)
    arr, view = base.reshape(shape), TensorView.contiguous(shape)
    try:
        arr = numpy_view(arr, key)
    except IndexError:
        return
    view = view[key]
    perm = data.draw(st.permutations(range(arr.ndim)))
    arr, view = arr.transpose(perm), view.transpose(perm)
    check_reshape(view, arr, data.draw(reshape_targets(arr.size)), base)


def test_reshape_examples_and_errors():
    v = TensorView.contiguous((4, 6))
    # columns 0, 2, 4 of rows 6 wide are every second element: one stride-2 run
    assert str(v[:, ::2].reshape((12,))) == "view(offset=0, shape=[12], strides=[2])"
    # columns 0-2: rows merge with each other but not with the columns
    cols = v[:, :3]
    assert str(cols.reshape((2, 2, 3))) == "view(offset=0, shape=[2, 2, 3], strides=[12, 6, 1])"
    with pytest.raises(ViewError, match=r"reshape of view\(offset=0, shape=\[4, 3\].* needs a copy"):
        cols.reshape((12,))
    assert v.reshape((-1,)).shape == (24,)
    assert v.reshape((2, -1, 3)).shape == (2, 4, 3)
    with pytest.raises(ViewError, match="only one -1"):
        v.reshape((-1, -1))
    with pytest.raises(ViewError, match="size 24 into shape"):
        v.reshape((5, 5))
    with pytest.raises(ViewError, match="size 0 into shape"):
        v[:0].reshape((0, -1))  # as NumPy: -1 is ambiguous next to a 0
    bcast = TensorView.contiguous((3,)).broadcast_to((4, 3))
    assert bcast.reshape((2, 2, 3)).strides == (0, 0, 1)
    with pytest.raises(ViewError, match="needs a copy"):
        bcast.reshape((12,))


def test_transpose_broadcast_squeeze_errors():
    v = TensorView.contiguous((2, 3))
    assert v.transpose() == v.T == v.permute() == v.transpose((1, 0)) == v.permute([1, 0])
    assert v.transpose(-1, 0) == v.T
    with pytest.raises(ViewError, match="permutation"):
        v.transpose(0, 0)
    with pytest.raises(ViewError, match="don't match"):
        v.transpose(0, 1, 2)
    with pytest.raises(ViewError, match="dim 1 has size 3, target 4"):
        v.broadcast_to((2, 4))
    with pytest.raises(ViewError, match="lower-rank"):
        v.broadcast_to((3,))
    with pytest.raises(ViewError, match="cannot squeeze"):
        v.squeeze(0)
    with pytest.raises(ViewError, match="repeated axis"):
        v.expand_dims((0, 0))


@FAST
@given(shapes, st.lists(st.integers(0, 7), max_size=5).map(tuple))
def test_broadcast_to_fails_exactly_when_numpy_does(shape, target):
    base = np.arange(math.prod(shape), dtype=np.int64)
    arr, view = base.reshape(shape), TensorView.contiguous(shape)
    try:
        expected = np.broadcast_to(arr, target)
    except ValueError:
        with pytest.raises(ViewError):
            view.broadcast_to(target)
        return
    assert_same(view.broadcast_to(target), expected, base)


# ------------------------------------------------------------------ offsets and ranges

@FAST
@given(raw_views())
def test_element_offsets_extent_and_bounds_agree_with_brute_force(view):
    offsets = brute_offsets(view)
    got = view.element_offsets()
    assert got.dtype == np.int64 and got.tolist() == offsets
    assert view.numel == len(offsets)
    if offsets:
        assert view.extent() == (min(offsets), max(offsets) + 1)
        for n in (max(offsets), max(offsets) + 1):
            assert view.in_bounds(n) == (min(offsets) >= 0 and max(offsets) < n)
    else:
        assert view.extent() is None and view.in_bounds(0)


itemsizes = st.sampled_from([1, 2, 4, 8, DType.int4, DType.bfloat16, DType.float32])


@FAST
@given(raw_views(itemsizes))
def test_byte_ranges_cover_exactly_the_touched_bytes_sorted_disjoint_merged(view):
    bits = int(view.itemsize * 8)
    expected = set()
    for e in brute_offsets(view):  # each element's bits, rounded out to whole bytes
        expected.update(range((e * bits) // 8, -((-(e + 1) * bits) // 8)))
    ranges = view.byte_ranges()
    assert ranges.dtype == np.int64 and ranges.ndim == 2 and ranges.shape[1] == 2
    covered = set()
    for start, end in ranges.tolist():
        assert start < end
        covered.update(range(start, end))
    assert covered == expected
    # sorted, and each range ends strictly before the next begins (merged: none adjacent)
    assert np.all(ranges[1:, 0] > ranges[:-1, 1])


def test_byte_ranges_examples():
    v = TensorView.contiguous((4, 6), itemsize=4)
    np.testing.assert_array_equal(v.byte_ranges(), [[0, 96]])
    np.testing.assert_array_equal(v[:, 1:3].byte_ranges(), [[4, 12], [28, 36], [52, 60], [76, 84]])
    np.testing.assert_array_equal(v[::-1, 0].byte_ranges(), [[0, 4], [24, 28], [48, 52], [72, 76]])
    # int4: elements 1 and 2 share no byte, but 2 and 3 do
    np.testing.assert_array_equal(TensorView(1, (3,), (1,), DType.int4).byte_ranges(), [[0, 2]])
    assert TensorView.contiguous((0, 3)).byte_ranges().shape == (0, 2)
    # a broadcast view touches its row once
    np.testing.assert_array_equal(TensorView.contiguous((3,), 5, 2).broadcast_to((1000, 3))
                                  .byte_ranges(), [[10, 16]])


def test_large_views_are_vectorised():
    # 4M elements in 2K runs, and an 8M-element broadcast: quick only without element loops
    v = TensorView.contiguous((4096, 2048), itemsize=2)[::2]
    assert v.byte_ranges().shape == (2048, 2)
    assert v.element_offsets().shape == (2048 * 2048,)
    b = TensorView.contiguous((64,)).broadcast_to((4096, 2048, 64))
    np.testing.assert_array_equal(b.byte_ranges(), [[0, 64]])


# ------------------------------------------------------------------------------ apply

@FAST
@given(shapes, index_keys, st.data())
def test_apply_equals_numpy_indexing_on_real_data(shape, key, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    real = rng.standard_normal(shape).astype(np.float32)
    try:
        expected = numpy_view(real, key)
    except IndexError:
        return
    perm = data.draw(st.permutations(range(expected.ndim)))
    view = TensorView.contiguous(shape)[key].transpose(perm)
    got = view.apply(real)
    np.testing.assert_array_equal(got, expected.transpose(perm))
    assert got.dtype == np.float32
    assert got.size == 0 or np.shares_memory(got, real)


@FAST
@given(raw_views(), st.integers(0, 40))
def test_apply_reads_offsets_or_raises_when_out_of_bounds(view, size):
    storage = np.arange(size, dtype=np.int32) * 10
    if not view.in_bounds(size):
        with pytest.raises(ViewError, match=f"base has {size} elements"):
            view.apply(storage)
        return
    got = view.apply(storage)
    assert got.shape == view.shape
    np.testing.assert_array_equal(got.ravel(), storage[view.element_offsets()])


def test_apply_needs_contiguous_base_and_is_read_only_unless_asked():
    base = np.arange(12.0).reshape(3, 4)
    with pytest.raises(ViewError, match="C-contiguous"):
        TensorView.contiguous((6,)).apply(base[:, ::2])
    view = TensorView.contiguous((3, 4))[1]
    with pytest.raises(ValueError):
        view.apply(base)[0] = -1.0
    view.apply(base, writeable=True)[0] = -1.0
    assert base[1, 0] == -1.0


# -------------------------------------------------------------------------- the op

def view_attrs(view: TensorView) -> dict:
    return {"offset": view.offset, "shape": view.shape, "strides": view.strides}


@SLOW
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), index_keys, st.data())
def test_view_op_evaluates_like_numpy_indexing(shape, key, data):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        expected = numpy_view(x, key)
    except IndexError:
        return
    perm = data.draw(st.permutations(range(expected.ndim)))
    view = TensorView.contiguous(shape)[key].transpose(perm)
    (got,) = run_op("tensorir.view", [x], view_attrs(view))
    np.testing.assert_array_equal(got, expected.transpose(perm))
    assert not np.shares_memory(got, x)  # a copy: results never alias operands


def test_view_op_type_and_registration():
    opdef = get_op_def("tensorir.view")
    assert opdef.category is Category.DATA_MOVEMENT
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    attrs = {"offset": 23, "shape": (3, 2), "strides": (-4, -12)}
    g, op = build_op("tensorir.view", [x], attrs)
    assert op.result.type == TensorType((3, 2), DType.int64)
    (got,) = run_op("tensorir.view", [x], attrs)
    np.testing.assert_array_equal(got, [[23, 11], [19, 7], [15, 3]])
    assert flops_of("tensorir.view", [x], attrs) == 0
    assert view_of(op) == TensorView(23, (3, 2), (-4, -12), DType.int64)
    assert view_of(op_context(op)) == view_of(op)
    assert view_of(op).byte_ranges().tolist() == [[24, 32], [56, 64], [88, 96], [120, 128],
                                                   [152, 160], [184, 192]]
    domain = op_domain(op)
    assert domain.inputs == (None,) and domain.extents == (3, 2)
    assert all(d.kind is IterKind.PARALLEL for d in domain.dims)
    # an empty view touches nothing, wherever it starts
    (empty,) = run_op("tensorir.view", [x], {"offset": 99, "shape": (0, 5), "strides": (1, 1)})
    assert empty.shape == (0, 5)
    # a rank-0 view is one element
    (one,) = run_op("tensorir.view", [x], {"offset": 5, "shape": (), "strides": ()})
    assert one.shape == () and one == 5


@pytest.mark.parametrize("attrs, extent", [
    ({"offset": 20, "shape": (2, 3), "strides": (3, 1)}, "[20, 26)"),
    ({"offset": 1, "shape": (3,), "strides": (-1,)}, "[-1, 2)"),
    ({"offset": 0, "shape": (25,), "strides": (1,)}, "[0, 25)"),
])
def test_view_op_rejects_out_of_bounds_views(attrs, extent):
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(ShapeError) as info:
        build_op("tensorir.view", [x], attrs)
    message = str(info.value)
    assert "tensorir.view" in message and extent in message
    assert "f32[4, 6]" in message and "24 elements" in message


def test_view_op_rejects_bad_attributes_and_symbolic_bases():
    x = np.zeros((4,), np.float32)
    with pytest.raises(InvalidOpError, match="missing required attribute 'strides'"):
        build_op("tensorir.view", [x], {"offset": 0, "shape": (2,)})
    with pytest.raises(ShapeError, match="needs 1 strides"):
        build_op("tensorir.view", [x], {"offset": 0, "shape": (2,), "strides": (1, 1)})
    with pytest.raises(ShapeError, match="negative dimension"):
        build_op("tensorir.view", [x], {"offset": 0, "shape": (-2,), "strides": (1,)})
    g = Graph("sym")
    v = g.add_input("v", TensorType(("batch", 4), DType.float32))
    with pytest.raises(ShapeError, match="static shape"):
        g.add_op("tensorir.view", [v], {"offset": 0, "shape": (4,), "strides": (1,)})
    with pytest.raises(ViewError, match="not a tensorir.view op"):
        view_of(build_op("Relu", [x])[1])
