"""The systolic-array cycle model: SCALE-Sim v2's per-fold formulas and the KPU's overlapped folds.

SCALE-Sim formulas (scalesim-project/scale-sim-v2, scalesim/compute/systolic_compute_*.py),
with Sr on the array rows, Sc on the columns, T streamed, F = ceil(Sr/R) * ceil(Sc/C):

    os  Sr=M Sc=N T=K   L = T + R + C - 2
    ws  Sr=K Sc=N T=M   L = T + 2R + C - 2
    is  Sr=K Sc=M T=N   L = T + 2R + C - 2
    busy cycles = F * L;  printed "Total Cycles" = F * L - 1
    Overall Util = MACs / (R * C * Total Cycles)
    Mapping Efficiency = Sr * Sc / (F * R * C)
    Compute Util = MACs / (F * R * C * L_util),  L_util = L (os), T + 2R + 2C - 3 (ws, is)

KPU: cycles = (F - 1) * max(T, r) + L(r, c) with overlap, F * L(r, c) without, minimised over
the fold tile r <= R, c <= C.
"""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.systolic import (DATAFLOWS, conv_as_gemm, gemm_mapping, kpu_cycles,
                               scalesim_cycles, stillwater_serial_tile_cycles)
from hypothesis_budget import examples
from tensorir.errors import ProfileError, ShapeError

# ---------------------------------------------------------------------------------------------
# SCALE-Sim: hand-worked cases


def test_mapping_puts_two_gemm_dims_on_the_array_and_streams_the_third():
    assert [(m.sr, m.sc, m.t) for m in (gemm_mapping(5, 7, 3, d) for d in DATAFLOWS)] == \
        [(5, 7, 3), (3, 7, 5), (3, 5, 7)]
    assert gemm_mapping(5, 7, 3, "ws").describe() == \
        "ws: rows <- K=3 (window), cols <- N=7 (filters), time <- M=5 (ofmap pixels)"


def test_os_by_hand():
    # M = N = 4, K = 3 on 2 x 2: F = 2 * 2 = 4 folds of L = 3 + 2 + 2 - 2 = 5 cycles
    r = scalesim_cycles(4, 4, 3, 2, 2, "os")
    assert (r.row_folds, r.col_folds, r.fold_cycles, r.cycles) == (2, 2, 5, 20)
    assert r.scalesim_total_cycles == 19
    assert r.mapping_efficiency == 1.0
    assert r.scalesim_compute_util == pytest.approx(48 / (4 * 4 * 5))       # 0.6
    assert r.utilisation == 48 / (4 * 20)


def test_ws_by_hand_with_a_partial_fold():
    # M=3, N=2, K=5 on 2 x 2: Sr=K=5 -> 3 row folds (2, 2, 1 rows), Sc=N=2 -> 1, T=M=3
    r = scalesim_cycles(3, 2, 5, 2, 2, "ws")
    assert (r.row_folds, r.col_folds) == (3, 1)
    assert r.fold_cycles == 3 + 2 * 2 + 2 - 2 == 7
    assert r.cycles == 21
    # mapping efficiency: mean of 4/4, 4/4, 2/4
    assert r.mapping_efficiency == pytest.approx((1 + 1 + 0.5) / 3)
    # compute util: per fold used * T / (4 * L_util), L_util = T + 2R + 2C - 3 = 8
    assert r.scalesim_compute_util == pytest.approx((12 / 32 + 12 / 32 + 6 / 32) / 3)


def test_is_by_hand_on_a_rectangular_array():
    # M=3, N=4, K=2 on 2 rows x 3 cols: Sr=K=2, Sc=M=3, T=N=4, one fold of 4 + 4 + 3 - 2
    r = scalesim_cycles(3, 4, 2, 2, 3, "is")
    assert (r.folds, r.fold_cycles, r.cycles) == (1, 9, 9)


