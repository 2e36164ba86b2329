import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.python import GraphBuilder
from hypothesis_budget import examples
from passes.tiling import _cost, choose_tiling
from tensorir import TensorIRError
from tensorir.ops import op_domain
from tensorir.ops.domain import domain_from_einsum
from tensorir.target import Managed, MemoryLevel
from tensorir.traffic import Tiling


def level(capacity, double=False):
    return MemoryLevel("L", capacity, 64, Managed.SCRATCHPAD, double)


def test_large_matmul_fills_the_usable_half_of_a_double_buffered_level():
    d = domain_from_einsum("mk,kn->mn", {"m": 512, "n": 512, "k": 512})
    c = choose_tiling(d, [(512, 512), (512, 512)], [(512, 512)], [4, 4], [4],
                      level(256 * 1024, double=True))
    assert c.tiling.tile == (128, 128, 64) and c.footprint_bytes == 128 * 1024
    # A and B are read 512/128 = 4 times, C written once: 4 + 4 + 1 MiB
    assert c.traffic_bytes == (4 + 4 + 1) * 512 * 512 * 4


@settings(max_examples=examples(40))
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from([64, 256, 1024, 4096, 16384]))
def test_heuristic_is_within_1_5x_of_an_exhaustive_power_of_two_search(m, n, k, capacity):
    d = domain_from_einsum("mk,kn->mn", {"m": m, "n": n, "k": k})
    shapes = ([(m, k), (k, n)], [(m, n)])
    try:
        chosen = choose_tiling(d, *shapes, [4, 4], [4], level(capacity))
    except TensorIRError:
        assert capacity < 3 * 4  # only when not even 1x1x1 tiles (3 floats) fit
        return
    assert chosen.footprint_bytes <= capacity

    def sizes(e):
        return sorted({min(e, 2 ** i) for i in range(7)} | {e})

    best = min(mv for tile in itertools.product(*(sizes(e) for e in (m, n, k)))
               for order in itertools.permutations(range(3))
               for mv, ft in [_cost(d, Tiling(tile, order), *shapes, [4, 4], [4])]
               if ft <= capacity)
    assert chosen.traffic_bytes <= 1.5 * best


@st.composite
def convs(draw):
    b = GraphBuilder("c")
    c = draw(st.integers(1, 8))
    x = b.input("x", [1, c, draw(st.integers(3, 20)), draw(st.integers(3, 20))])
    w = b.weight("w", [draw(st.integers(1, 16)), c, 3, 3])
    return b.conv(x, w, pads=[1, 1, 1, 1], strides=[draw(st.integers(1, 2))] * 2).producer


@settings(max_examples=examples(30))
@given(convs(), st.sampled_from([512, 2048, 8192]), st.booleans())
def test_conv_tiles_with_halos_fit_the_level(op, capacity, double):
    d = op_domain(op)
    lv = level(capacity, double)
    c = choose_tiling(d, [v.type.shape for v in op.operands], [op.results[0].type.shape],
                      [4, 4], [4], lv)
    assert c.footprint_bytes <= lv.usable_bytes


def test_fixed_tile_sizes_are_kept_and_impossible_fits_are_errors():
    d = domain_from_einsum("mk,kn->mn", {"m": 64, "n": 64, "k": 64})
    shapes = ([(64, 64), (64, 64)], [(64, 64)])
    c = choose_tiling(d, *shapes, [4, 4], [4], level(64 * 1024), fixed={2: 8})
    assert c.tiling.tile[2] == 8
    with pytest.raises(TensorIRError, match="no tiling fits level 'L'"):
        choose_tiling(d, *shapes, [4, 4], [4], level(8))
    with pytest.raises(TensorIRError, match="no tiling fits"):
        choose_tiling(d, *shapes, [4, 4], [4], level(4096), fixed={0: 64, 1: 64})
    with pytest.raises(TensorIRError, match="is not a loop dim"):
        choose_tiling(d, *shapes, [4, 4], [4], level(4096), fixed={7: 2})
