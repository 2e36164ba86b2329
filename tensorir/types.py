"""TensorType: a shape (ints or symbolic dims) and an element type. Immutable."""

from __future__ import annotations

from typing import Mapping, Sequence

import attrs

from . import dims as _dims
from .dims import Dim
from .dtypes import DType
from .errors import UnboundDimError


def _normalize_shape(shape: Sequence[Dim]) -> tuple[Dim, ...]:
    return tuple(_dims.normalize(d) for d in shape)


@attrs.frozen(cache_hash=True)   # immutable; hashed in every structural key
class TensorType:
    """Shape and dtype of a value. ``str(t)`` is the text form, e.g. ``f32[batch, 784]``."""

    shape: tuple[Dim, ...] = attrs.field(converter=_normalize_shape)
    dtype: DType = attrs.field(validator=attrs.validators.instance_of(DType))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def symbols(self) -> set[str]:
        out: set[str] = set()
        for d in self.shape:
            out |= _dims.symbols(d)
        return out

    @property
    def numel(self) -> int:
        """Number of elements; raises UnboundDimError while a dim is symbolic."""
        if not self.is_static:
            raise UnboundDimError(f"{self} has symbolic dims {sorted(self.symbols)}; bind them "
                                  f"to count its elements")
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.dtype.nbytes(self.numel)

    def bind(self, env: Mapping[str, int]) -> "TensorType":
        """Resolve the symbols named in ``env`` (``t.bind({"batch": 1})``)."""
        return TensorType(tuple(_dims.bind(d, env) for d in self.shape), self.dtype)

    def with_shape(self, shape: Sequence[Dim]) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{', '.join(str(d) for d in self.shape)}]"