def demand_rows(dataflow, T, R, C):
    """Rows of one fold's ifmap, filter and ofmap demand matrices as SCALE-Sim v2 builds them
    (prefix gap + body + suffix gap, then ``skew_matrix`` adds ``columns - 1`` rows)."""
    skew = lambda rows, cols: rows + cols - 1                    # noqa: E731
    if dataflow == "os":
        ifmap = skew(T + (C - 1), R)              # body T, suffix arr_col - 1, R columns
        filt = skew(T + (R - 1), C)               # body T, suffix arr_row - 1, C columns
        ofmap = skew((T - 1) + R, C)              # prefix T - 1, R output rows, C columns
    elif dataflow == "ws":
        ifmap = skew(R + T + (C - 1), R)          # prefix arr_row, body T, suffix arr_col - 1
        filt = R + (R + C + T - 2)                # R weight rows + suffix, no skew
        ofmap = skew((2 * R - 1) + T, C)          # prefix 2 arr_row - 1, T output rows
    else:
        ifmap = R + (R + C + T - 2)               # R input rows + suffix, no skew
        filt = skew(R + T + (C - 1), R)           # prefix arr_row, body T, suffix arr_col - 1
        ofmap = skew((2 * R - 1) + T, C)
    return ifmap, filt, ofmap


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(DATAFLOWS), st.integers(1, 300), st.integers(1, 64), st.integers(1, 64))
def test_fold_cycles_equal_the_rows_of_scalesims_demand_matrices(dataflow, T, R, C):
    ifmap, filt, ofmap = demand_rows(dataflow, T, R, C)
    assert ifmap == filt == ofmap          # SCALE-Sim asserts its three demands stay in sync
    M, N, K = {"os": (R, C, T), "ws": (T, C, R), "is": (C, T, R)}[dataflow]
    assert scalesim_cycles(M, N, K, R, C, dataflow).fold_cycles == ifmap


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(DATAFLOWS), st.integers(1, 90), st.integers(1, 90), st.integers(1, 90),
       st.integers(1, 12), st.integers(1, 12))
def test_closed_form_utils_equal_scalesims_fold_by_fold_means(dataflow, M, N, K, R, C):
    res = scalesim_cycles(M, N, K, R, C, dataflow)
    mp = res.mapping
    L_util = res.fold_cycles if dataflow == "os" else mp.t + 2 * R + 2 * C - 3
    mapping, compute = [], []
    for fc in range(res.col_folds):                 # SCALE-Sim's loop: col folds outside
        for fr in range(res.row_folds):
            used = min(R, mp.sr - fr * R) * min(C, mp.sc - fc * C)
            mapping.append(used / (R * C))
            compute.append(used * mp.t / (R * C * L_util))
    assert res.mapping_efficiency == pytest.approx(sum(mapping) / len(mapping), rel=1e-12)
    assert res.scalesim_compute_util == pytest.approx(sum(compute) / len(compute), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# SCALE-Sim: its own golden reports
#
# scalesim-project/scale-sim-v2, 32 x 32 array (configs/scale.cfg, run scale_example_run_32x32_*):
# test/general/golden_trace_user_{os,ws}/COMPUTE_REPORT.csv (commit 18975c24), ..._is (6c524ac0):
#   topologies/GEMM_mnk/test_mnk_input.csv "Test 1, 256, 128, 256" (M, N, K), USER bandwidth,
#   so the totals include memory stalls; total - stalls is the stall-free compute.
# test/golden_trace/COMPUTE_REPORT.csv (commit 213cd1b2): topologies/conv_nets/alexnet_part.csv
#   "Conv1, 224, 224, 11, 11, 3, 96, 4", ws, CALC bandwidth (no stalls).

GOLDEN = [
    # dataflow, (M, N, K), Total Cycles, Stall Cycles, Overall %, Mapping %, Compute %
    ("os", (256, 128, 256), 52447, 42272, 15.619577859553454, 100.0, 80.50314465408806),
    ("ws", (256, 128, 256), 52447, 41248, 15.619577859553454, 100.0, 67.19160104986877),
    ("is", (256, 128, 256), 19984, 5777, 40.99279423538831, 100.0, 50.59288537549407),
    ("ws", conv_as_gemm(224, 224, 11, 11, 3, 96, 4)[:3],
     112283, 0, 91.68309650614964, 94.53125, 90.78000992063485),
]


@pytest.mark.parametrize("dataflow, gemm, total, stalls, overall, mapping, compute", GOLDEN,
                         ids=["gemm-os", "gemm-ws", "gemm-is", "alexnet-conv1-ws"])
def test_reproduces_scalesims_golden_compute_reports(dataflow, gemm, total, stalls, overall,
                                                     mapping, compute):
    res = scalesim_cycles(*gemm, 32, 32, dataflow)
    assert res.scalesim_total_cycles == total - stalls          # stall-free compute cycles
    report = res.scalesim_report(stall_cycles=stalls)
    assert report["Total Cycles"] == total
    assert report["Stall Cycles"] == stalls
    assert report["Overall Util %"] == pytest.approx(overall, rel=1e-12)
    assert report["Mapping Efficiency %"] == pytest.approx(mapping, rel=1e-12)
    assert report["Compute Util %"] == pytest.approx(compute, rel=1e-12)


def test_golden_numbers_by_hand():
    # os: 8 x 4 folds of 256 + 62 = 318 -> 10,176 rows, printed 10,175 = 52,447 - 42,272
    assert scalesim_cycles(256, 128, 256, 32, 32, "os").cycles == 32 * 318
    # ws: 8 x 4 folds of 256 + 64 + 30 = 350 -> 11,200 rows, printed 11,199 = 52,447 - 41,248
    assert scalesim_cycles(256, 128, 256, 32, 32, "ws").cycles == 32 * 350
    # is: Sr = 256, Sc = 256 -> 8 x 8 folds of 128 + 64 + 30 = 222 -> 14,208, printed 14,207
    assert scalesim_cycles(256, 128, 256, 32, 32, "is").cycles == 64 * 222
    # AlexNet conv1 ws: Sr = 363 -> 12, Sc = 96 -> 3, T = 3025: 36 x 3,119 = 112,284
    assert scalesim_cycles(3025, 96, 363, 32, 32, "ws").cycles == 36 * 3119


def test_conv_as_gemm_uses_scalesims_ceiling_ofmap():
    # AlexNet conv1: ceil((224 - 11 + 4) / 4) = 55, where floor((224 - 11) / 4) + 1 = 54
    assert conv_as_gemm(224, 224, 11, 11, 3, 96, 4) == (3025, 96, 363, 55, 55)
    # exact strides agree with the usual formula; separate strides per axis
    assert conv_as_gemm(7, 9, 3, 3, 2, 5, 2, 3) == (3 * 3, 5, 18, 3, 3)


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(1, 500), st.integers(1, 500), st.integers(1, 500))
def test_a_gemm_topology_row_maps_back_to_its_gemm(M, N, K):
    # load_arrays_gemm: [ifmap h, ifmap w, filter h, filter w, channels, filters, stride]
    #                 = [M, K, 1, K, 1, N, 1]
    assert conv_as_gemm(M, K, 1, K, 1, N, 1)[:3] == (M, N, K)


