from fractions import Fraction

import numpy as np
import pytest

from tensorir import DType, ShapeError, TensorType, UnboundDimError
from tensorir import dims


def test_dtype_itemsizes_and_numpy_mapping():
    assert DType.float32.itemsize == 4
    assert DType.int4.itemsize == Fraction(1, 2)
    assert DType.int4.nbytes(3) == 2  # sub-byte types round up
    assert DType.bfloat16.numpy.itemsize == 2
    for d in DType:
        assert DType.from_numpy(d.numpy) is d
        assert DType.parse(d.short) is d and DType.parse(d.name) is d


def test_symbolic_products_are_canonical():
    assert dims.mul("batch", 196) == "196*batch"
    assert dims.mul(196, "batch") == dims.normalize("batch*196")
    assert dims.div("196*batch", 196) == "batch"
    assert dims.div("196*batch", "batch") == 196
    assert dims.prod([2, "seq", "batch"]) == "2*batch*seq"
    assert dims.bind("196*batch", {"batch": 2}) == 392


def test_inexact_symbolic_division_needs_binding():
    with pytest.raises(UnboundDimError, match="bind"):
        dims.div("batch", 3)
    with pytest.raises(ShapeError, match="not divisible"):
        dims.div(10, 3)


def test_sums_of_like_symbolic_terms_are_exact():
    assert dims.add(3, 4) == 7
    assert dims.add("batch", "batch") == "2*batch"
    assert dims.add("2*batch*seq", "seq*batch") == "3*batch*seq"
    assert dims.add(0, "batch*196") == "196*batch"
    assert dims.add("batch", 0) == "batch"
    with pytest.raises(UnboundDimError, match=r"'batch' \+ 1 is not a product of symbols; bind"):
        dims.add("batch", 1)
    with pytest.raises(UnboundDimError, match="bind"):
        dims.add("batch", "seq")


def test_tensor_type_bind_and_sizes():
    t = TensorType(("batch", 3, 224, 224), DType.float32)
    assert str(t) == "f32[batch, 3, 224, 224]"
    assert not t.is_static and t.symbols == {"batch"}
    with pytest.raises(UnboundDimError, match="batch"):
        t.numel
    bound = t.bind({"batch": 2})
    assert bound.shape == (2, 3, 224, 224) and bound.nbytes == 2 * 3 * 224 * 224 * 4
    assert TensorType((3,), DType.int4).nbytes == 2
    assert TensorType((np.int64(3),), DType.int8).shape == (3,)
