"""TensorView: a strided view (offset, shape, strides) of a value's flat storage.

A view says which storage elements a tensor reads: element ``[i0, i1, ...]`` lives at storage
offset ``offset + i0*strides[0] + i1*strides[1] + ...`` (all in elements, not bytes). Strides
may be 0 (a broadcast dim) or negative (a reversed slice). The scheduler describes tiles as
views of a buffer and the verifier checks them against their base storage, so every
operation here follows NumPy exactly (indexing, transpose, broadcast_to, copy-free reshape)
and is computed arithmetically: offsets of individual elements are only ever produced by
vectorised NumPy code, never by Python loops over elements.

>>> import numpy as np
>>> v = TensorView.contiguous((4, 6))
>>> w = v[1:3, ::2]
>>> print(w)
view(offset=6, shape=[2, 3], strides=[6, 2])
>>> w.element_offsets().tolist()
[6, 8, 10, 12, 14, 16]
>>> w.extent(), w.in_bounds(24), w.in_bounds(16)
((6, 17), True, False)
>>> TensorView.contiguous((4,), itemsize=4)[1:3].byte_ranges().tolist()
[[4, 12]]
>>> w.apply(np.arange(24)).tolist()
[[6, 8, 10], [12, 14, 16]]
>>> w.T.reshape((6,))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tensorir.errors.ViewError: reshape of view(offset=6, shape=[3, 2], strides=[2, 6]) into shape [6] needs a copy...
"""

from __future__ import annotations

import operator
from fractions import Fraction
from typing import Any, Iterable, Sequence

import attrs
import numpy as np

from .dtypes import DType
from .errors import ViewError

__all__ = ["TensorView", "contiguous_strides"]


def _as_int(value: Any, what: str) -> int:
    """An exact Python int (numpy integers accepted); bools and floats are rejected."""
    if isinstance(value, (bool, np.bool_)):
        raise ViewError(f"{what} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ViewError(f"{what} must be an integer, got {value!r}") from None


def _int_tuple(values: Iterable[Any], what: str) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)):
        values = (values,)
    try:
        items = tuple(values)
    except TypeError:
        raise ViewError(f"{what} must be a sequence of integers, got {values!r}") from None
    return tuple(_as_int(v, f"{what}[{i}]") for i, v in enumerate(items))


def _shape_tuple(values: Iterable[Any]) -> tuple[int, ...]:
    shape = _int_tuple(values, "shape")
    if any(d < 0 for d in shape):
        raise ViewError(f"shape {list(shape)} has a negative dimension")
    return shape


def _itemsize(value: Any) -> int | Fraction:
    """Bytes per element: an int, a Fraction (int4 is 1/2) or a DType's size."""
    if isinstance(value, DType):
        value = value.itemsize
    if isinstance(value, (bool, np.bool_)):
        raise ViewError(f"itemsize must be a positive number of bytes, got {value!r}")
    if isinstance(value, Fraction):
        size: int | Fraction = value.numerator if value.denominator == 1 else value
    else:
        size = _as_int(value, "itemsize")
    # byte ranges are computed in bits, so an element must be a whole number of bits
    if size <= 0 or (size * 8) != int(size * 8):
        raise ViewError(f"itemsize must be a positive whole number of bits, got {value!r}")
    return size


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major strides (in elements) of ``shape``.

    Like NumPy, a dim of size 0 counts as 1 for the strides of the dims before it, so an
    empty tensor still gets distinct, positive strides.
    """
    strides = []
    step = 1
    for d in reversed(shape):
        strides.append(step)
        step *= d if d else 1
    return tuple(reversed(strides))


def _merge_runs(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Merge half-open ranges sorted by start into disjoint, non-adjacent ones, shape (k, 2)."""
    if starts.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    reach = np.maximum.accumulate(ends)  # a range may be swallowed by an earlier, longer one
    # a new merged range begins where a start lies strictly past everything so far
    breaks = np.flatnonzero(starts[1:] > reach[:-1])
    first = np.concatenate(([0], breaks + 1))
    last = np.concatenate((breaks, [starts.size - 1]))
    return np.stack((starts[first], reach[last]), axis=1).astype(np.int64, copy=False)


