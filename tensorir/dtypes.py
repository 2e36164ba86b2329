"""Element types: name, size in bits and the NumPy type that holds the elements.

bfloat16 and int4 come from ``ml_dtypes`` (a dependency of onnx) so that NumPy arrays of them
exist; int4 counts as half a byte for memory sizes even though NumPy stores one per byte.
"""

from __future__ import annotations

import enum
from fractions import Fraction

import ml_dtypes
import numpy as np

from .errors import TensorIRError


class DType(enum.Enum):
    """An element type. ``value`` is the short name used in the text form (``f32``)."""

    float64 = "f64"
    float32 = "f32"
    float16 = "f16"
    bfloat16 = "bf16"
    int64 = "i64"
    int32 = "i32"
    int16 = "i16"
    int8 = "i8"
    int4 = "i4"
    uint8 = "u8"
    bool = "bool"

    @property
    def short(self) -> str:
        return self.value

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def itemsize(self) -> Fraction:
        """Bytes per element; a Fraction so that int4 is exactly 1/2."""
        return Fraction(self.bits, 8)

    @property
    def numpy(self) -> np.dtype:
        return _NUMPY[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.float64, DType.float32, DType.float16, DType.bfloat16)

    @property
    def is_integer(self) -> bool:
        return self in (DType.int64, DType.int32, DType.int16, DType.int8, DType.int4, DType.uint8)

    def nbytes(self, numel: int) -> int:
        """Bytes needed to store ``numel`` elements (rounded up for sub-byte types)."""
        return -((-numel * self.bits) // 8)

    @staticmethod
    def parse(name: str) -> "DType":
        """Accept the short name (``f32``) or the long one (``float32``)."""
        found = _BY_NAME.get(name)
        if found is None:
            raise TensorIRError(f"unknown dtype {name!r}; expected one of "
                                f"{', '.join(d.short for d in DType)}")
        return found

    @staticmethod
    def from_numpy(dtype: np.dtype | type) -> "DType":
        found = _BY_NUMPY.get(np.dtype(dtype))
        if found is None:
            raise TensorIRError(f"NumPy dtype {np.dtype(dtype)} has no tensorir equivalent")
        return found

    def __str__(self) -> str:
        return self.value


_BITS = {
    DType.float64: 64, DType.float32: 32, DType.float16: 16, DType.bfloat16: 16,
    DType.int64: 64, DType.int32: 32, DType.int16: 16, DType.int8: 8, DType.int4: 4,
    DType.uint8: 8, DType.bool: 8,
}
_NUMPY = {
    DType.float64: np.dtype(np.float64), DType.float32: np.dtype(np.float32),
    DType.float16: np.dtype(np.float16), DType.bfloat16: np.dtype(ml_dtypes.bfloat16),
    DType.int64: np.dtype(np.int64), DType.int32: np.dtype(np.int32),
    DType.int16: np.dtype(np.int16), DType.int8: np.dtype(np.int8),
    DType.int4: np.dtype(ml_dtypes.int4), DType.uint8: np.dtype(np.uint8),
    DType.bool: np.dtype(np.bool_),
}
_BY_NAME = {d.short: d for d in DType} | {d.name: d for d in DType}
_BY_NUMPY = {v: k for k, v in _NUMPY.items()}

# ONNX TensorProto.DataType codes of the dtypes tensorir has (Cast's ``to``, model tensors).
ONNX_CODES: dict[int, DType] = {
    1: DType.float32, 2: DType.uint8, 3: DType.int8, 5: DType.int16, 6: DType.int32,
    7: DType.int64, 9: DType.bool, 10: DType.float16, 11: DType.float64, 16: DType.bfloat16,
    22: DType.int4,
}
# Names of the codes tensorir cannot hold, so that an error says what the model asked for.
ONNX_UNSUPPORTED_NAMES: dict[int, str] = {
    0: "UNDEFINED", 4: "UINT16", 8: "STRING", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
    15: "COMPLEX128", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
    20: "FLOAT8E5M2FNUZ", 21: "UINT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2",
    26: "INT2", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
}
_TO_ONNX = {d: c for c, d in ONNX_CODES.items()}


def dtype_from_onnx(code: int) -> DType:
    """The DType of an ONNX TensorProto.DataType code; a TensorIRError naming it otherwise."""
    found = ONNX_CODES.get(int(code))
    if found is None:
        name = ONNX_UNSUPPORTED_NAMES.get(int(code), "unknown")
        raise TensorIRError(f"ONNX element type {code} ({name}) has no tensorir equivalent")
    return found


def dtype_to_onnx(dtype: DType) -> int:
    return _TO_ONNX[dtype]