def test_scalesims_printed_total_is_an_index_not_a_count():
    # one MAC on a 1 x 1 array: one demand row, printed as 0 cycles (SCALE-Sim's Overall Util
    # would divide by zero); our cycle count is 1
    res = scalesim_cycles(1, 1, 1, 1, 1, "os")
    assert (res.cycles, res.scalesim_total_cycles) == (1, 0)
    assert res.scalesim_report()["Overall Util %"] == math.inf
    assert res.utilisation == 1.0


def test_bad_inputs_name_the_field():
    with pytest.raises(ProfileError, match="dataflow"):
        scalesim_cycles(4, 4, 4, 2, 2, "rs")
    with pytest.raises(ProfileError, match="rows"):
        kpu_cycles(4, 4, 4, 0, 2)
    with pytest.raises(ShapeError, match="K"):
        scalesim_cycles(4, 4, 0, 2, 2)
    with pytest.raises(ShapeError, match="larger than its ifmap"):
        conv_as_gemm(3, 3, 5, 1, 1, 1)
    with pytest.raises(ProfileError, match="SCALE-Sim mode"):
        kpu_cycles(4, 4, 4, 2, 2).scalesim_report()


# ---------------------------------------------------------------------------------------------
# KPU mode: hand-worked cases and the Stillwater figures


def test_kpu_os_16x16_64_cubed():
    # 16 output tiles of K = 64 each; overlapped: 15 * max(64, 16) + (64 + 16 + 16 - 2)
    kpu = kpu_cycles(64, 64, 64, 16, 16, "os")
    assert (kpu.tile_rows, kpu.tile_cols, kpu.folds) == (16, 16, 16)
    assert kpu.cycles == 15 * 64 + 94 == 1054
    assert kpu.utilisation == pytest.approx(64 ** 3 / (256 * 1054))          # 97.2 %
    # without overlap the KPU charges what SCALE-Sim does: 16 * 94
    assert kpu_cycles(64, 64, 64, 16, 16, "os", overlap=False).cycles == 1504
    assert scalesim_cycles(64, 64, 64, 16, 16, "os").cycles == 1504
    # Stillwater's published 1,792 = 16 tiles * (64 + 3 * 16)
    assert stillwater_serial_tile_cycles(64, 64, 64, 16, 16) == 1792


