"""Exact set-associative LRU caches, replayed with NumPy: the CPU backend's exact mode.

    access i to line x hits  <=>  x is still among the A most recently used lines of its set

A cache level has ``num_sets = capacity / (line * A)`` sets of ``A`` ways (``A = 1``: direct
mapped; one set: fully associative); a byte address lives in line ``address // line`` and that
line in set ``line % num_sets``. Replacement is LRU, writes allocate (a write miss fetches the
line like a read miss) and write back: a line written while resident is dirty, and evicting a
dirty line sends it to the next level. Each level passes on, in order, the lines it fetches
(reads) and the dirty lines it evicts (writes): that is the trace the next level replays
(:func:`simulate_hierarchy`); no level is inclusive of another. When one miss both evicts a
dirty line and fetches one, the writeback goes first. With ``flush=True`` the lines still dirty
at the end are written back too, least recently used first.

How it replays tens of millions of accesses per second without a Python loop per access
(step numbers are those in the code):

1. **Sets are independent, and only time order within a set matters.** The trace is cut into
   cache-sized blocks; each block is stably sorted by set (a radix sort: set numbers are
   small). The resulting *block-major* order numbers the accesses (their *positions*): the
   accesses of one set appear in time order, which is all the replay needs, and the trace is
   never reordered globally. A block's accesses to one set form a *segment*.
2. **Repeats collapse.** Consecutive accesses to the same line within a set always hit and do
   not change the LRU order, so each run becomes one access (its write flag the OR of the
   run's; its other accesses are counted as hits). Tiled loop nests collapse by 2-5x.
3. **Reuse links.** ``prev[i]`` and ``next[i]``, the previous and next access to the same
   line, come from a stable sort by line inside each block and, across blocks, a table of
   each line's latest position (lines are renumbered densely first when the addresses are
   sparse).
4. **The LRU state is a set of stamps.** A resident line is identified by its last access:
   access ``i`` hits iff some way of its set still holds the stamp of ``prev[i]`` (a line is
   only ever replaced by a later access, so a surviving stamp is exact), and the LRU victim
   is the way with the oldest stamp.
5. **Chunks run in lock-step.** Segments are cut into chunks of at most ``C`` accesses, and
   all chunks of all sets advance together, one access per chunk per NumPy step (``C`` steps,
   each over thousands of chunks). A chunk needs the LRU state at its start: the ``A`` latest
   positions ``j`` before it, in its set, whose line is not accessed again before it. That is
   an associative scan. A chunk's *summary* is the last ``A`` distinct lines it touches
   (positions ``j`` in it with ``next[j]`` past its end); the state after chunks ``X`` then
   ``Y`` is ``Y``'s summary followed by the entries of ``X`` whose line ``Y`` does not touch
   (``next[x]`` past ``Y``'s end), truncated to ``A``. A Hillis-Steele scan over the chunks of
   each set gives every chunk's starting state in ``log2(chunks per set)`` vectorised rounds.
6. **One step** compares each running chunk's ``A`` stamps (they stay in the CPU's caches)
   with the stamp its access looks for; a miss takes the oldest stamp's way, an eviction when
   that way held a line. Chunks run longest first, so the chunks still running are a prefix
   and each step works on slices. A stamp is the *slot* (step, chunk) of the line's last
   access when that was in the chunk, so the hit test doubles as a link back to it, or the
   access's position offset below every slot when the line was resident at the chunk's start.
7. **Dirty lines.** A *residency* runs from a miss of a line to the access before its next
   miss; it is dirty iff one of its accesses writes. The lock-step carries a dirty bit along
   each residency within a chunk and, for one begun before the chunk, a root: its last access
   before the chunk. An eviction names the victim's last access, hence its residency, whose
   dirty bit follows the roots back chunk by chunk: a writeback iff dirty. A dirty residency
   never evicted is what ``flush`` writes back.

The work is ``O(n)`` NumPy passes over the trace plus ``O(A)`` per access in the lock-step
(one compare per way, so very high associativity is slow); the result does not depend on the
block or chunk sizes (the tests replay with many) and equals a per-access ``OrderedDict`` LRU
model exactly (``tests/backends/test_cache_sim.py``). Speed (``python benchmarks/cache_sim.py``,
this project's 2-CPU machine): an L1 of 32 KiB, 8 ways, replays a 256^3 tiled matmul's 67 M
accesses in 4-5 s of CPU time, 13-16 M accesses/s (the wall clock matches when nothing else
runs); traces without locality are the slow case (uniformly random words: about 2 M/s, as
every access misses, scans its set and evicts).

Traces of tiled loop nests (:func:`loop_nest_trace`, :func:`matmul_trace`,
:func:`conv2d_trace`) are built with broadcasting from each operand's affine indexing map
(:class:`~tensorir.ops.domain.AffineMap`) and strided layout
(:class:`~tensorir.view.TensorView`), in the order a straightforward tiled loop nest touches
memory.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import attrs
import numpy as np

from tensorir.errors import ProfileError, TensorIRError
from tensorir.ops.domain import AffineExpr, AffineMap
from tensorir.table import format_table
from tensorir.traffic import Tiling
from tensorir.view import TensorView

__all__ = [
    "CacheLevel", "CacheStats", "LevelTraffic", "HierarchyStats", "TensorAccess",
    "simulate_cache", "simulate_level", "simulate_hierarchy", "transfer_trace",
    "loop_nest_trace", "matmul_trace", "conv2d_trace",
]

# Chunk slots (chunks x ways) a lock-step step works on: big enough that NumPy's per-call
# overhead is amortised, small enough that the state stays in the CPU's caches.
_STEP_SLOTS = 1 << 17
_MIN_CHUNK = 16
# Accesses per block when grouping the raw trace by set: fits the CPU caches, and with many
# sets gives each set a run of accesses per block (segments too short make tiny chunks).
_BLOCK = 1 << 18
_BLOCK_PER_SET = 1 << 10
# Line ranges up to this many lines index a table directly; wider ones are numbered first.
_TABLE_LINES = 1 << 24


# ------------------------------------------------------------------------------ geometry
def _positive_int(value: Any, field: str, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ProfileError(f"{where}: {field} must be a positive integer, got {value!r}")
    if value < 1:
        raise ProfileError(f"{where}: {field} must be a positive integer, got {value}")
    return int(value)


@attrs.frozen
class CacheLevel:
    """Geometry of one cache level (units in the field names, as in hardware profiles)."""

    name: str
    capacity_bytes: int
    line_bytes: int
    associativity: int

    def __attrs_post_init__(self) -> None:
        where = f"cache level {self.name!r}"
        for field in ("capacity_bytes", "line_bytes", "associativity"):
            object.__setattr__(self, field, _positive_int(getattr(self, field), field, where))
        if self.line_bytes & (self.line_bytes - 1):
            raise ProfileError(f"{where}: line_bytes must be a power of two, "
                               f"got {self.line_bytes}")
        way_bytes = self.line_bytes * self.associativity
        if self.capacity_bytes % way_bytes:
            raise ProfileError(
                f"{where}: capacity_bytes={self.capacity_bytes} is not a whole number of sets "
                f"of associativity={self.associativity} x line_bytes={self.line_bytes} "
                f"= {way_bytes} bytes")

    @classmethod
    def fully_associative(cls, name: str, capacity_bytes: int, line_bytes: int) -> "CacheLevel":
        """One set: associativity equal to the number of lines."""
        return cls(name, capacity_bytes, line_bytes, max(1, capacity_bytes // line_bytes))

    @classmethod
    def direct_mapped(cls, name: str, capacity_bytes: int, line_bytes: int) -> "CacheLevel":
        return cls(name, capacity_bytes, line_bytes, 1)

    @property
    def num_lines(self) -> int:
        return self.capacity_bytes // self.line_bytes

    @property
    def num_sets(self) -> int:
        return self.num_lines // self.associativity

    def describe(self) -> str:
        size = (f"{self.capacity_bytes >> 20} MiB" if self.capacity_bytes % (1 << 20) == 0
                else f"{self.capacity_bytes >> 10} KiB" if self.capacity_bytes % 1024 == 0
                else f"{self.capacity_bytes} B")
        ways = ("fully associative" if self.num_sets == 1 and self.associativity > 1
                else "direct mapped" if self.associativity == 1
                else f"{self.associativity}-way")
        return f"{self.name} {size} {ways} {self.line_bytes} B lines"


def _as_level(level: CacheLevel | Mapping[str, Any], index: int) -> CacheLevel:
    if isinstance(level, CacheLevel):
        return level
    if isinstance(level, Mapping):
        fields = dict(level)
        fields.setdefault("name", f"L{index + 1}")
        try:
            return CacheLevel(**fields)
        except TypeError as exc:
            raise ProfileError(f"cache level {index}: {exc}; expected the fields name, "
                               f"capacity_bytes, line_bytes, associativity") from None
    raise ProfileError(f"cache level {index}: expected a CacheLevel or a mapping, "
                       f"got {type(level).__name__}")


# ------------------------------------------------------------------------------ results
@attrs.frozen(eq=False)
class CacheStats:
    """What one level did with a trace, and the trace it sends to the next level.

    Addresses in the traces are line addresses (``line * line_bytes``), in time order.
    ``out_addresses`` / ``out_is_write`` interleave fetches (reads) and writebacks (writes)
    as they happen, then the flushed lines; it is the next level's input.
    """

    level: CacheLevel
    accesses: int
    writes: int
    hits: int
    misses: int
    write_misses: int
    evictions: int
    writebacks: int
    flushed: int
    miss_addresses: np.ndarray
    writeback_addresses: np.ndarray
    flush_addresses: np.ndarray
    out_addresses: np.ndarray
    out_is_write: np.ndarray

    @property
    def reads(self) -> int:
        return self.accesses - self.writes

    @property
    def read_misses(self) -> int:
        return self.misses - self.write_misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 0.0

    @property
    def fill_bytes(self) -> int:
        """Bytes fetched from the next level (one line per miss)."""
        return self.misses * self.level.line_bytes

    @property
    def writeback_bytes(self) -> int:
        """Bytes written to the next level (dirty evictions and flushed lines)."""
        return (self.writebacks + self.flushed) * self.level.line_bytes

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("accesses", "writes", "hits", "misses",
                                              "write_misses", "evictions", "writebacks",
                                              "flushed")}


@attrs.frozen
class LevelTraffic:
    """Bytes moved between two adjacent levels (``lower`` is ``"memory"`` after the last)."""

    upper: str
    lower: str
    read_bytes: int    # lines fetched into ``upper``
    write_bytes: int   # dirty lines written back to ``lower``

    @property
    def total_bytes(self) -> int:
        return self.read_bytes + self.write_bytes


@attrs.frozen(eq=False)
class HierarchyStats:
    levels: tuple[CacheStats, ...]
    traffic: tuple[LevelTraffic, ...]

    def table(self) -> str:
        rows = [(s.level.describe(), s.accesses, s.hits, s.misses, f"{s.hit_rate:.2%}",
                 s.evictions, s.writebacks + s.flushed) for s in self.levels]
        text = format_table(("level", "accesses", "hits", "misses", "hit rate", "evictions",
                             "writebacks"), rows, align="lrrrrrr")
        moved = [(f"{t.upper} <-> {t.lower}", t.read_bytes, t.write_bytes, t.total_bytes)
                 for t in self.traffic]
        return text + "\n\n" + format_table(("between", "read bytes", "written bytes",
                                             "total bytes"), moved, align="lrrr")


# ------------------------------------------------------------------------------ sorting
def _stable_argsort(keys: np.ndarray, bound: int | None = None) -> np.ndarray:
    """Stable argsort of non-negative integers (at most ``bound``, when given): NumPy
    radix-sorts 8- and 16-bit keys, so wider keys below 2**32 go through two 16-bit passes
    (least significant first)."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.intp)
    hi = int(keys.max()) if bound is None else bound
    if hi < 1 << 8:
        return np.argsort(keys.astype(np.uint8), kind="stable")
    if hi < 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if hi < 1 << 32:
        order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
        high = (keys[order] >> 16).astype(np.uint16)
        return order[np.argsort(high, kind="stable")]
    return np.argsort(keys, kind="stable")


