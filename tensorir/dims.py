"""Dimensions: a size is an ``int`` or a symbol such as ``batch``.

Symbolic sizes form products (``196*batch``) so that reshapes and flattens of a batch-symbolic
tensor stay exact, and sums of like terms (``batch + batch`` is ``2*batch``) so that concats
of them do; anything beyond that (other sums, ceil-division in convolutions) needs the
symbols bound first and raises :class:`UnboundDimError`. Canonical form: an integer coefficient
(omitted when 1) followed by the symbol names in sorted order, joined by ``*``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping, Union

from .errors import ShapeError, UnboundDimError

Dim = Union[int, str]

SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _factor(dim: Dim) -> tuple[int, Counter]:
    """Split a dim into (integer coefficient, symbol multiset)."""
    if isinstance(dim, (int,)) and not isinstance(dim, bool):
        return dim, Counter()
    coeff, syms = 1, Counter()
    for part in str(dim).split("*"):
        part = part.strip()
        if part.isdigit():
            coeff *= int(part)
        elif SYMBOL_RE.match(part):
            syms[part] += 1
        else:
            raise ShapeError(f"malformed dimension {dim!r}: expected an int, a symbol or a product")
    return coeff, syms


def _compose(coeff: int, syms: Counter) -> Dim:
    names = sorted(syms.elements())
    if not names or coeff == 0:
        return coeff
    return "*".join(([str(coeff)] if coeff != 1 else []) + names)


def normalize(dim: Dim) -> Dim:
    """Canonical form of a dim (``"batch*2"`` -> ``"2*batch"``)."""
    if isinstance(dim, bool):
        raise ShapeError(f"a dimension cannot be a bool ({dim!r})")
    if isinstance(dim, int):
        if dim < 0:
            raise ShapeError(f"negative dimension {dim}")
        return dim
    if hasattr(dim, "__index__"):  # numpy integers
        return normalize(int(dim))
    return _compose(*_factor(dim))


def is_static(dim: Dim) -> bool:
    return isinstance(dim, int)


def mul(a: Dim, b: Dim) -> Dim:
    ca, sa = _factor(a)
    cb, sb = _factor(b)
    return _compose(ca * cb, sa + sb)


def add(a: Dim, b: Dim) -> Dim:
    """``a + b``: ints add; a symbolic sum is exact only for like terms (multiples of the same
    symbol product, ``batch + batch`` is ``2*batch``; a zero term drops). Any other sum raises
    :class:`UnboundDimError`: bind the symbols first."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    ca, sa = _factor(a)
    cb, sb = _factor(b)
    if ca == 0:
        return normalize(b)
    if cb == 0:
        return normalize(a)
    if sa != sb:
        raise UnboundDimError(f"the size {a!r} + {b!r} is not a product of symbols; bind the "
                              f"symbols first")
    return _compose(ca + cb, Counter(sa))


def prod(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = mul(out, d)
    return out


def div(a: Dim, b: Dim) -> Dim:
    """Exact division; raises when it is not exact (or not decidable symbolically)."""
    ca, sa = _factor(a)
    cb, sb = _factor(b)
    if cb == 0:
        raise ShapeError(f"division of dimension {a!r} by zero")
    if any(sb[k] > sa[k] for k in sb) or ca % cb:
        if not sa and not sb:
            raise ShapeError(f"dimension {a!r} is not divisible by {b!r}")
        raise UnboundDimError(f"cannot divide dimension {a!r} by {b!r} exactly without binding "
                              f"its symbols")
    return _compose(ca // cb, sa - sb)


def symbols(dim: Dim) -> set[str]:
    return set(_factor(dim)[1])


def bind(dim: Dim, env: Mapping[str, int]) -> Dim:
    """Replace the symbols found in ``env`` by their sizes."""
    coeff, syms = _factor(dim)
    left = Counter()
    for name, power in syms.items():
        if name in env:
            coeff *= int(env[name]) ** power
        else:
            left[name] = power
    return _compose(coeff, left)


def require_static(dim: Dim, what: str) -> int:
    if not isinstance(dim, int):
        raise UnboundDimError(f"{what} needs a concrete size but found the symbolic dimension "
                              f"{dim!r}; bind it first (e.g. bind={{{sorted(symbols(dim))[0]!r}: 1}})")
    return dim


def broadcast(a: Dim, b: Dim) -> Dim | None:
    """NumPy broadcasting of two dims; None when they are incompatible."""
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    return None


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
