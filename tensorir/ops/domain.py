"""Iteration domains: an op as a loop nest with affine indexing maps (MLIR linalg.generic style).

An op's domain is a list of loop dims, each parallel or reduction, with an extent. Each operand
and result is read or written at an affine function of the loop indices, one expression per
tensor dim: ``in[n, c, oh*2 + kh - 1, ow*2 + kw - 1]`` for a stride-2, pad-1 convolution.
Indices that fall outside the operand (the convolution halo) read the padding value, so
the maps are "affine with bounds". An operand that is not read through an affine map (the table
of a Gather, a shape operand) has the map None.

FLOPs, tile footprints and traffic are derived from this one description.
"""

from __future__ import annotations

import enum
from typing import Mapping, Sequence

import attrs

from .. import dims as _dims
from ..dims import Dim


class IterKind(enum.Enum):
    PARALLEL = "parallel"
    REDUCTION = "reduction"


# The classes below are frozen and hold only ints, strings, enums and tuples of them; they
# are hashed again and again as parts of memo keys (lowering, tiling search), so each
# keeps its hash once computed.
@attrs.frozen(cache_hash=True)
class LoopDim:
    name: str
    extent: Dim
    kind: IterKind = IterKind.PARALLEL


@attrs.frozen(cache_hash=True)
class AffineExpr:
    """``sum(coeffs[i] * d_i) + const`` over the domain's loop dims."""

    coeffs: tuple[int, ...] = attrs.field(converter=tuple)
    const: int = 0
    # (dim, |coeff|) of the nonzero coefficients, made on first use: most are zero (a conv
    # input's row reads 2 of 7 loop dims) and footprints ask for spans many times per tiling
    _terms: tuple[tuple[int, int], ...] | None = attrs.field(
        default=None, init=False, repr=False, eq=False, hash=False)

    @staticmethod
    def dim(index: int, ndims: int, scale: int = 1, const: int = 0) -> "AffineExpr":
        c = [0] * ndims
        c[index] = scale
        return AffineExpr(tuple(c), const)

    @staticmethod
    def constant(value: int, ndims: int) -> "AffineExpr":
        return AffineExpr((0,) * ndims, value)

    def __add__(self, other: "AffineExpr") -> "AffineExpr":
        return AffineExpr(tuple(a + b for a, b in zip(self.coeffs, other.coeffs)),
                          self.const + other.const)

    def evaluate(self, point: Sequence[int]) -> int:
        return sum(c * p for c, p in zip(self.coeffs, point)) + self.const

    def span(self, tile: Sequence[int]) -> int:
        """Number of distinct positions a box tile of the given extents can touch (a bound)."""
        terms = self._terms
        if terms is None:
            terms = tuple((i, abs(c)) for i, c in enumerate(self.coeffs) if c)
            object.__setattr__(self, "_terms", terms)  # a cache: frozen for its fields only
        if len(tile) < len(self.coeffs):  # zip's reading: the dims past the tile count 0
            terms = tuple((i, c) for i, c in terms if i < len(tile))
        total = 1
        for i, c in terms:
            total += c * (tile[i] - 1)
        return total

    def format(self, names: Sequence[str]) -> str:
        terms = []
        for c, n in zip(self.coeffs, names):
            if c == 1:
                terms.append(n)
            elif c:
                terms.append(f"{c}*{n}")
        if self.const or not terms:
            terms.append(str(self.const))
        return " + ".join(terms).replace("+ -", "- ")