# ------------------------------------------------------------------------------ the replay
def _set_of(lines: np.ndarray, num_sets: int) -> np.ndarray:
    if num_sets & (num_sets - 1) == 0:
        return lines & (num_sets - 1)
    return lines % num_sets


def _collapse(line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal adjacent values."""
    head = np.empty(line.size, dtype=bool)
    head[0] = True
    np.not_equal(line[1:], line[:-1], out=head[1:])
    first = np.flatnonzero(head)
    tail = np.empty_like(first)
    tail[:-1] = first[1:] - 1
    tail[-1] = line.size - 1
    return first, tail


@attrs.frozen(eq=False)
class _Runs:
    """The collapsed trace in block-major order (see :func:`_block_runs`)."""

    t_first: np.ndarray    # trace index of the run's first access (its line and write
                           # flag are read back from the trace)
    t_last: np.ndarray | None   # trace index of its last access (only when flushing)
    w_any: np.ndarray      # some access of the run writes
    prev: np.ndarray       # position of the previous access to the line, -1 if none
    nxt: np.ndarray        # position of the next one, `never` if none
    never: int
    seg_start: np.ndarray  # start of each segment (one block's accesses to one set)
    seg_set: np.ndarray    # its set


def _block_runs(addr: np.ndarray, writes: np.ndarray, shift: int, num_sets: int,
                pdt: type, with_last: bool, extent: tuple[int, int]) -> _Runs:
    """Steps 1-3 on cache-sized blocks of the trace, one after another: sort the block by
    set (time order within a set), collapse runs of one line, and link each access to the
    previous and next access to its line through a table of each line's latest position.

    Positions are in block-major order: within a set that is time order, which is all the
    replay needs, and no global reordering of the trace is ever made.
    """
    n = addr.size
    lo, hi = extent[0] >> shift, extent[1] >> shift
    line_ids = None
    if hi - lo < _TABLE_LINES:
        span = hi - lo + 1
    else:   # a sparse address range: number the distinct lines
        distinct, line_ids = np.unique(addr >> shift, return_inverse=True)
        span = distinct.size
        line_ids = line_ids.astype(pdt)
        del distinct
    table = np.full(span, -1, dtype=pdt)
    # with a dense numbering, lines of one set sort by key // num_sets: (tag, set) order
    tag_shift = (num_sets.bit_length() - 1
                 if line_ids is None and num_sets & (num_sets - 1) == 0 else 0)
    never = n
    t_first = np.empty(n, dtype=pdt)        # pages are touched only as far as written
    t_last = np.empty(n, dtype=pdt) if with_last else None
    w_any = np.empty(n, dtype=bool)
    prev = np.empty(n, dtype=pdt)
    nxt = np.empty(n, dtype=pdt)
    sets_dt = np.uint8 if num_sets <= 1 << 8 else np.uint16 if num_sets <= 1 << 16 else np.int64
    seg_start, seg_set = [], []
    block = max(_BLOCK, _BLOCK_PER_SET * num_sets)
    out = 0
    for b0 in range(0, n, block):
        lines = addr[b0:b0 + block] >> shift
        w = writes[b0:b0 + block]
        if num_sets > 1:
            if num_sets & (num_sets - 1) == 0 and sets_dt is not np.int64:
                keys = lines.astype(sets_dt)        # wraps around: the low bits survive
                keys &= num_sets - 1
            else:
                keys = _set_of(lines, num_sets).astype(sets_dt)
            order = np.argsort(keys, kind="stable")
            lines, w = lines[order], w[order]
        first, tail = _collapse(lines)
        k = first.size
        here = slice(out, out + k)
        if line_ids is None:
            key = (lines[first] - lo).astype(pdt)
        else:
            key = line_ids[b0:b0 + block][first if num_sets == 1 else order[first]]
        if num_sets > 1:
            np.add(order[first], b0, out=t_first[here], casting="unsafe")
            if with_last:
                np.add(order[tail], b0, out=t_last[here], casting="unsafe")
            # each set's accesses start where its count says; runs never span two sets
            per_set = np.bincount(keys, minlength=num_sets)
            used = np.flatnonzero(per_set)
            begin = np.cumsum(per_set)[used] - per_set[used]
            seg_start.append(np.searchsorted(first, begin) + out)
            seg_set.append(used)
        else:
            np.add(first, b0, out=t_first[here], casting="unsafe")
            if with_last:
                np.add(tail, b0, out=t_last[here], casting="unsafe")
            seg_start.append(np.array([out]))
            seg_set.append(np.array([0]))
        w_any[here] = np.logical_or.reduceat(w, first)
        # reuse links: within the block by a stable sort on the line, across blocks by
        # the table of each line's latest position
        by_line = _stable_argsort(key >> tag_shift if tag_shift else key,
                                  (span - 1) >> tag_shift)
        key = key[by_line]
        pos = by_line.astype(pdt)
        pos += out
        same = key[1:] == key[:-1]
        prev_b, nxt_b = prev[here], nxt[here]
        nxt_b[:] = never
        prev_b[by_line[1:][same]] = pos[:-1][same]
        nxt_b[by_line[:-1][same]] = pos[1:][same]
        head = np.ones(k, dtype=bool)
        head[1:] = ~same
        last = np.ones(k, dtype=bool)
        last[:-1] = ~same
        before = table[key[head]]
        prev_b[by_line[head]] = before
        seen = before >= 0
        nxt[before[seen]] = pos[head][seen]
        table[key[last]] = pos[last]
        out += k
    return _Runs(t_first[:out], None if t_last is None else t_last[:out], w_any[:out],
                 prev[:out], nxt[:out], never, np.concatenate(seg_start),
                 np.concatenate(seg_set))


def _merge_states(later: np.ndarray, earlier: np.ndarray, ways: int) -> np.ndarray:
    """Rows of ``later`` (positions, latest first, -1 padded) followed by the kept (>= 0)
    entries of ``earlier``, first ``ways`` of them: every later entry is a later position."""
    cat = np.concatenate((later, earlier), axis=1)
    keep = cat >= 0
    dest = np.cumsum(keep, axis=1) - 1
    keep &= dest < ways
    out = np.full(later.shape, -1, dtype=later.dtype)
    r, c = np.nonzero(keep)
    out[r, dest[r, c]] = cat[r, c]
    return out


def _chunk_starting_states(nxt: np.ndarray, never: int, cs: np.ndarray, ce: np.ndarray,
                           chunk_set: np.ndarray, ways: int) -> np.ndarray:
    """Step 5: LRU state (positions, most recent first, -1 padded) at each chunk's start.
    Chunks are contiguous ranges of positions, in position order."""
    nc = cs.size
    pdt = nxt.dtype
    # summary: each chunk's last `ways` distinct lines = positions whose next use is past
    # the chunk's end, latest first; found by scanning back from each chunk's end in
    # windows until `ways` are found or the chunk is exhausted
    summary = np.full((nc, ways), -1, dtype=pdt)
    found = np.zeros(nc, dtype=np.int64)
    window = np.arange(2 * ways, dtype=pdt)
    todo = np.arange(nc)
    hi = ce.copy()
    while todo.size:
        lo = np.maximum(hi[todo] - window.size, cs[todo])
        at = lo[:, None] + window[None, :]
        inside = at < hi[todo][:, None]
        last = inside & (nxt[np.where(inside, at, 0)] >= ce[todo][:, None])
        rank = found[todo][:, None] + np.cumsum(last[:, ::-1], axis=1)[:, ::-1] - 1
        r, c = np.nonzero(last & (rank < ways))
        summary[todo[r], rank[r, c]] = at[r, c]
        found[todo] += last.sum(axis=1)
        hi[todo] = lo
        todo = todo[(found[todo] < ways) & (lo > cs[todo])]
        if window.size < 1024:
            window = np.arange(2 * window.size, dtype=pdt)
    # inclusive Hillis-Steele scan over the chunks of each set, in time order
    by_set = _stable_argsort(chunk_set)
    first_of_set = np.ones(nc, dtype=bool)
    first_of_set[1:] = chunk_set[by_set[1:]] != chunk_set[by_set[:-1]]
    k_in_set = np.arange(nc) - np.maximum.accumulate(np.where(first_of_set, np.arange(nc), 0))
    state = summary[by_set]
    ends = ce[by_set]
    nxt_e = np.append(nxt, np.array(never, dtype=pdt))   # index -1: "never used again"
    d = 1
    longest = int(k_in_set.max()) + 1 if nc else 0
    while d < longest:
        rows = np.flatnonzero(k_in_set >= d)
        earlier = state[rows - d]
        untouched = (earlier >= 0) & (nxt_e[earlier] >= ends[rows][:, None])
        state[rows] = _merge_states(state[rows], np.where(untouched, earlier, -1), ways)
        d *= 2
    start = np.full((nc, ways), -1, dtype=pdt)
    has = np.flatnonzero(k_in_set > 0)
    start[by_set[has]] = state[has - 1]
    return start


@attrs.frozen(eq=False)
class _Replay:
    """The lock-step's results. Slot ``offset[t] + r`` is step t of chunk row r (chunks
    sorted longest first; ``cs``: first position of each row's chunk)."""

    miss_at: np.ndarray      # position of each miss
    evict_at: np.ndarray     # position of each evicting miss
    victim: np.ndarray       # the evicted residency's last access: a slot when it began in
                             # the evicting chunk, else position - big (negative)
    big: int
    dirty_local: np.ndarray  # per slot: a write since the residency began in this chunk
    root: np.ndarray         # per slot: position of the residency's last access before
                             # this chunk, or -1
    offset: np.ndarray
    cs: np.ndarray
    any_dirty: bool          # False: the trace has no writes (dirty_local/root are unset)
    by_start: np.ndarray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "by_start", np.argsort(self.cs, kind="stable"))

    def slot(self, positions: np.ndarray) -> np.ndarray:
        starts = self.cs[self.by_start]
        row = self.by_start[np.searchsorted(starts, positions, side="right") - 1]
        return self.offset[positions - self.cs[row]] + row

    def position(self, slots: np.ndarray) -> np.ndarray:
        step = np.searchsorted(self.offset, slots, side="right") - 1
        return self.cs[slots - self.offset[step]] + step

    def victim_position(self, which: np.ndarray | slice = slice(None)) -> np.ndarray:
        v = self.victim[which]
        before = np.flatnonzero(v < 0)          # resident since before the chunk
        out = self.position(np.where(v < 0, 0, v))
        out[before] = v[before] + self.big
        return out

    def victim_dirty(self) -> np.ndarray:
        if not self.any_dirty:
            return np.zeros(self.victim.size, dtype=bool)
        v = self.victim
        before = np.flatnonzero(v < 0)
        slots = np.where(v < 0, 0, v)
        slots[before] = self.slot(v[before] + self.big)
        return self._dirty(slots)

    def dirty(self, positions: np.ndarray) -> np.ndarray:
        if not self.any_dirty:
            return np.zeros(positions.size, dtype=bool)
        return self._dirty(self.slot(positions))

    def _dirty(self, slots: np.ndarray) -> np.ndarray:
        """Whether the residency up to each slot has a write: follow the roots back through
        earlier chunks (at most one step per chunk of the set)."""
        acc = self.dirty_local[slots]
        at = np.flatnonzero(~acc)
        r = self.root[slots[at]]
        while at.size:
            live = r >= 0
            at, r = at[live], self.slot(r[live])
            acc[at] = self.dirty_local[r]
            open_ = ~acc[at]
            at, r = at[open_], self.root[r[open_]]
        return acc


