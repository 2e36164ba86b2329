"""The vectorised LRU replay equals a per-access OrderedDict model, exactly.

``reference_lru`` below is the oracle: one OrderedDict per set, most recently used last,
write-allocate and write-back, a dirty victim written back just before the fetch that evicted
it, and (``flush``) the lines still dirty written back at the end, least recently used first.
"""

import contextlib
import doctest
import itertools
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backends.cache_sim as cache_sim
from backends.cache_sim import (CacheLevel, TensorAccess, conv2d_trace, loop_nest_trace,
                                matmul_trace, simulate_cache, simulate_hierarchy,
                                transfer_trace)
from hypothesis_budget import examples
from tensorir.errors import ProfileError, TensorIRError
from tensorir.ops.domain import AffineMap
from tensorir.traffic import Tiling
from tensorir.view import TensorView

COUNTS = ("accesses", "writes", "hits", "misses", "write_misses", "evictions", "writebacks",
          "flushed")


# --------------------------------------------------------------------------- the oracle
def reference_lru(addresses, is_write, capacity, line, assoc, flush=False):
    """Per-access LRU: returns the counts and the trace sent to the next level, as
    (line address, is_write) pairs in order."""
    num_sets = capacity // (line * assoc)
    sets = [OrderedDict() for _ in range(num_sets)]   # line -> dirty, LRU first
    last_use = {}
    c = dict.fromkeys(COUNTS, 0)
    out = []
    for t, (a, w) in enumerate(zip(addresses, is_write)):
        a, w = int(a), bool(w)
        ln = a // line
        s = sets[ln % num_sets]
        c["accesses"] += 1
        c["writes"] += w
        if ln in s:
            c["hits"] += 1
            s.move_to_end(ln)
            s[ln] = s[ln] or w
        else:
            c["misses"] += 1
            c["write_misses"] += w
            if len(s) == assoc:
                victim, dirty = s.popitem(last=False)
                c["evictions"] += 1
                if dirty:
                    c["writebacks"] += 1
                    out.append((victim * line, True))
            out.append((ln * line, False))
            s[ln] = w
        last_use[ln] = t
    if flush:
        for _, ln in sorted((last_use[ln], ln) for s in sets for ln, d in s.items() if d):
            c["flushed"] += 1
            out.append((ln * line, True))
    return c, out