def test_kpu_os_16x16_1024_cubed():
    kpu = kpu_cycles(1024, 1024, 1024, 16, 16, "os")
    assert kpu.cycles == 4095 * 1024 + 1024 + 30 == 4_194_334
    assert kpu.utilisation > 0.99999
    serial = stillwater_serial_tile_cycles(1024, 1024, 1024, 16, 16)
    assert serial == 4096 * 1072 == 4_390_912                     # "about 4.4 M"
    assert 1024 ** 3 / (256 * serial) == pytest.approx(0.955, abs=5e-4)      # "96 %"


def test_kpu_ws_by_hand():
    # M=100, N=32, K=32 on 16 x 16 ws: Sr = K = 32, Sc = N = 32, T = M = 100, 4 folds,
    # L = 100 + 32 + 16 - 2 = 146, interval max(100, 16) = 100
    kpu = kpu_cycles(100, 32, 32, 16, 16, "ws")
    assert (kpu.folds, kpu.fold_cycles, kpu.interval, kpu.cycles) == (4, 146, 100, 446)
    assert scalesim_cycles(100, 32, 32, 16, 16, "ws").cycles == 4 * 146


def test_kpu_weight_reload_bound_folds():
    # ws, T = M = 4 streams per fold but a 16 x 16 weight tile takes 16 cycles to shift in:
    # full tiles give 16 folds at interval 16, 15 * 16 + (4 + 32 + 16 - 2) = 290 cycles.
    # 4 x 16 tiles load in 4 cycles: 64 folds at interval 4, 63 * 4 + (4 + 8 + 16 - 2) = 278.
    # Both move the same 64 x 64 weights through 16 ports (256 cycles); the short tile has
    # the shorter fill.
    kpu = kpu_cycles(4, 64, 64, 16, 16, "ws")
    assert (kpu.tile_rows, kpu.tile_cols, kpu.folds, kpu.interval) == (4, 16, 64, 4)
    assert kpu.cycles == 63 * 4 + 26 == 278 < 15 * 16 + 50
    # serialized folds keep the full tile, as SCALE-Sim does: 16 * 50
    assert kpu_cycles(4, 64, 64, 16, 16, "ws", overlap=False).cycles == 800 == \
        scalesim_cycles(4, 64, 64, 16, 16, "ws").cycles


def test_kpu_uses_a_smaller_tile_when_the_problem_already_fits():
    # a 16^3 GEMM on a 17 x 17 array runs on a 16 x 16 corner: same cycles as on 16 x 16
    assert kpu_cycles(16, 16, 16, 17, 17).cycles == kpu_cycles(16, 16, 16, 16, 16).cycles == 46
    assert kpu_cycles(16, 16, 16, 17, 17).tile_rows == 16


# ---------------------------------------------------------------------------------------------
# Laws

dims = st.integers(1, 80)
arrays = st.integers(1, 20)
dataflows = st.sampled_from(DATAFLOWS)


@settings(max_examples=examples(100), deadline=None)
@given(dataflows, dims, dims, dims, arrays, arrays, st.booleans())
def test_no_mode_beats_the_roofline(dataflow, M, N, K, R, C, overlap):
    for res in (scalesim_cycles(M, N, K, R, C, dataflow),
                kpu_cycles(M, N, K, R, C, dataflow, overlap)):
        assert res.cycles * R * C >= M * N * K
        assert 0 < res.utilisation <= 1
        assert res.utilisation == M * N * K / (R * C * res.cycles)


@settings(max_examples=examples(100), deadline=None)
@given(dataflows, dims, dims, dims, arrays, arrays)
def test_overlapped_folds_are_never_slower_than_scalesim(dataflow, M, N, K, R, C):
    overlapped = kpu_cycles(M, N, K, R, C, dataflow, overlap=True).cycles
    serial = kpu_cycles(M, N, K, R, C, dataflow, overlap=False).cycles
    assert overlapped <= serial <= scalesim_cycles(M, N, K, R, C, dataflow).cycles


@settings(max_examples=examples(60), deadline=None)
@given(dataflows, st.integers(1, 24), st.integers(1, 24), dims, st.integers(1, 4),
       st.integers(1, 4))