def _lru_replay(runs: _Runs, ways: int, chunk_len: int | None) -> _Replay:
    """Steps 4-7: the misses, the evictions, and what the dirty bits need.

    Chunks run longest first, so the chunks still running at step t are a prefix (rows
    ``[0, active[t])``) and their accesses are the contiguous *slots* ``[offset[t],
    offset[t] + active[t])``. A step gathers its accesses' links from ``prev`` (each chunk
    reads the next element of its own range, so cache lines are reused from step to step)
    and writes its dirty bits to its slice of slots.
    """
    prev = runs.prev
    m = prev.size
    pdt = np.int32 if 2 * m + 2 * ways + 8 < 1 << 31 else np.int64
    seg_len = np.diff(np.append(runs.seg_start, m))
    if chunk_len is None:
        chunk_len = max(_MIN_CHUNK, -(-m // max(1, _STEP_SLOTS // ways)))
    C = int(chunk_len)
    pieces = -(-seg_len // C)
    nc = int(pieces.sum())
    k = np.arange(nc) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    cs = (np.repeat(runs.seg_start, pieces) + k * C).astype(pdt)
    ce = np.minimum(cs + C, np.repeat(runs.seg_start + seg_len, pieces)).astype(pdt)
    del k, seg_len

    start = _chunk_starting_states(runs.nxt, runs.never, cs, ce,
                                   np.repeat(runs.seg_set, pieces), ways)

    rows = np.argsort(cs - ce, kind="stable")
    cs, lens = cs[rows], (ce - cs)[rows]
    steps = int(lens[0])
    active = np.searchsorted(-lens, -np.arange(steps), side="left")
    offset = np.concatenate(([0], np.cumsum(active))).astype(pdt)
    # Stamps, oldest smallest: the slot of the line's last access in this chunk, or for a
    # line resident at the chunk's start its position - big (earlier than every slot);
    # empty ways below those. A line is resident iff some way holds the stamp of prev[i].
    big = m + 2
    stamps = start[rows].astype(pdt)
    del start, rows
    empty = stamps < 0
    stamps -= big
    stamps[empty] = (-2 * big - np.arange(ways, dtype=pdt))[np.nonzero(empty)[1]]
    flat_stamps = stamps.reshape(-1)
    w_any = runs.w_any
    track_dirty = bool(w_any.any())
    dirty_local = np.empty(m if track_dirty else 0, dtype=bool)
    root = np.empty(m if track_dirty else 0, dtype=pdt)
    target = np.empty(nc, dtype=np.int64)
    lane = np.arange(nc, dtype=pdt)
    misses: list[np.ndarray] = []
    victims: list[np.ndarray] = []
    for t in range(steps):
        o, na = int(offset[t]), int(active[t])
        s = slice(o, o + na)
        at = cs[:na] + t
        ps = prev[at]
        back = ps - cs[:na]
        inside = back >= 0                      # prev[i] is in this chunk, `back` steps ago
        want = np.where(inside, offset[np.where(inside, back, 0)] + lane[:na], ps - big)
        found = np.flatnonzero(stamps[:na] == want[:, None])
        row = found // ways
        hits = np.zeros(na, dtype=bool)
        hits[row] = True
        target[row] = found
        if track_dirty:
            # a hit continues its residency: begun in this chunk (its dirty bit is known),
            # or before it (rooted at prev[i]); a miss begins one
            cont = hits & inside
            earlier = np.where(cont, want, 0)
            dirty_local[s] = w_any[at] | (cont & dirty_local[earlier])
            root[s] = np.where(cont, root[earlier], np.where(hits, ps, -1))
        miss = np.flatnonzero(~hits)
        if miss.size:
            cand = stamps[miss]
            lru = cand.argmin(axis=1)
            victims.append(cand[lane[:miss.size], lru])
            target[miss] = miss * ways + lru
            misses.append(at[miss])
        flat_stamps[target[:na]] = lane[:na] + o
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=pdt))
    miss_at, victim = cat(misses), cat(victims)
    real = victim >= -big      # not an empty way
    return _Replay(miss_at, miss_at[real], victim[real], big, dirty_local, root, offset, cs,
                   track_dirty)


def _check_trace(addresses: Any, is_write: Any) -> tuple[np.ndarray, np.ndarray]:
    addr = np.asarray(addresses)
    if addr.ndim != 1:
        raise TensorIRError(f"cache trace: addresses must be one-dimensional, got shape "
                            f"{addr.shape}")
    if addr.size and not np.issubdtype(addr.dtype, np.integer):
        raise TensorIRError(f"cache trace: addresses must be integers, got dtype {addr.dtype}")
    addr = addr.astype(np.int64, copy=False)
    if is_write is None:
        writes = np.zeros(addr.size, dtype=bool)
    else:
        writes = np.asarray(is_write)
        if writes.shape != addr.shape:
            raise TensorIRError(f"cache trace: is_write has shape {writes.shape}, the "
                                f"addresses {addr.shape}")
        writes = writes.astype(bool, copy=False)
    return addr, writes


def _empty_stats(level: CacheLevel) -> CacheStats:
    z = np.zeros(0, dtype=np.int64)
    return CacheStats(level, 0, 0, 0, 0, 0, 0, 0, 0, z, z, z, z, np.zeros(0, dtype=bool))


def simulate_level(addresses: Any, is_write: Any, level: CacheLevel, *, flush: bool = False,
                   chunk_len: int | None = None) -> CacheStats:
    """Replay byte ``addresses`` (``is_write``: per-access write flags, or None for all reads)
    through one LRU ``level``. ``chunk_len`` tunes the lock-step (accesses per chunk; None
    picks one) and never changes the result."""
    addr, writes = _check_trace(addresses, is_write)
    n = addr.size
    if n == 0:
        return _empty_stats(level)
    lowest, highest = int(addr.min()), int(addr.max())
    if lowest < 0:
        raise TensorIRError(f"cache trace: negative address {lowest} at index "
                            f"{int(np.argmin(addr))}")
    if chunk_len is not None:
        chunk_len = _positive_int(chunk_len, "chunk_len", "simulate_level")
    ways, num_sets, line_bytes = level.associativity, level.num_sets, level.line_bytes
    pdt = np.int32 if n < (1 << 31) - 4 else np.int64

    runs = _block_runs(addr, writes, line_bytes.bit_length() - 1, num_sets, pdt, flush,
                       (lowest, highest))
    rep = _lru_replay(runs, ways, chunk_len)

    # step 7: an eviction writes back iff the victim's residency has a write
    shift = line_bytes.bit_length() - 1
    dirty_ev = rep.victim_dirty()
    missed = np.zeros(n, dtype=bool)
    missed[runs.t_first[rep.miss_at]] = True
    miss_time = np.flatnonzero(missed)     # in time order without a sort
    del missed
    write_misses = int(np.count_nonzero(writes[miss_time]))
    miss_lines = addr[miss_time] >> shift
    wb_time = runs.t_first[rep.evict_at[dirty_ev]]
    wb_lines = addr[runs.t_first[rep.victim_position(dirty_ev)]] >> shift
    by_time = np.argsort(wb_time, kind="stable")
    wb_time, wb_lines = wb_time[by_time], wb_lines[by_time]

    if flush:   # the lines still resident at the end: last accesses never evicted
        last = runs.nxt == runs.never
        last[rep.victim_position()] = False
        last = np.flatnonzero(last)
        last = last[rep.dirty(last)]
        flush_lines = addr[np.sort(runs.t_last[last])] >> shift
    else:
        flush_lines = np.zeros(0, dtype=np.int64)

    # the next level's trace: a writeback goes just before the fetch of the miss that
    # evicted its line (every writeback happens at a miss)
    at = np.searchsorted(miss_time, wb_time) + np.arange(wb_time.size)
    out_write = np.zeros(miss_time.size + wb_time.size + flush_lines.size, dtype=bool)
    out_write[at] = True
    out_write[miss_time.size + wb_time.size:] = True
    out_lines = np.empty(out_write.size, dtype=np.int64)
    out_lines[at] = wb_lines
    out_lines[:miss_time.size + wb_time.size][~out_write[:miss_time.size + wb_time.size]] = \
        miss_lines
    out_lines[miss_time.size + wb_time.size:] = flush_lines

    misses = int(miss_time.size)
    return CacheStats(
        level=level, accesses=n, writes=int(np.count_nonzero(writes)), hits=n - misses,
        misses=misses, write_misses=write_misses,
        evictions=int(rep.evict_at.size), writebacks=int(wb_lines.size),
        flushed=int(flush_lines.size),
        miss_addresses=miss_lines * line_bytes, writeback_addresses=wb_lines * line_bytes,
        flush_addresses=flush_lines * line_bytes, out_addresses=out_lines * line_bytes,
        out_is_write=out_write)


def simulate_cache(addresses: Any, is_write: Any = None, *, capacity_bytes: int,
                   line_bytes: int, associativity: int, flush: bool = False,
                   name: str = "cache", chunk_len: int | None = None) -> CacheStats:
    """Replay a trace through one set-associative LRU cache (write-allocate, write-back).

    >>> s = simulate_cache([0, 64, 0, 128, 0], [False, True, False, False, False],
    ...                    capacity_bytes=128, line_bytes=64, associativity=2)
    >>> s.hits, s.misses, s.evictions, s.writebacks
    (2, 3, 1, 1)
    >>> s.out_addresses.tolist(), s.out_is_write.tolist()
    ([0, 64, 64, 128], [False, False, True, False])
    """
    level = CacheLevel(name, capacity_bytes, line_bytes, associativity)
    return simulate_level(addresses, is_write, level, flush=flush, chunk_len=chunk_len)


def transfer_trace(stats: CacheStats, next_line_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The trace ``stats``' level sends to a level with ``next_line_bytes`` lines: one access
    per transferred line, or, when the next level's lines are smaller, one per piece."""
    line = stats.level.line_bytes
    if next_line_bytes >= line:
        return stats.out_addresses, stats.out_is_write
    pieces = line // next_line_bytes
    offsets = np.arange(pieces, dtype=np.int64) * next_line_bytes
    addr = (stats.out_addresses[:, None] + offsets[None, :]).reshape(-1)
    return addr, np.repeat(stats.out_is_write, pieces)


def simulate_hierarchy(addresses: Any, is_write: Any = None, *,
                       levels: Sequence[CacheLevel | Mapping[str, Any]],
                       flush: bool = False, chunk_len: int | None = None) -> HierarchyStats:
    """Replay a trace through cache levels, nearest first: each level sees the fetches
    (reads) and dirty writebacks (writes) of the one before it, in order.

    ``traffic[i]`` is the bytes moved between level i and level i+1 (or memory after the
    last): lines fetched and lines written back, times the upper level's line size.
    """
    parsed = [_as_level(level, i) for i, level in enumerate(levels)]
    if not parsed:
        raise ProfileError("simulate_hierarchy: levels is empty; give at least one cache level")
    stats: list[CacheStats] = []
    traffic: list[LevelTraffic] = []
    addr, writes = _check_trace(addresses, is_write)
    for i, level in enumerate(parsed):
        s = simulate_level(addr, writes, level, flush=flush, chunk_len=chunk_len)
        stats.append(s)
        lower = parsed[i + 1].name if i + 1 < len(parsed) else "memory"
        traffic.append(LevelTraffic(level.name, lower, s.fill_bytes, s.writeback_bytes))
        if i + 1 < len(parsed):
            addr, writes = transfer_trace(s, parsed[i + 1].line_bytes)
    return HierarchyStats(tuple(stats), tuple(traffic))


# ------------------------------------------------------------------------------ traces
@attrs.frozen
class TensorAccess:
    """One operand touched at every point of a loop nest: element ``amap(point)`` of a
    tensor laid out as ``view`` (offsets and strides in elements, ``view.itemsize`` bytes
    each) whose storage element 0 is at byte ``base``. Points whose index falls outside
    ``view.shape`` (a convolution's padding) touch nothing."""

    amap: AffineMap
    view: TensorView
    base: int = 0
    is_write: bool = False

    def __attrs_post_init__(self) -> None:
        if len(self.amap.exprs) != self.view.ndim:
            raise TensorIRError(f"TensorAccess: the map has {len(self.amap.exprs)} results, "
                                f"the view {self.view.ndim} dims")
        if not isinstance(self.view.itemsize, int):
            raise TensorIRError(f"TensorAccess: itemsize must be whole bytes, got "
                                f"{self.view.itemsize}")


def _dim_order(order: str | Sequence[int], names: str) -> tuple[int, ...]:
    if isinstance(order, str):
        if sorted(order) != sorted(names):
            raise TensorIRError(f"loop order {order!r} is not a permutation of {names!r}")
        return tuple(names.index(c) for c in order)
    return tuple(order)


def loop_nest_trace(extents: Sequence[int], tiling: Tiling, accesses: Sequence[TensorAccess],
                    inner_order: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Byte addresses and write flags of a tiled loop nest, in execution order.

    Tile loops run in ``tiling.order`` (outermost first), then the loops inside a tile in
    ``inner_order`` (default: the same order); at each point the ``accesses`` happen in list
    order. Edge tiles are partial. Built by broadcasting one axis per loop, no Python loop
    per element.
    """
    n = len(extents)
    extents = [int(e) for e in extents]
    if len(tiling.tile) != n:
        raise TensorIRError(f"tiling has {len(tiling.tile)} dims, the loop nest {n}")
    tile = [max(1, min(int(t), e)) for t, e in zip(tiling.tile, extents)]
    outer = tuple(tiling.order)
    inner = tuple(inner_order) if inner_order is not None else outer
    if sorted(inner) != list(range(n)):
        raise TensorIRError(f"inner_order {inner} is not a permutation of {n} loop dims")
    trips = [-(-e // t) for e, t in zip(extents, tile)]
    shape = [trips[d] for d in outer] + [tile[d] for d in inner]
    if 0 in extents or not accesses:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)

    def axis_array(values: np.ndarray, axis: int) -> np.ndarray:
        s = [1] * (2 * n)
        s[axis] = values.size
        return values.reshape(s)

    index = [axis_array(np.arange(trips[d], dtype=np.int64) * tile[d], outer.index(d))
             + axis_array(np.arange(tile[d], dtype=np.int64), n + inner.index(d))
             for d in range(n)]
    mask = None
    if any(e % t for e, t in zip(extents, tile)):
        for d in range(n):
            if extents[d] % tile[d]:
                inside = index[d] < extents[d]
                mask = inside if mask is None else mask & inside
    grid = (*shape, len(accesses))
    addr = np.empty(grid, dtype=np.int64)
    keep = None if mask is None else np.empty(grid, dtype=bool)
    for a, acc in enumerate(accesses):
        view, size = acc.view, acc.view.itemsize
        total = np.array(acc.base + size * view.offset, dtype=np.int64)
        coeff = [0] * n
        bounds_mask = None
        for expr, stride, bound in zip(acc.amap.exprs, view.strides, view.shape):
            if len(expr.coeffs) != n:
                raise TensorIRError(f"an access map has {len(expr.coeffs)} loop dims, the "
                                    f"loop nest {n}")
            total = total + size * stride * expr.const
            for d, c in enumerate(expr.coeffs):
                coeff[d] += size * stride * c
            lo = expr.const + sum(min(0, c * (e - 1)) for c, e in zip(expr.coeffs, extents))
            hi = expr.const + sum(max(0, c * (e - 1)) for c, e in zip(expr.coeffs, extents))
            if lo < 0 or hi >= bound:
                idx = np.array(expr.const, dtype=np.int64)
                for d, c in enumerate(expr.coeffs):
                    if c:
                        idx = idx + c * index[d]
                inside = (idx >= 0) & (idx < bound)
                bounds_mask = inside if bounds_mask is None else bounds_mask & inside
        for d in range(n):
            if coeff[d]:
                total = total + coeff[d] * index[d]
        addr[..., a] = total
        if bounds_mask is not None or keep is not None:
            if keep is None:
                keep = np.ones(grid, dtype=bool)
            m = np.ones(shape, dtype=bool) if mask is None else mask
            keep[..., a] = m if bounds_mask is None else m & bounds_mask
    flags = np.tile(np.array([acc.is_write for acc in accesses]), math.prod(shape))
    if keep is None:
        return addr.reshape(-1), flags
    keep = keep.reshape(-1)
    return addr.reshape(-1)[keep], flags[keep]


def _place(sizes: Sequence[int], bases: Sequence[int] | None, align: int = 4096) -> list[int]:
    """Base addresses: the given ones, or the tensors one after another, page aligned."""
    if bases is not None:
        if len(bases) != len(sizes):
            raise TensorIRError(f"expected {len(sizes)} base addresses, got {len(bases)}")
        return [int(b) for b in bases]
    out, at = [], 0
    for s in sizes:
        out.append(at)
        at += -(-s // align) * align
    return out


def matmul_trace(M: int, N: int, K: int, tile_m: int, tile_n: int, tile_k: int, *,
                 itemsize: int = 4, bases: Sequence[int] | None = None,
                 order: str = "mnk", inner_order: str | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Addresses of ``C[m, n] += A[m, k] * B[k, n]`` (row-major A, B, C) as a tiled loop nest:
    per point A read, B read, C read, C written. ``bases``: byte addresses of A, B, C
    (default: one after another, page aligned); ``order``: tile loops, outermost first."""
    names = "mnk"
    dom = 3
    maps = {"A": AffineMap.select([0, 2], dom), "B": AffineMap.select([2, 1], dom),
            "C": AffineMap.select([0, 1], dom)}
    shapes = {"A": (M, K), "B": (K, N), "C": (M, N)}
    base = dict(zip("ABC", _place([M * K * itemsize, K * N * itemsize, M * N * itemsize],
                                  bases)))
    view = {t: TensorView.contiguous(shapes[t], itemsize=itemsize) for t in "ABC"}
    accesses = [TensorAccess(maps["A"], view["A"], base["A"]),
                TensorAccess(maps["B"], view["B"], base["B"]),
                TensorAccess(maps["C"], view["C"], base["C"]),
                TensorAccess(maps["C"], view["C"], base["C"], is_write=True)]
    tiling = Tiling((tile_m, tile_n, tile_k), _dim_order(order, names))
    inner = None if inner_order is None else _dim_order(inner_order, names)
    return loop_nest_trace((M, N, K), tiling, accesses, inner)


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv2d_trace(batch: int, channels: int, height: int, width: int, filters: int,
                 kernel_h: int, kernel_w: int, *, stride: int | Sequence[int] = 1,
                 pad: int | Sequence[int] = 0, tile: Mapping[str, int] | None = None,
                 order: str = "nkpqcrs", inner_order: str | None = None, itemsize: int = 4,
                 bases: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Addresses of an NCHW convolution ``Y[n,k,p,q] += X[n,c,p*sh+r-ph, q*sw+s-pw] *
    W[k,c,r,s]`` as a tiled loop nest over ``n k p q c r s`` (``tile`` maps a loop letter to
    its tile size; missing letters are untiled): per point X read (skipped in the padding),
    W read, Y read, Y written. ``bases``: byte addresses of X, W, Y."""
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(pad, "pad")
    P = (height + 2 * ph - kernel_h) // sh + 1
    Q = (width + 2 * pw - kernel_w) // sw + 1
    if P < 1 or Q < 1:
        raise TensorIRError(f"conv2d_trace: a {kernel_h}x{kernel_w} kernel does not fit a "
                            f"{height}x{width} input with pad {(ph, pw)}")
    names = "nkpqcrs"
    extents = (batch, filters, P, Q, channels, kernel_h, kernel_w)
    dom = len(names)

    def e(**coeffs: int) -> AffineExpr:
        const = coeffs.pop("const", 0)
        return AffineExpr(tuple(coeffs.get(c, 0) for c in names), const)

    x_map = AffineMap((e(n=1), e(c=1), e(p=sh, r=1, const=-ph), e(q=sw, s=1, const=-pw)))
    w_map = AffineMap.select([1, 4, 5, 6], dom)
    y_map = AffineMap.select([0, 1, 2, 3], dom)
    xs, ws, ys = ((batch, channels, height, width), (filters, channels, kernel_h, kernel_w),
                  (batch, filters, P, Q))
    base = _place([math.prod(s) * itemsize for s in (xs, ws, ys)], bases)
    xv, wv, yv = (TensorView.contiguous(s, itemsize=itemsize) for s in (xs, ws, ys))
    accesses = [TensorAccess(x_map, xv, base[0]), TensorAccess(w_map, wv, base[1]),
                TensorAccess(y_map, yv, base[2]), TensorAccess(y_map, yv, base[2], True)]
    tile = dict(tile or {})
    unknown = set(tile) - set(names)
    if unknown:
        raise TensorIRError(f"conv2d_trace: unknown loop(s) {sorted(unknown)} in tile; the "
                            f"loops are {' '.join(names)}")
    tiling = Tiling(tuple(tile.get(c, x) for c, x in zip(names, extents)),
                    _dim_order(order, names))
    inner = None if inner_order is None else _dim_order(inner_order, names)
    return loop_nest_trace(extents, tiling, accesses, inner)