def reference_hierarchy(addresses, is_write, levels, flush=False):
    """Chain reference_lru: each level replays the previous level's outgoing trace, split
    into the next level's lines when those are smaller."""
    results = []
    for i, (cap, line, assoc) in enumerate(levels):
        counts, out = reference_lru(addresses, is_write, cap, line, assoc, flush)
        results.append((counts, out))
        if i + 1 < len(levels):
            nxt = levels[i + 1][1]
            pieces = max(1, line // nxt)
            addresses = [a + k * nxt for a, _ in out for k in range(pieces)]
            is_write = [w for _, w in out for _ in range(pieces)]
    return results


@contextlib.contextmanager
def tuned(block=None, table_lines=None):
    """Replay with other block sizes / line numbering (internal knobs; never the result)."""
    saved = cache_sim._BLOCK, cache_sim._BLOCK_PER_SET, cache_sim._TABLE_LINES
    try:
        if block is not None:
            cache_sim._BLOCK, cache_sim._BLOCK_PER_SET = block, 0
        if table_lines is not None:
            cache_sim._TABLE_LINES = table_lines
        yield
    finally:
        cache_sim._BLOCK, cache_sim._BLOCK_PER_SET, cache_sim._TABLE_LINES = saved


def out_pairs(stats):
    return list(zip(stats.out_addresses.tolist(), stats.out_is_write.tolist()))


# --------------------------------------------------------------------------- strategies
@st.composite
def geometries(draw):
    line = draw(st.sampled_from([4, 8, 16, 64]))
    sets = draw(st.sampled_from([1, 1, 2, 3, 4, 8]))
    assoc = draw(st.sampled_from([1, 2, 3, 4, 8]))
    return line * sets * assoc, line, assoc


@st.composite
def traces(draw, line, capacity, max_len=300):
    """Few distinct lines (many conflicts), sometimes scattered far apart."""
    n = draw(st.integers(0, max_len))
    lines = draw(st.integers(1, max(2, 3 * capacity // line)))
    stride = draw(st.sampled_from([1, 1, 1, 7, 1 << 20]))
    base = draw(st.sampled_from([0, 0, 4096, 1 << 40]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    write_rate = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    rng = np.random.default_rng(seed)
    addr = base + rng.integers(0, lines, n) * stride * line + rng.integers(0, line, n)
    return addr.astype(np.int64), rng.random(n) < write_rate


knobs = st.fixed_dictionaries({
    "chunk_len": st.sampled_from([None, None, 1, 2, 3, 5, 16]),
    "block": st.sampled_from([None, None, 1, 3, 16]),
    "table_lines": st.sampled_from([None, None, 2]),
    "flush": st.booleans(),
})


# --------------------------------------------------------------------------- properties
@settings(max_examples=examples(400), deadline=None)
@given(st.data(), geometries(), knobs)
def test_replay_equals_reference_lru(data, geometry, knob):
    capacity, line, assoc = geometry
    addr, writes = data.draw(traces(line, capacity))
    with tuned(knob["block"], knob["table_lines"]):
        got = simulate_cache(addr, writes, capacity_bytes=capacity, line_bytes=line,
                             associativity=assoc, flush=knob["flush"],
                             chunk_len=knob["chunk_len"])
    want, out = reference_lru(addr, writes, capacity, line, assoc, knob["flush"])
    assert got.counts() == want
    assert out_pairs(got) == out
    assert got.miss_addresses.tolist() == [a for a, w in out if not w]
    assert (got.writeback_addresses.tolist() + got.flush_addresses.tolist()
            == [a for a, w in out if w])


@settings(max_examples=examples(150), deadline=None)
@given(st.data(), st.lists(geometries(), min_size=2, max_size=3), knobs)
def test_hierarchy_equals_chained_reference(data, geometry, knob):
    addr, writes = data.draw(traces(geometry[0][1], geometry[0][0], max_len=400))
    levels = [CacheLevel(f"L{i + 1}", *g) for i, g in enumerate(geometry)]
    with tuned(knob["block"], knob["table_lines"]):
        got = simulate_hierarchy(addr, writes, levels=levels, flush=knob["flush"],
                                 chunk_len=knob["chunk_len"])
    want = reference_hierarchy(addr, writes, geometry, knob["flush"])
    for level, (counts, out), cap in zip(got.levels, want, geometry):
        assert level.counts() == counts
        assert out_pairs(level) == out
    for traffic, (counts, _), (_, line, _) in zip(got.traffic, want, geometry):
        assert traffic.read_bytes == counts["misses"] * line
        assert traffic.write_bytes == (counts["writebacks"] + counts["flushed"]) * line
    assert [t.lower for t in got.traffic] == ["L2", "L3", "memory"][:len(levels) - 1] + \
        ["memory"]


@settings(max_examples=examples(20), deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([1, 2, 8, 16]))
def test_result_does_not_depend_on_chunking(seed, assoc):
    """Long traces: many chunks per set, many blocks, starting states from the scan."""
    rng = np.random.default_rng(seed)
    addr = rng.integers(0, 64 * 16 * assoc * 3, 20_000)
    writes = rng.random(addr.size) < 0.3
    runs = []
    for chunk_len, block in [(None, None), (7, 1000), (64, 257), (3000, None)]:
        with tuned(block):
            s = simulate_cache(addr, writes, capacity_bytes=64 * 16 * assoc, line_bytes=64,
                               associativity=assoc, flush=True, chunk_len=chunk_len)
        runs.append((s.counts(), out_pairs(s)))
    assert all(r == runs[0] for r in runs[1:])
    assert runs[0] == reference_lru(addr, writes, 64 * 16 * assoc, 64, assoc, True)


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("assoc", [1, 4, 8, 512])
def test_stream_larger_than_cache_misses_once_per_line(assoc):
    capacity, line = 32 << 10, 64
    addr = np.arange(0, 4 * capacity, 4)                 # 4-byte elements, 4x the cache
    s = simulate_cache(addr, None, capacity_bytes=capacity, line_bytes=line,
                       associativity=assoc)
    lines = 4 * capacity // line
    assert s.misses == lines
    assert s.hits == addr.size - lines
    assert s.evictions == lines - capacity // line
    assert s.writebacks == 0 and s.out_is_write.sum() == 0


@pytest.mark.parametrize("assoc", [1, 2, 8])
def test_loop_over_an_array_that_fits_hits_after_the_first_pass(assoc):
    capacity, line, passes = 8 << 10, 32, 5
    addr = np.tile(np.arange(0, capacity, 8), passes)    # exactly fills every set
    s = simulate_cache(addr, None, capacity_bytes=capacity, line_bytes=line,
                       associativity=assoc)
    assert s.misses == capacity // line
    assert s.hits == addr.size - capacity // line
    assert s.evictions == 0


@pytest.mark.parametrize("assoc", [1, 2, 4, 8])
def test_cycling_over_assoc_plus_one_lines_of_one_set_always_misses(assoc):
    line, sets, rounds = 64, 16, 50
    one_set = np.arange(assoc + 1) * sets * line + 3 * line      # all map to set 3
    addr = np.tile(one_set, rounds)
    s = simulate_cache(addr, None, capacity_bytes=line * sets * assoc, line_bytes=line,
                       associativity=assoc)
    assert s.misses == addr.size                        # LRU evicts the next line needed
    assert s.evictions == addr.size - assoc
    fits = simulate_cache(np.tile(one_set[:-1], rounds), None,
                          capacity_bytes=line * sets * assoc, line_bytes=line,
                          associativity=assoc)
    assert fits.misses == assoc


def test_streaming_writes_write_back_every_line_once():
    capacity, line = 4 << 10, 64
    addr = np.arange(0, 3 * capacity, 4)
    writes = np.ones(addr.size, dtype=bool)
    s = simulate_cache(addr, writes, capacity_bytes=capacity, line_bytes=line,
                       associativity=4)
    lines = 3 * capacity // line
    assert s.write_misses == s.misses == lines
    assert s.writebacks == lines - capacity // line     # the last cache-full is still dirty
    f = simulate_cache(addr, writes, capacity_bytes=capacity, line_bytes=line,
                       associativity=4, flush=True)
    assert f.writebacks + f.flushed == lines
    assert f.writeback_bytes == 3 * capacity


def test_read_after_write_in_a_two_level_hierarchy():
    """L1 writebacks reach L2 as writes; L2 sees fetches as reads; bytes add up."""
    addr = np.arange(0, 16 << 10, 4)
    writes = np.ones(addr.size, dtype=bool)
    h = simulate_hierarchy(addr, writes, flush=True, levels=[
        dict(name="L1", capacity_bytes=1 << 10, line_bytes=64, associativity=2),
        dict(name="L2", capacity_bytes=4 << 10, line_bytes=128, associativity=4)])
    l1, l2 = h.levels
    assert l1.misses == (16 << 10) // 64 and l1.writebacks + l1.flushed == l1.misses
    assert l2.accesses == l1.misses + l1.writebacks + l1.flushed
    assert l2.writes == l1.writebacks + l1.flushed
    assert l2.misses == (16 << 10) // 128               # each 128 B line fetched once
    assert h.traffic[1].total_bytes == l2.misses * 128 + (l2.writebacks + l2.flushed) * 128
    assert "L1 <-> L2" in h.table()


def test_smaller_lines_below_split_each_transfer():
    s = simulate_cache([0, 64, 128], [True, False, False], capacity_bytes=128, line_bytes=64,
                       associativity=1, flush=True)
    addr, writes = transfer_trace(s, 16)
    assert addr.tolist()[:4] == [0, 16, 32, 48]
    assert addr.size == 4 * s.out_addresses.size
    assert writes.tolist() == np.repeat(s.out_is_write, 4).tolist()


def test_module_examples():
    assert doctest.testmod(cache_sim).failed == 0


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("geometry, field", [
    (dict(capacity_bytes=0, line_bytes=64, associativity=1), "capacity_bytes"),
    (dict(capacity_bytes=1024, line_bytes=48, associativity=1), "line_bytes"),
    (dict(capacity_bytes=1024, line_bytes=64, associativity=3), "capacity_bytes=1024"),
    (dict(capacity_bytes=1024, line_bytes=64, associativity=True), "associativity"),
    (dict(capacity_bytes=1024.0, line_bytes=64, associativity=1), "capacity_bytes"),
])
def test_invalid_geometry_names_the_field(geometry, field):
    with pytest.raises(ProfileError, match=field):
        simulate_cache([0], None, **geometry)


def test_invalid_traces():
    geo = dict(capacity_bytes=1024, line_bytes=64, associativity=2)
    with pytest.raises(TensorIRError, match="negative address"):
        simulate_cache([0, -64], None, **geo)
    with pytest.raises(TensorIRError, match="is_write has shape"):
        simulate_cache([0, 64], [True], **geo)
    with pytest.raises(TensorIRError, match="integers"):
        simulate_cache([0.5], None, **geo)
    with pytest.raises(ProfileError, match="levels is empty"):
        simulate_hierarchy([0], levels=[])
    with pytest.raises(ProfileError, match="expected the fields"):
        simulate_hierarchy([0], levels=[dict(size=1)])
    assert simulate_cache([], None, **geo).counts() == dict.fromkeys(COUNTS, 0)


# --------------------------------------------------------------------------- traces
def naive_matmul(M, N, K, tm, tn, tk, order, itemsize, bases):
    """The loop nest written out: tile loops in `order`, then the points of the tile."""
    ext = dict(m=M, n=N, k=K)
    tile = dict(m=tm, n=tn, k=tk)
    out = []
    a, b, c = bases
    tiles = [range(0, ext[d], tile[d]) for d in order]
    for starts in itertools.product(*tiles):
        s = dict(zip(order, starts))
        inner = [range(s[d], min(s[d] + tile[d], ext[d])) for d in order]
        for idx in itertools.product(*inner):
            i = dict(zip(order, idx))
            m, n, k = i["m"], i["n"], i["k"]
            out += [(a + (m * K + k) * itemsize, False), (b + (k * N + n) * itemsize, False),
                    (c + (m * N + n) * itemsize, False), (c + (m * N + n) * itemsize, True)]
    return out


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7), st.integers(1, 8),
       st.integers(1, 8), st.integers(1, 8), st.sampled_from(["mnk", "kmn", "nkm"]))
def test_matmul_trace_is_the_tiled_loop_nest(M, N, K, tm, tn, tk, order):
    bases = (1000, 5000, 9000)
    addr, writes = matmul_trace(M, N, K, tm, tn, tk, itemsize=2, bases=bases, order=order)
    assert list(zip(addr.tolist(), writes.tolist())) == naive_matmul(
        M, N, K, tm, tn, tk, order, 2, bases)


def naive_conv(N, C, H, W, K, R, S, stride, pad, bases):
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
    x, w, y = bases
    out = []
    for n, k, p, q, c, r, s in itertools.product(range(N), range(K), range(P), range(Q),
                                                 range(C), range(R), range(S)):
        h, v = p * stride + r - pad, q * stride + s - pad
        if 0 <= h < H and 0 <= v < W:
            out.append((x + ((n * C + c) * H + h) * W + v, False))
        out.append((w + ((k * C + c) * R + r) * S + s, False))
        out += [(y + ((n * K + k) * P + p) * Q + q, False),
                (y + ((n * K + k) * P + p) * Q + q, True)]
    return out


@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 1), (2, 2)])
def test_conv2d_trace_skips_the_padding(stride, pad):
    bases = (0, 10_000, 20_000)
    addr, writes = conv2d_trace(2, 3, 5, 6, 2, 3, 3, stride=stride, pad=pad, itemsize=1,
                                bases=bases)
    assert list(zip(addr.tolist(), writes.tolist())) == naive_conv(2, 3, 5, 6, 2, 3, 3,
                                                                   stride, pad, bases)


def test_conv2d_tiles_reorder_the_same_accesses():
    untiled = conv2d_trace(1, 4, 8, 8, 4, 3, 3, pad=1)
    tiled = conv2d_trace(1, 4, 8, 8, 4, 3, 3, pad=1, tile=dict(k=2, p=3, c=2),
                         order="kpqnrsc")
    assert untiled[0].size == tiled[0].size
    assert sorted(zip(*map(np.ndarray.tolist, untiled))) == \
        sorted(zip(*map(np.ndarray.tolist, tiled)))


def test_loop_nest_trace_follows_views_and_inner_order():
    # a transposed operand (strides of B^T) and a separate order inside the tile
    amap = AffineMap.select([1, 0], 2)
    view = TensorView(offset=1, shape=(3, 2), strides=(1, 3), itemsize=4)
    addr, writes = loop_nest_trace((2, 3), Tiling((2, 2), (1, 0)),
                                   [TensorAccess(amap, view, base=100, is_write=True)],
                                   inner_order=(0, 1))
    want = []
    for j0 in (0, 2):
        for i in range(2):
            for j in range(j0, min(j0 + 2, 3)):
                want.append(100 + 4 * (1 + j * 1 + i * 3))
    assert addr.tolist() == want and writes.all()


def test_trace_errors():
    with pytest.raises(TensorIRError, match="permutation"):
        matmul_trace(4, 4, 4, 2, 2, 2, order="mkk")
    with pytest.raises(TensorIRError, match="does not fit"):
        conv2d_trace(1, 1, 2, 2, 1, 5, 5)
    with pytest.raises(TensorIRError, match="unknown loop"):
        conv2d_trace(1, 1, 4, 4, 1, 3, 3, tile=dict(z=2))
