"""Closed-form cycle model of an R x C systolic array: SCALE-Sim's per-fold model, and the KPU's.

A GEMM ``C[M, N] = A[M, K] @ B[K, N]`` (or a convolution lowered to one) is mapped onto the
array by a *dataflow*: two of M, N, K are laid out over the array's rows and columns, the third
is streamed through it in time. In SCALE-Sim's names (``scalesim/topology_utils.py``,
``calc_spatio_temporal_params``) with ``Sr`` on the rows, ``Sc`` on the columns, ``T`` in time::

    dataflow  stationary  Sr               Sc               T
    os        outputs     M (ofmap pixels) N (filters)      K (window R*S*C)
    ws        weights     K (window)       N (filters)      M (ofmap pixels)
    is        inputs      K (window)       M (ofmap pixels) N (filters)

A problem larger than the array is cut into ``F = ceil(Sr/R) * ceil(Sc/C)`` *folds*; every
fold streams all ``T`` steps. Both modes below are sums over folds; they differ in what one
fold costs and whether consecutive folds overlap.

**SCALE-Sim mode** (:func:`scalesim_cycles`) reproduces SCALE-Sim v2's stall-free compute
cycles (``scalesim-project/scale-sim-v2``, ``scalesim/compute/systolic_compute_{os,ws,is}.py``;
``ARM-software/SCALE-Sim`` holds v1, a different, trace-driven model). SCALE-Sim builds one
demand matrix per operand, one row per cycle, fold after fold; a fold's rows are::

    os:  L = T + R + C - 2     ifmap demand: T rows + (C-1) drain rows, skewed over R cols
    ws:  L = T + 2R + C - 2    ifmap demand: R weight-load rows + T + (C-1), skewed over R cols
    is:  L = T + 2R + C - 2    filter demand: R input-load rows + T + (C-1), skewed over R cols

and folds never overlap ("we are allowing the generated outputs to drain out before starting
the next fold"), so the array is busy for ``F * L`` cycles. SCALE-Sim's report prints
``Total Cycles = F * L - 1``: the memory system serves demand row ``i`` at cycle
``i + stalls`` and reports the cycle of the last row (``double_buffered_scratchpad.
service_memory_requests``), an index, not a count. :attr:`SystolicResult.cycles` is the count
``F * L``; :attr:`SystolicResult.scalesim_total_cycles` is the printed number.

**KPU mode** (:func:`kpu_cycles`) is the same array with double-buffered stationary operands
(ws/is: the next fold's weights or inputs shift in while the current fold streams; os: the
finished outputs shift out while the next fold accumulates), so the fill of fold ``f+1``
overlaps the drain of fold ``f``. With a fold tile of ``r x c`` PEs (``r <= R``, ``c <= C``)::

    one fold alone:   L(r, c) = T + r + c - 2      (os)     T + 2r + c - 2   (ws, is)
    fold interval:    I(r)    = max(T, r)          (T steps stream; loading or draining an
                                                    r x c tile through c edge ports takes r)
    overlap=True:     cycles  = (F - 1) * I(r) + L(r, c)
    overlap=False:    cycles  = F * L(r, c)

A full-array fold costs exactly what SCALE-Sim charges (``L(R, C)`` is its ``L``); the modes
differ by the overlap and the tile choice: the KPU picks the fold tile ``(r, c)`` minimising
``cycles`` (a larger array can always run a smaller array's schedule on a corner of itself),
where SCALE-Sim always pads a fold to the full ``R x C``. That choice makes a bigger array
never slower; SCALE-Sim's mode is not monotone in the array size (a problem that already fits
pays the larger array's longer skew). With folds serialized (``overlap=False``) the KPU's
count is at most SCALE-Sim's, and equal when ``R`` divides ``Sr`` and ``C`` divides ``Sc``.

Utilisation is ``MACs / (R * C * cycles)`` in both modes.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import attrs
import numpy as np

from tensorir.errors import ProfileError, ShapeError

DATAFLOWS = ("os", "ws", "is")

# which GEMM dim goes on the array rows, the array columns, and in time
_LAYOUT = {"os": ("M", "N", "K"), "ws": ("K", "N", "M"), "is": ("K", "M", "N")}
_MEANING = {"M": "ofmap pixels", "N": "filters", "K": "window"}


def _check_array(rows: int, cols: int, dataflow: str) -> None:
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ProfileError(f"systolic array {name}: expected a positive int, found {v!r}")
    if dataflow not in DATAFLOWS:
        raise ProfileError(f"systolic array dataflow: expected one of {', '.join(DATAFLOWS)}, "
                           f"found {dataflow!r}")


def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ShapeError(f"systolic GEMM {name}: expected a positive int, found {v!r}")


@attrs.frozen
class Mapping:
    """How a GEMM lies on the array: ``sr`` along the rows, ``sc`` along the columns, ``t``
    streamed in time, and which of M, N, K each one is."""

    dataflow: str
    sr: int
    sc: int
    t: int
    rows_dim: str
    cols_dim: str
    time_dim: str

    def describe(self) -> str:
        return (f"{self.dataflow}: rows <- {self.rows_dim}={self.sr} "
                f"({_MEANING[self.rows_dim]}), cols <- {self.cols_dim}={self.sc} "
                f"({_MEANING[self.cols_dim]}), time <- {self.time_dim}={self.t} "
                f"({_MEANING[self.time_dim]})")


def gemm_mapping(M: int, N: int, K: int, dataflow: str = "os") -> Mapping:
    """SCALE-Sim's spatio-temporal mapping (``topology_utils.calc_spatio_temporal_params``)."""
    if dataflow not in DATAFLOWS:
        raise ProfileError(f"systolic array dataflow: expected one of {', '.join(DATAFLOWS)}, "
                           f"found {dataflow!r}")
    _check_dims(M=M, N=N, K=K)
    size = {"M": int(M), "N": int(N), "K": int(K)}
    r, c, t = _LAYOUT[dataflow]
    return Mapping(dataflow, size[r], size[c], size[t], r, c, t)