def test_serialized_whole_folds_cost_what_scalesim_charges(dataflow, R, C, T, a, b):
    # Sr = a R and Sc = b C: with folds serialized the whole array is the cheapest tile, so
    # the KPU's overlap=False count is SCALE-Sim's. (With overlap a narrower tile can
    # pipeline and finish sooner: M=1, N=4, K=1 on 1 x 4 takes 3 cycles as two 1 x 2 folds,
    # 4 as one 1 x 4 fold; and a partial fold is evened out: 17 rows on 16 -> 9 + 8.)
    M, N, K = {"os": (a * R, b * C, T), "ws": (T, b * C, a * R), "is": (b * C, T, a * R)}[dataflow]
    kpu = kpu_cycles(M, N, K, R, C, dataflow, overlap=False)
    assert (kpu.tile_rows, kpu.tile_cols) == (R, C)
    assert kpu.cycles == scalesim_cycles(M, N, K, R, C, dataflow).cycles
    assert kpu_cycles(1, 4, 1, 1, 4, "os").cycles == 3
    balanced = kpu_cycles(17, 16, 16, 16, 16, "os", overlap=False)
    assert (balanced.tile_rows, balanced.cycles) == (9, 2 * (16 + 9 + 16 - 2))
    assert scalesim_cycles(17, 16, 16, 16, 16, "os").cycles == 2 * (16 + 16 + 16 - 2)


@settings(max_examples=examples(100), deadline=None)
@given(dataflows, dims, dims, dims, arrays, arrays, st.integers(0, 12), st.integers(0, 12),
       st.booleans())
def test_a_bigger_array_is_never_slower(dataflow, M, N, K, R, C, dR, dC, overlap):
    small = kpu_cycles(M, N, K, R, C, dataflow, overlap)
    big = kpu_cycles(M, N, K, R + dR, C + dC, dataflow, overlap)
    assert big.cycles <= small.cycles


def test_scalesim_mode_can_be_slower_on_a_bigger_array():
    # a 16^3 GEMM fits either array in one fold; the 17 x 17 fold pays 2 more skew cycles
    assert scalesim_cycles(16, 16, 16, 16, 16).cycles == 16 + 30
    assert scalesim_cycles(16, 16, 16, 17, 17).cycles == 16 + 32


@settings(max_examples=examples(100), deadline=None)
@given(dataflows, dims, dims, dims, arrays, arrays, st.integers(0, 12), st.integers(0, 12))
def test_scalesim_bigger_array_costs_at_most_its_extra_skew_per_fold(dataflow, M, N, K, R, C,
                                                                     dR, dC):
    # what holds instead: folds never increase, and each fold of the bigger array is longer
    # by its extra skew only (dR + dC for os, 2 dR + dC for ws and is)
    small = scalesim_cycles(M, N, K, R, C, dataflow)
    big = scalesim_cycles(M, N, K, R + dR, C + dC, dataflow)
    per_fold = (1 if dataflow == "os" else 2) * dR + dC
    assert big.folds <= small.folds
    assert big.cycles <= small.cycles + big.folds * per_fold


@settings(max_examples=examples(100), deadline=None)
@given(dataflows, dims, dims, dims, arrays, arrays, st.integers(0, 2), st.integers(1, 30),
       st.booleans())
def test_cycles_are_monotone_in_M_N_K(dataflow, M, N, K, R, C, axis, grow, overlap):
    bigger = [M, N, K]
    bigger[axis] += grow
    assert scalesim_cycles(*bigger, R, C, dataflow).cycles >= \
        scalesim_cycles(M, N, K, R, C, dataflow).cycles
    assert kpu_cycles(*bigger, R, C, dataflow, overlap).cycles >= \
        kpu_cycles(M, N, K, R, C, dataflow, overlap).cycles


@settings(max_examples=examples(60), deadline=None)
@given(dataflows, st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 9),
       st.integers(1, 9), st.booleans())
def test_kpu_picks_the_cheapest_fold_tile(dataflow, M, N, K, R, C, overlap):
    # brute force over every r x c corner of the array
    mp = gemm_mapping(M, N, K, dataflow)
    costs = []
    for r, c in itertools.product(range(1, R + 1), range(1, C + 1)):
        F = -(-mp.sr // r) * -(-mp.sc // c)
        L = mp.t + r + c - 2 if dataflow == "os" else mp.t + 2 * r + c - 2
        costs.append((F - 1) * max(mp.t, r) + L if overlap else F * L)
    assert kpu_cycles(M, N, K, R, C, dataflow, overlap).cycles == min(costs)
