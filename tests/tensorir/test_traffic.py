"""The closed-form traffic of a tiled loop nest equals a walk over every tile position."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.python import GraphBuilder
from hypothesis_budget import examples
from tensorir.ops import op_domain
from tensorir.ops.domain import domain_from_einsum
from tensorir.traffic import Tiling, domain_traffic


def walk(domain, tiling, operand_shapes, result_shapes):
    """Brute force: visit tile positions in loop order; a buffer reloads when the tile position
    of a loop its map depends on changes, and moves the elements of its clipped box."""
    extents = [int(e) for e in domain.extents]
    starts = [range(0, e, t) for e, t in zip(extents, tiling.tile)]
    maps = [(m, s) for m, s in zip(domain.inputs, operand_shapes) if m is not None] + \
           [(m, s) for m, s in zip(domain.outputs, result_shapes) if m is not None]
    resident = [None] * len(maps)
    moved = [0] * len(maps)
    loads = [0] * len(maps)
    for pos in itertools.product(*(starts[d] for d in tiling.order)):
        start = [0] * len(extents)
        for d, s in zip(tiling.order, pos):
            start[d] = s
        size = [min(t, e - s) for t, e, s in zip(tiling.tile, extents, start)]
        for k, (amap, shape) in enumerate(maps):
            box = []
            for expr, bound in zip(amap.exprs, shape):
                corners = [expr.evaluate(p) for p in itertools.product(
                    *[(s, s + n - 1) for s, n in zip(start, size)])]
                box.append((max(min(corners), 0), min(max(corners), bound - 1)))
            # a schedule copies the tile whenever a loop the map depends on moves
            key = tuple(start[d] for d in range(len(extents))
                        if any(e.coeffs[d] for e in amap.exprs))
            if key != resident[k]:
                resident[k] = key
                loads[k] += 1
                moved[k] += math.prod(max(0, hi - lo + 1) for lo, hi in box)
    return moved, loads


def check(domain, operand_shapes, result_shapes, tiling):
    closed = domain_traffic(domain, tiling, operand_shapes, result_shapes)
    moved, loads = walk(domain, tiling, operand_shapes, result_shapes)
    assert [o.elements for o in closed] == moved
    assert [o.loads for o in closed] == loads


@st.composite
def tilings(draw, extents):
    tile = tuple(draw(st.integers(1, e)) for e in extents)
    order = tuple(draw(st.permutations(range(len(extents)))))
    return Tiling(tile, order)


@settings(max_examples=examples(60))
@given(st.data())
def test_matmul_traffic_equals_a_walk_over_the_tiles(data):
    m, n, k = (data.draw(st.integers(1, 9)) for _ in range(3))
    domain = domain_from_einsum("mk,kn->mn", {"m": m, "n": n, "k": k})
    check(domain, [(m, k), (k, n)], [(m, n)], data.draw(tilings(domain.extents)))


@st.composite
def conv_ops(draw):
    b = GraphBuilder("c")
    group = draw(st.sampled_from([1, 2]))
    c = group * draw(st.integers(1, 2))
    oc = group * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = b.input("x", [1, c, draw(st.integers(kh, 7)), draw(st.integers(kw, 7))])
    w = b.weight("w", [oc, c // group, kh, kw])
    y = b.conv(x, w, strides=[draw(st.integers(1, 2))] * 2, pads=[draw(st.integers(0, 1))] * 4,
               dilations=[draw(st.integers(1, 2))] * 2, group=group) \
        if (kh - 1) * 2 + 1 <= x.type.shape[2] and (kw - 1) * 2 + 1 <= x.type.shape[3] \
        else b.conv(x, w, group=group)
    return y.producer


@settings(max_examples=examples(60))
@given(conv_ops(), st.data())
def test_conv_traffic_with_halos_equals_a_walk_over_the_tiles(op, data):
    domain = op_domain(op)
    tiling = data.draw(tilings([int(e) for e in domain.extents]))
    check(domain, [v.type.shape for v in op.operands], [op.results[0].type.shape], tiling)


def test_matmul_closed_form_by_hand():
    # C[64x48] = A[64x32] B[32x48], tiles 16x16x8, loops m, n, k (k innermost): A is read once
    # per column block of C (48/16 = 3 times), B once per row block (64/16 = 4 times), C
    # written once; with k outermost, C's partial sums go out and come back 32/8 - 1 = 3 times.
    domain = domain_from_einsum("mk,kn->mn", {"m": 64, "n": 48, "k": 32})
    a, b, c = domain_traffic(domain, Tiling((16, 16, 8), (0, 1, 2)),
                             [(64, 32), (32, 48)], [(64, 48)])
    assert (a.elements, b.elements, c.elements) == (64 * 32 * 3, 32 * 48 * 4, 64 * 48)
    assert (a.footprint, b.footprint, c.footprint) == (16 * 8, 8 * 16, 16 * 16)
    a, b, c = domain_traffic(domain, Tiling((16, 16, 8), (2, 0, 1)),
                             [(64, 32), (32, 48)], [(64, 48)])
    assert c.elements == 64 * 48 * 4 and c.partial_reloads == 64 * 48 * 3
    assert a.elements == 64 * 32 and b.elements == 32 * 48 * 4  # A stays across n (innermost)


def test_untiled_traffic_is_compulsory():
    b = GraphBuilder("c")
    x = b.input("x", [1, 3, 8, 8])
    op = b.conv(x, b.weight("w", [4, 3, 3, 3]), pads=[1, 1, 1, 1]).producer
    domain = op_domain(op)
    traffic = domain_traffic(domain, Tiling.untiled([int(e) for e in domain.extents]),
                             [v.type.shape for v in op.operands], [op.results[0].type.shape])
    assert [t.elements for t in traffic] == [3 * 8 * 8, 4 * 3 * 3 * 3, 4 * 8 * 8]


def test_bad_tilings_are_refused():
    with pytest.raises(ValueError, match="not a permutation"):
        Tiling((1, 2), (0, 0))
    with pytest.raises(ValueError, match="positive"):
        Tiling((0, 2), (0, 1))