class ConvGemm(NamedTuple):
    """A convolution as SCALE-Sim sees it: a GEMM ``M x N x K`` and the ofmap it computes."""

    m: int          # ofmap pixels per filter = ofmap_h * ofmap_w
    n: int          # number of filters
    k: int          # window size = filter_h * filter_w * channels
    ofmap_h: int
    ofmap_w: int


def conv_as_gemm(ifmap_h: int, ifmap_w: int, filter_h: int, filter_w: int, channels: int,
                 num_filters: int, stride_h: int = 1, stride_w: Optional[int] = None) -> ConvGemm:
    """SCALE-Sim's convolution-to-GEMM mapping (``topology_utils.topo_calc_hyperparams``).

    ``ofmap_h = ceil((ifmap_h - filter_h + stride_h) / stride_h)`` (likewise for the width),
    ``M = ofmap_h * ofmap_w``, ``N = num_filters``, ``K = filter_h * filter_w * channels``.
    There is no padding, and the ceiling keeps a last, partial window when
    ``(ifmap - filter) % stride != 0``: one ofmap row or column more than the usual
    ``floor((ifmap - filter) / stride) + 1`` (AlexNet conv1, 224 / 11 / stride 4: 55, not 54).
    SCALE-Sim computes those windows (their out-of-range addresses are ``-1``) and counts their
    MACs. A topology row ``name, M, N, K`` of an ``-i gemm`` run is loaded as the convolution
    ``ifmap M x K, filter 1 x K, 1 channel, N filters, stride 1`` (``load_arrays_gemm``), which
    maps back to ``(M, N, K)``.
    """
    stride_w = stride_h if stride_w is None else stride_w
    _check_dims(ifmap_h=ifmap_h, ifmap_w=ifmap_w, filter_h=filter_h, filter_w=filter_w,
                channels=channels, num_filters=num_filters, stride_h=stride_h,
                stride_w=stride_w)
    if filter_h > ifmap_h or filter_w > ifmap_w:
        raise ShapeError(f"convolution filter {filter_h}x{filter_w} is larger than its ifmap "
                         f"{ifmap_h}x{ifmap_w} (SCALE-Sim asserts the same)")
    oh = -(-(ifmap_h - filter_h + stride_h) // stride_h)
    ow = -(-(ifmap_w - filter_w + stride_w) // stride_w)
    return ConvGemm(oh * ow, int(num_filters), filter_h * filter_w * channels, oh, ow)


@attrs.frozen
class SystolicResult:
    """Cycles of one GEMM on an ``rows x cols`` array, with the folds that make them up."""

    mode: str                 # "scalesim" or "kpu"
    dataflow: str
    rows: int                 # the array
    cols: int
    M: int
    N: int
    K: int
    mapping: Mapping
    tile_rows: int            # PEs a fold uses (SCALE-Sim: always the whole array)
    tile_cols: int
    row_folds: int            # ceil(sr / tile_rows)
    col_folds: int            # ceil(sc / tile_cols)
    fold_cycles: int          # L: one fold on its own, fill and drain included
    interval: int             # cycles between the starts of consecutive folds
    cycles: int               # cycles the array is busy (a count)
    overlap: bool

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K

    @property
    def utilisation(self) -> float:
        """Useful MACs over the MACs the array could have done: ``MACs / (R * C * cycles)``."""
        return self.macs / (self.rows * self.cols * self.cycles)

    @property
    def mapping_efficiency(self) -> float:
        """Mean over folds of the fraction of PEs a fold maps: ``sr * sc / (F * R * C)``
        (SCALE-Sim's "Mapping Efficiency")."""
        return self.mapping.sr * self.mapping.sc / (self.folds * self.rows * self.cols)

    @property
    def scalesim_total_cycles(self) -> int:
        """The ``Total Cycles`` SCALE-Sim prints for this stall-free run: ``F * L - 1``."""
        self._require_scalesim("scalesim_total_cycles")
        return self.cycles - 1

    @property
    def scalesim_compute_util(self) -> float:
        """SCALE-Sim's "Compute Util": the per-fold mean of
        ``rows_used * cols_used * T / (R * C * L_util)``, i.e. ``MACs / (F * R * C * L_util)``.

        ``L_util`` is ``shape[0] + shape[1] - 1`` of one fold's demand matrix before its skew:
        for os the ofmap matrix, ``(T - 1 + R) + C - 1 = L``; for ws the filter matrix and for
        is the ifmap matrix, ``(R + R + C + T - 2) + C - 1 = T + 2R + 2C - 3``, which counts a
        skew those matrices never get, so it is ``C - 1`` more than the fold's real ``L``.
        """
        self._require_scalesim("scalesim_compute_util")
        R, C, T = self.rows, self.cols, self.mapping.t
        l_util = self.fold_cycles if self.dataflow == "os" else T + 2 * R + 2 * C - 3
        return self.macs / (self.folds * R * C * l_util)

    def scalesim_report(self, stall_cycles: int = 0) -> dict:
        """The row SCALE-Sim writes to ``COMPUTE_REPORT.csv`` (``single_layer_sim.
        calc_report_data``), percentages included. ``stall_cycles`` adds memory stalls to the
        total, as SCALE-Sim's memory system does; the compute columns do not change."""
        self._require_scalesim("scalesim_report")
        total = self.scalesim_total_cycles + stall_cycles
        macs_pct = self.macs * 100
        overall = macs_pct / (total * self.rows * self.cols) if total else math.inf
        return {"Total Cycles": total, "Stall Cycles": stall_cycles,
                "Overall Util %": overall,
                "Mapping Efficiency %": self.mapping_efficiency * 100,
                "Compute Util %": self.scalesim_compute_util * 100}

    def _require_scalesim(self, what: str) -> None:
        if self.mode != "scalesim":
            raise ProfileError(f"{what} is defined for SCALE-Sim mode results, not {self.mode!r}")


def _fold_latency(dataflow: str, t: int, r: int, c: int):
    """One fold on its own: os ``T + r + c - 2``; ws, is ``T + 2r + c - 2`` (works on arrays)."""
    return t + r + c - 2 if dataflow == "os" else t + 2 * r + c - 2


def scalesim_cycles(M: int, N: int, K: int, rows: int, cols: int,
                    dataflow: str = "os") -> SystolicResult:
    """SCALE-Sim v2's stall-free compute cycles of a GEMM ``M x N x K`` on a ``rows x cols``
    array: ``F * L`` with ``F = ceil(Sr/R) * ceil(Sc/C)`` and ``L`` per dataflow::

        os  L = T + R + C - 2   (systolic_compute_os: ifmap gap ``arr_col - 1`` + skew ``R - 1``)
        ws  L = T + 2R + C - 2  (systolic_compute_ws: ifmap prefix ``arr_row``, gap
                                 ``arr_col - 1``, skew ``R - 1``)
        is  L = T + 2R + C - 2  (systolic_compute_is: filter prefix ``arr_row``, gap
                                 ``arr_col - 1``, skew ``R - 1``)

    ``cycles`` counts them; SCALE-Sim prints ``F * L - 1`` (``scalesim_total_cycles``).
    """
    _check_array(rows, cols, dataflow)
    mp = gemm_mapping(M, N, K, dataflow)
    rf, cf = -(-mp.sr // rows), -(-mp.sc // cols)
    L = _fold_latency(dataflow, mp.t, rows, cols)
    return SystolicResult("scalesim", dataflow, int(rows), int(cols), int(M), int(N), int(K),
                          mp, int(rows), int(cols), rf, cf, L, L, rf * cf * L, False)


def _tile_candidates(extent: int, limit: int) -> np.ndarray:
    """Tile sizes worth trying along one axis: for each fold count the smallest tile that
    reaches it (a larger tile with the same folds only lengthens the skew), up to ``limit``."""
    t = np.arange(1, min(extent, limit) + 1, dtype=np.int64)
    folds = -(-extent // t)
    return t[t == -(-extent // folds)]


def kpu_cycles(M: int, N: int, K: int, rows: int, cols: int, dataflow: str = "os",
               overlap: bool = True) -> SystolicResult:
    """The KPU's cycles for a GEMM ``M x N x K`` on a ``rows x cols`` array.

    For a fold tile of ``r x c`` PEs, ``F = ceil(Sr/r) * ceil(Sc/c)`` folds,
    ``L = T + r + c - 2`` (os) or ``T + 2r + c - 2`` (ws, is), ``I = max(T, r)``::

        overlap=True:   (F - 1) * I + L     fold f+1 starts I cycles after fold f
        overlap=False:  F * L               folds run one after another, as in SCALE-Sim

    and the tile is the ``(r, c)`` with ``r <= rows``, ``c <= cols`` that minimises the total
    (ties: the larger tile). Every candidate costs at least ``F * T >= MACs / (r * c)``, so the
    result never beats the roofline; candidates only grow with the array, so a bigger array is
    never slower.
    """
    _check_array(rows, cols, dataflow)
    mp = gemm_mapping(M, N, K, dataflow)
    rs = _tile_candidates(mp.sr, rows)[:, None]
    cs = _tile_candidates(mp.sc, cols)[None, :]
    big = mp.sr * mp.sc * (mp.t + 2 * rows + cols) >= 2 ** 62
    if big:                                   # exact integers beyond int64
        rs, cs = rs.astype(object), cs.astype(object)
    folds = (-(-mp.sr // rs)) * (-(-mp.sc // cs))
    L = _fold_latency(dataflow, mp.t, rs, cs)
    if overlap:
        cost = (folds - 1) * np.maximum(mp.t, rs) + L
    else:
        cost = folds * L
    shape = folds.shape                       # (rows tried, cols tried): cost has it too
    area = rs * cs
    if big:
        best = min(np.ndindex(shape), key=lambda ij: (cost[ij], -area[ij]))
    else:                                     # cheapest, then the largest tile, then the first
        cheapest = np.where(cost == cost.min(), area, 0)
        best = np.unravel_index(int(cheapest.argmax()), shape)
    r, c = int(rs[best[0], 0]), int(cs[0, best[1]])
    rf, cf = -(-mp.sr // r), -(-mp.sc // c)
    fold_l = int(_fold_latency(dataflow, mp.t, r, c))
    interval = max(mp.t, r) if overlap else fold_l
    return SystolicResult("kpu", dataflow, int(rows), int(cols), int(M), int(N), int(K), mp,
                          r, c, rf, cf, fold_l, interval, int(cost[best]), bool(overlap))


def stillwater_serial_tile_cycles(M: int, N: int, K: int, rows: int, cols: int) -> int:
    """A serialized output-stationary tile model that reproduces the Stillwater KPU
    simulator's two published 16 x 16 figures: ``ceil(M/R) * ceil(N/C) * (K + 2R + C)``
    (per tile: load ``R``, stream ``K``, skew ``C``, drain ``R``; tiles do not overlap).

    16 x 16, 64^3: 16 tiles x 112 = 1,792. 1024^3: 4,096 x 1,072 = 4,390,912 (95.5 %).
    This is our reading of the two numbers, not a formula Stillwater documents.
    """
    _check_array(rows, cols, "os")
    _check_dims(M=M, N=N, K=K)
    return (-(-M // rows)) * (-(-N // cols)) * (K + 2 * rows + cols)
