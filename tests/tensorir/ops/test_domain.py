"""Affine maps (tensorir.ops.domain): spans and footprints against their definitions."""

from hypothesis import given
from hypothesis import strategies as st

from tensorir.ops.domain import AffineExpr, AffineMap


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=7), st.integers(-4, 4),
       st.lists(st.integers(1, 9), min_size=0, max_size=8))
def test_span_is_the_sum_of_coefficient_times_tile_extent(coeffs, const, tile):
    e = AffineExpr(tuple(coeffs), const)
    want = sum(abs(c) * (t - 1) for c, t in zip(coeffs, tile)) + 1  # dims past the tile: 0
    assert e.span(tile) == want
    assert e.span(tile) == want                      # again, from the kept nonzero terms


def test_equal_exprs_hash_equal_whatever_was_asked_of_them():
    a, b = AffineExpr((0, 2, 1), 3), AffineExpr((0, 2, 1), 3)
    a.span((4, 4, 4))
    assert a == b and hash(a) == hash(b)
    assert hash(AffineMap((a,))) == hash(AffineMap((b,)))


def test_footprint_clips_spans_to_bounds():
    m = AffineMap((AffineExpr((1, 1), -1), AffineExpr((0, 0), 0)))
    assert m.footprint((4, 3)) == (6, 1)
    assert m.footprint((4, 3), bounds=(5, 1)) == (5, 1)