@attrs.frozen
class TensorView:
    """A view of flat storage: ``offset`` and ``strides`` in elements, ``shape`` in elements.

    ``itemsize`` (bytes per element, or a :class:`DType`) only matters for :meth:`byte_ranges`.
    Build one with :meth:`contiguous` and derive others with indexing and the methods below;
    each result is a new view, the original is unchanged.
    """

    offset: int = attrs.field(converter=lambda v: _as_int(v, "offset"))
    shape: tuple[int, ...] = attrs.field(converter=_shape_tuple)
    strides: tuple[int, ...] = attrs.field(converter=lambda v: _int_tuple(v, "strides"))
    itemsize: int | Fraction = attrs.field(default=1, converter=_itemsize)

    def __attrs_post_init__(self) -> None:
        if len(self.strides) != len(self.shape):
            raise ViewError(f"a view of shape {list(self.shape)} needs {len(self.shape)} "
                            f"strides, got {list(self.strides)}")

    @classmethod
    def contiguous(cls, shape: Sequence[int], offset: int = 0,
                   itemsize: int | Fraction | DType = 1) -> "TensorView":
        """The row-major view of ``shape`` starting at ``offset``."""
        shape = _shape_tuple(shape)
        return cls(offset, shape, contiguous_strides(shape), itemsize)

    def _derive(self, offset: int, shape: Sequence[int], strides: Sequence[int]) -> "TensorView":
        return TensorView(offset, tuple(shape), tuple(strides), self.itemsize)

    # ---------------------------------------------------------------- queries
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_empty(self) -> bool:
        return 0 in self.shape

    @property
    def is_contiguous(self) -> bool:
        """Row-major contiguous as NumPy's C_CONTIGUOUS flag: size-1 dims' strides are ignored,
        an empty view counts as contiguous, and the offset does not matter."""
        if self.is_empty:
            return True
        expected = 1
        for d, s in zip(reversed(self.shape), reversed(self.strides)):
            if d == 1:
                continue
            if s != expected:
                return False
            expected *= d
        return True

    def extent(self) -> tuple[int, int] | None:
        """``(min offset, max offset + 1)`` of the touched elements; None for an empty view.

        Computed from the strides alone: each dim moves the offset by ``stride * (size - 1)``
        at most, downwards for a negative stride.
        """
        if self.is_empty:
            return None
        lo = hi = self.offset
        for d, s in zip(self.shape, self.strides):
            span = s * (d - 1)
            if span < 0:
                lo += span
            else:
                hi += span
        return lo, hi + 1

    def in_bounds(self, storage_numel: int) -> bool:
        """Whether every touched element lies in ``[0, storage_numel)`` (an empty view always
        does: it touches nothing)."""
        ext = self.extent()
        return ext is None or (ext[0] >= 0 and ext[1] <= storage_numel)

    def element_offsets(self) -> np.ndarray:
        """Storage offset (int64) of every element, in the view's row-major order."""
        total = np.array(self.offset, dtype=np.int64)
        for axis, (d, s) in enumerate(zip(self.shape, self.strides)):
            # one arange per dim, laid along its own axis; broadcasting sums them up
            along = [1] * self.ndim
            along[axis] = d
            total = total + (np.arange(d, dtype=np.int64) * s).reshape(along)
        return np.broadcast_to(total, self.shape).reshape(-1)

    def _runs(self) -> np.ndarray:
        """Sorted, merged ``[start, end)`` element ranges the view touches, shape (k, 2).

        Canonicalises first so the work is proportional to the number of runs, not elements:
        broadcast dims are dropped (they repeat elements), negative strides flipped (same set
        of elements), dims sorted by stride and mergeable neighbours fused; the innermost
        stride-1 dim then becomes the run length.
        """
        if self.is_empty:
            return np.zeros((0, 2), dtype=np.int64)
        offset = self.offset
        dims: list[tuple[int, int]] = []
        for d, s in zip(self.shape, self.strides):
            if d == 1 or s == 0:
                continue
            if s < 0:
                offset += s * (d - 1)
                s = -s
            dims.append((s, d))
        dims.sort(reverse=True)
        fused: list[tuple[int, int]] = []
        for s, d in dims:
            # an outer dim stepping exactly over an inner one spans one longer run of it
            if fused and fused[-1][0] == s * d:
                fused[-1] = (s, fused[-1][1] * d)
            else:
                fused.append((s, d))
        run = 1
        if fused and fused[-1][0] == 1:
            run = fused.pop()[1]
        outer = TensorView(offset, [d for _, d in fused], [s for s, _ in fused])
        starts = np.sort(outer.element_offsets())
        return _merge_runs(starts, starts + run)

    def byte_ranges(self) -> np.ndarray:
        """Sorted, disjoint, merged ``[start, end)`` byte ranges touched, an int64 (k, 2) array.

        Adjacent ranges are merged, so two ranges never touch. Sub-byte element types (int4)
        round outwards to whole bytes, and ranges sharing a byte merge.
        """
        runs = self._runs()
        bits = int(self.itemsize * 8)
        starts = (runs[:, 0] * bits) // 8
        ends = -((-runs[:, 1] * bits) // 8)
        return _merge_runs(starts, ends)

    def apply(self, base: np.ndarray, writeable: bool = False) -> np.ndarray:
        """This view of ``base`` (read as its flat row-major storage), as a NumPy view.

        ``base`` must be C-contiguous, so that flattening it does not copy; strides are scaled
        by its itemsize. The result is read-only unless ``writeable`` (then writes go to
        ``base``; a view with repeated elements makes such writes order-dependent).
        """
        base = np.asarray(base)
        if not base.flags.c_contiguous:
            raise ViewError(f"{self} can only be applied to C-contiguous storage; got an "
                            f"array of shape {list(base.shape)} with strides "
                            f"{list(base.strides)} (use np.ascontiguousarray)")
        flat = base.reshape(-1)
        if not self.in_bounds(flat.size):
            lo, hi = self.extent()  # type: ignore[misc]
            raise ViewError(f"{self} touches storage offsets [{lo}, {hi}) but the base has "
                            f"{flat.size} elements")
        if self.is_empty:
            return np.lib.stride_tricks.as_strided(flat[:0], self.shape, (0,) * self.ndim,
                                                   writeable=writeable)
        item = flat.itemsize
        # start the NumPy view at this view's element [0, ...]; negative strides reach below
        # it, which is fine because the bounds check above covers the whole extent
        return np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape,
                                               tuple(s * item for s in self.strides),
                                               writeable=writeable)

    # ------------------------------------------------------------- indexing
    def __getitem__(self, key: Any) -> "TensorView":
        """NumPy basic indexing: ints, slices, Ellipsis and None (newaxis).

        Advanced indexing (arrays, lists, bools) makes copies in NumPy and is rejected.
        """
        if not isinstance(key, tuple):
            key = (key,)
        items: list[Any] = []  # each None, Ellipsis, a slice or an exact int
        for k in key:
            if k is None or k is Ellipsis or isinstance(k, slice):
                items.append(k)
                continue
            # bools and arrays would be advanced indexing in NumPy (a copy, not a view);
            # 0-d integer arrays count as ints there, so they do here
            if isinstance(k, (bool, np.bool_)) or (isinstance(k, np.ndarray) and k.ndim):
                raise ViewError(f"only integers, slices, Ellipsis and None index a view "
                                f"(advanced indexing copies); got {k!r}")
            try:
                items.append(operator.index(k))
            except TypeError:
                raise ViewError(f"only integers, slices, Ellipsis and None index a view "
                                f"(advanced indexing copies); got {k!r}") from None
        n_ellipsis = sum(1 for k in items if k is Ellipsis)
        if n_ellipsis > 1:
            raise ViewError(f"an index can only have a single ellipsis ('...'), got {key!r}")
        consumed = sum(1 for k in items if k is not None and k is not Ellipsis)
        if consumed > self.ndim:
            raise ViewError(f"too many indices for {self}: {consumed} indices for "
                            f"{self.ndim} dims")
        if n_ellipsis == 0:
            items.append(Ellipsis)  # missing trailing indices are full slices
        offset = self.offset
        shape: list[int] = []
        strides: list[int] = []
        dim = 0
        for k in items:
            if k is None:
                shape.append(1)
                strides.append(0)  # as NumPy: a new axis never moves through storage
            elif k is Ellipsis:
                for _ in range(self.ndim - consumed):
                    shape.append(self.shape[dim])
                    strides.append(self.strides[dim])
                    dim += 1
            elif isinstance(k, slice):
                size, stride = self.shape[dim], self.strides[dim]
                try:
                    start, stop, step = k.indices(size)  # Python's clamping is NumPy's
                except (TypeError, ValueError) as exc:
                    raise ViewError(f"bad slice {k!r} for dim {dim} of {self}: {exc}") from None
                # NumPy moves the start even for an empty slice; harmless, nothing is touched
                offset += start * stride
                shape.append(len(range(start, stop, step)))
                strides.append(stride * step)
                dim += 1
            else:
                i = k
                size = self.shape[dim]
                if not -size <= i < size:
                    raise ViewError(f"index {i} is out of bounds for dim {dim} with size "
                                    f"{size} of {self}")
                offset += (i + size if i < 0 else i) * self.strides[dim]
                dim += 1
        return self._derive(offset, shape, strides)

    # ------------------------------------------------------ dim reordering
    def permute(self, perm: Sequence[int] | None = None) -> "TensorView":
        """Dims reordered: result dim ``j`` is dim ``perm[j]`` (default: reversed)."""
        if perm is None:
            order = tuple(range(self.ndim - 1, -1, -1))
        else:
            order = _int_tuple(perm, "perm")
            if len(order) != self.ndim:
                raise ViewError(f"axes {list(order)} don't match the {self.ndim} dims of {self}")
            order = tuple(a + self.ndim if a < 0 else a for a in order)
            if sorted(order) != list(range(self.ndim)):
                raise ViewError(f"axes {list(_int_tuple(perm, 'perm'))} are not a "
                                f"permutation of the {self.ndim} dims of {self}")
        return self._derive(self.offset, [self.shape[a] for a in order],
                            [self.strides[a] for a in order])

    def transpose(self, *perm: Any) -> "TensorView":
        """Like ``ndarray.transpose``: ``v.transpose()``, ``v.transpose(1, 0)`` or
        ``v.transpose((1, 0))``."""
        if not perm:
            return self.permute()
        if len(perm) == 1 and (perm[0] is None or not hasattr(perm[0], "__index__")):
            return self.permute(perm[0])
        return self.permute(perm)

    @property
    def T(self) -> "TensorView":
        return self.permute()

    # ----------------------------------------------------------- broadcast
    def broadcast_to(self, shape: Sequence[int]) -> "TensorView":
        """NumPy's broadcast_to: new leading dims and stretched size-1 dims get stride 0."""
        target = _shape_tuple(shape)
        lead = len(target) - self.ndim
        if lead < 0:
            raise ViewError(f"cannot broadcast {self} to the lower-rank shape {list(target)}")
        strides = [0] * lead
        for j, (d, s) in enumerate(zip(self.shape, self.strides)):
            want = target[lead + j]
            if d == 1:
                strides.append(0)  # NumPy zeroes a size-1 dim's stride even when it stays 1
            elif d == want:
                strides.append(s)
            else:
                raise ViewError(f"cannot broadcast {self} to shape {list(target)}: dim {j} "
                                f"has size {d}, target {want}")
        return self._derive(self.offset, target, strides)

    # ------------------------------------------------------------- reshape
    def _resolve_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Fill in a -1 as NumPy does (not allowed when a known dim is 0)."""
        new = _int_tuple(shape, "shape")
        unknown = [i for i, d in enumerate(new) if d == -1]
        if len(unknown) > 1 or any(d < -1 for d in new):
            raise ViewError(f"bad reshape target {list(new)}: only one -1 and no other "
                            f"negative dims are allowed")
        known = 1
        for d in new:
            if d != -1:
                known *= d
        numel = self.numel
        if unknown:
            if known == 0 or numel % known:
                raise ViewError(f"cannot reshape {self} of size {numel} into shape {list(new)}")
            new = new[:unknown[0]] + (numel // known,) + new[unknown[0] + 1:]
        elif known != numel:
            raise ViewError(f"cannot reshape {self} of size {numel} into shape {list(new)}")
        return new

    def reshape(self, shape: Sequence[int]) -> "TensorView":
        """Copy-free row-major reshape; ViewError when NumPy would need a copy.

        Contiguous views (NumPy's sense, empty ones included) take fresh row-major strides.
        Otherwise runs NumPy's stride-merging algorithm (``_attempt_nocopy_reshape``): drop
        size-1 dims, then match groups of old dims against groups of new dims with equal
        products; a group of old dims must be mergeable (each stride = next stride * next
        size) and its new dims get strides that subdivide the group's innermost stride.
        """
        new = self._resolve_shape(shape)
        if self.is_contiguous:
            return self._derive(self.offset, new, contiguous_strides(new))
        old = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        odims = [d for d, _ in old]
        ostrides = [s for _, s in old]
        nstrides = [0] * len(new)
        oi, oj, ni, nj = 0, 1, 0, 1
        while ni < len(new) and oi < len(odims):
            np_, op_ = new[ni], odims[oi]
            while np_ != op_:
                # grow whichever group has the smaller product (trailing 1s come later);
                # the view is non-empty here, so products strictly grow
                if np_ < op_:
                    np_ *= new[nj]
                    nj += 1
                else:
                    op_ *= odims[oj]
                    oj += 1
            for ok in range(oi, oj - 1):
                if ostrides[ok] != odims[ok + 1] * ostrides[ok + 1]:
                    raise ViewError(f"reshape of {self} into shape {list(new)} needs a copy: "
                                    f"its stride {ostrides[ok]} does not step over "
                                    f"{odims[ok + 1]} elements of stride {ostrides[ok + 1]}")
            nstrides[nj - 1] = ostrides[oj - 1]
            for nk in range(nj - 1, ni, -1):
                nstrides[nk - 1] = nstrides[nk] * new[nk]
            ni, nj = nj, nj + 1
            oi, oj = oj, oj + 1
        # trailing size-1 dims of the new shape: NumPy repeats the last stride (or itemsize)
        last = nstrides[ni - 1] if ni >= 1 else 1
        for nk in range(ni, len(new)):
            nstrides[nk] = last
        return self._derive(self.offset, new, nstrides)

    def squeeze(self, axis: int | Sequence[int] | None = None) -> "TensorView":
        """Drop size-1 dims (all of them, or the given ones, which must have size 1)."""
        if axis is None:
            drop = {i for i, d in enumerate(self.shape) if d == 1}
        else:
            drop = set()
            for a in _int_tuple(axis, "axis"):
                if not -self.ndim <= a < self.ndim:
                    raise ViewError(f"axis {a} is out of range for {self}")
                a %= self.ndim
                if self.shape[a] != 1:
                    raise ViewError(f"cannot squeeze dim {a} of size {self.shape[a]} of {self}")
                drop.add(a)
        keep = [i for i in range(self.ndim) if i not in drop]
        return self._derive(self.offset, [self.shape[i] for i in keep],
                            [self.strides[i] for i in keep])

    def expand_dims(self, axis: int | Sequence[int]) -> "TensorView":
        """Insert size-1 dims (stride 0) at the given positions of the result, as NumPy."""
        axes = _int_tuple(axis, "axis")
        rank = self.ndim + len(axes)
        norm = []
        for a in axes:
            if not -rank <= a < rank:
                raise ViewError(f"axis {a} is out of range for a result of rank {rank}")
            norm.append(a % rank)
        if len(set(norm)) != len(norm):
            raise ViewError(f"repeated axis in {list(axes)}")
        shape, strides = list(self.shape), list(self.strides)
        for a in sorted(norm):
            shape.insert(a, 1)
            strides.insert(a, 0)
        return self._derive(self.offset, shape, strides)

    # ----------------------------------------------------------------- text
    def __str__(self) -> str:
        return (f"view(offset={self.offset}, shape={list(self.shape)}, "
                f"strides={list(self.strides)})")