@attrs.frozen(cache_hash=True)
class AffineMap:
    """One :class:`AffineExpr` per tensor dim of an operand or result."""

    exprs: tuple[AffineExpr, ...] = attrs.field(converter=tuple)

    @staticmethod
    def select(indices: Sequence[int | None], ndims: int) -> "AffineMap":
        """Tensor dim j reads loop dim ``indices[j]`` (None: a broadcast dim, always index 0)."""
        return AffineMap(tuple(AffineExpr.constant(0, ndims) if i is None
                               else AffineExpr.dim(i, ndims) for i in indices))

    @staticmethod
    def identity(ndims: int) -> "AffineMap":
        return AffineMap.select(range(ndims), ndims)

    def evaluate(self, point: Sequence[int]) -> tuple[int, ...]:
        return tuple(e.evaluate(point) for e in self.exprs)

    def compose(self, inner: "AffineMap") -> "AffineMap":
        """``self ∘ inner``: ``inner`` maps points of another domain onto this map's domain.

        Used by fused kernels: an epilogue's operand map, composed with the anchor op's
        result map, reads that operand from the anchor's loop nest.
        """
        if len(inner.exprs) != (len(self.exprs[0].coeffs) if self.exprs else 0):
            raise ValueError("compose: the inner map's results do not match this map's domain")
        n = len(inner.exprs[0].coeffs) if inner.exprs else 0
        out = []
        for e in self.exprs:
            coeffs = [0] * n
            const = e.const
            for c, ie in zip(e.coeffs, inner.exprs):
                if c:
                    for i, ic in enumerate(ie.coeffs):
                        coeffs[i] += c * ic
                    const += c * ie.const
            out.append(AffineExpr(tuple(coeffs), const))
        return AffineMap(tuple(out))

    def footprint(self, tile: Sequence[int], bounds: Sequence[int] | None = None) -> tuple[int, ...]:
        """Extents of the box of operand elements a tile of the domain touches.

        With ``bounds`` (the operand's shape) each extent is clipped to the tensor, so a
        padded convolution's halo is not counted past the edge.
        """
        spans = [e.span(tile) for e in self.exprs]
        if bounds is not None:
            spans = [min(s, b) for s, b in zip(spans, bounds)]
        return tuple(spans)

    def format(self, names: Sequence[str]) -> str:
        return "[" + ", ".join(e.format(names) for e in self.exprs) + "]"


@attrs.frozen(cache_hash=True)
class IterationDomain:
    """Loop dims plus the indexing map of every operand and result (None when not affine:
    a Gather table, a shape operand, a fused kernel's output that is not the anchor's)."""

    dims: tuple[LoopDim, ...] = attrs.field(converter=tuple)
    inputs: tuple[AffineMap | None, ...] = attrs.field(converter=tuple)
    outputs: tuple[AffineMap | None, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        n = len(self.dims)
        for m in list(self.inputs) + list(self.outputs):
            if m is not None:
                for e in m.exprs:
                    if len(e.coeffs) != n:
                        raise ValueError(f"affine expression over {len(e.coeffs)} dims in a "
                                         f"domain of {n} dims")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    @property
    def extents(self) -> tuple[Dim, ...]:
        return tuple(d.extent for d in self.dims)

    @property
    def size(self) -> Dim:
        """Number of points in the domain (product of the extents)."""
        return _dims.prod(self.extents)

    def static_size(self, what: str = "iteration domain") -> int:
        return _dims.require_static(self.size, what)

    def parallel_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.dims) if d.kind is IterKind.PARALLEL)

    def reduction_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.dims) if d.kind is IterKind.REDUCTION)

    def format(self) -> str:
        head = ", ".join(f"{d.name}={d.extent}" + ("" if d.kind is IterKind.PARALLEL else "(red)")
                         for d in self.dims)
        ins = "; ".join("opaque" if m is None else m.format(self.names) for m in self.inputs)
        outs = "; ".join("opaque" if m is None else m.format(self.names) for m in self.outputs)
        return f"domain({head}) ins({ins}) outs({outs})"


def elementwise_domain(out_shape: Sequence[Dim],
                       operand_shapes: Sequence[Sequence[Dim] | None]) -> IterationDomain:
    """Parallel loops over the output; operands broadcast NumPy-style (right-aligned)."""
    n = len(out_shape)
    dims = tuple(LoopDim(f"d{i}", out_shape[i]) for i in range(n))
    maps: list[AffineMap | None] = []
    for shape in operand_shapes:
        if shape is None:
            maps.append(None)
            continue
        offset = n - len(shape)
        maps.append(AffineMap.select(
            [None if (shape[j] == 1 and out_shape[offset + j] != 1) else offset + j
             for j in range(len(shape))], n))
    return IterationDomain(dims, maps, (AffineMap.identity(n),))


def domain_from_einsum(spec: str, extents: Mapping[str, Dim], reduction: str = "",
                       ) -> IterationDomain:
    """Domain of an einsum-like contraction, e.g. ``"mk,kn->mn"`` (letters are loop dims)."""
    ins, out = spec.split("->")
    letters = list(dict.fromkeys(out + "".join(ins.split(","))))
    idx = {c: i for i, c in enumerate(letters)}
    dims = tuple(LoopDim(c, extents[c], IterKind.REDUCTION if c in reduction or c not in out
                         else IterKind.PARALLEL) for c in letters)
    in_maps = tuple(AffineMap.select([idx[c] for c in term], len(letters))
                    for term in ins.split(","))
    return IterationDomain(dims, in_maps, (AffineMap.select([idx[c] for c in out], len(letters)),))
