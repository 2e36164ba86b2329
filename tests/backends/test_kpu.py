"""The KPU backend: a systolic array per L1 tile, vector lanes for the rest, DMA engines, block
movers and streamers between double-buffered scratchpads.

    array cycles = sum over L1 tiles of G * kpu_cycles(M, N, K)   (the anchor contraction)
    vector cycles = (FLOPs - 2 * MACs) / (rows * cols * ops_per_pe)
    total = compute + dma_wait + block_mover_wait + streamer_wait + stalls   (breakdown, cycles)

Laws (hypothesis): no kernel beats its roofline; more bandwidth on every engine never makes a
kernel slower; a bigger array (rows and cols doubled) never does; DRAM traffic of a matmul or a
stride-1 conv is at least the compulsory traffic; the grouped tiles equal a walk over every
tile. SCALE-Sim mode equals ``scalesim_cycles`` of the kernel as one GEMM (SCALE-Sim's golden
AlexNet conv1 on 32 x 32, ws). A kernel whose tiles fit no scratchpad stops ``simulate`` with
the lowering's PassError.
"""

import copy
import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backends import kpu
from backends.cost import roofline_seconds
from backends.profile import load_profile, profile_from_dict
from backends.simulate import simulate
from backends.systolic import conv_as_gemm, kpu_cycles, scalesim_cycles
from frontends.python import GraphBuilder
from hypothesis_budget import examples
from schedule_strategies import random_tilings
from passes import PassManager
from passes.lowering import lower
from tensorir.errors import PassError, ProfileError, ShapeError
from tensorir.kernel import kernel_domain
from tensorir.schedule import dim_tiles, lower_kernel, nested_tile_sizes, nested_tiles
from tensorir.target import PRESET_DIR, read_profile_data

KPU16 = load_profile("kpu-16x16")
DATA16 = read_profile_data(PRESET_DIR / "kpu-16x16.yaml")


def variant(scale_bandwidth=1.0, scale_array=1, **compute):
    """kpu-16x16 with every level's and engine's bandwidth scaled and the array's rows and
    cols multiplied (same name and memory: the same tiling)."""
    data = copy.deepcopy(DATA16)
    for lv in data["memory"]:
        key = "bandwidth_bytes_per_s" if "bandwidth_bytes_per_s" in lv else "bytes_per_cycle"
        lv[key] = lv[key] * scale_bandwidth
    for m in data["movers"]:
        m["bandwidth_bytes_per_s"] *= scale_bandwidth
    data["compute"]["rows"] *= scale_array
    data["compute"]["cols"] *= scale_array
    data["compute"].update(compute)
    return profile_from_dict(data, where="kpu-16x16 variant")


def kernels(graph):
    """(op, schedule, domain) of every kernel of ``graph`` after the default passes, lowered
    for kpu-16x16 (the backend reads the tiles, not the allocation)."""
    fused = graph.copy()
    PassManager("default", verify=False).run(fused)
    lowered = lower(fused, KPU16.target)
    ops = {op.results[0].name: op for op in lowered.ops}
    out = []
    for ks in lowered.schedule.kernels:
        op = ops[ks.result]
        out.append((op, ks, None if ks.untiled else kernel_domain(op)))
    return out


def costs(graph, profile=KPU16, **options):
    return [kpu.kernel_model(op, ks, kd, profile, **options) for op, ks, kd in kernels(graph)]


def matmul(m, k, n, batch=None, seed=0):
    b = GraphBuilder("mm", seed=seed)
    x = b.input("x", ([batch] if batch else []) + [m, k])
    return b.build(b.matmul(x, b.weight("w", [k, n])))


def conv(n, cin, cout, hw, kernel, pad, stride=1, groups=1, relu=False):
    b = GraphBuilder("conv", seed=0)
    x = b.input("x", [n, cin, hw, hw])
    y = b.conv(x, b.weight("w", [cout, cin // groups, kernel, kernel]),
               pads=[pad] * 4, strides=[stride] * 2, group=groups)
    return b.build(b.relu(y) if relu else y)


# ---------------------------------------------------------------------------------------------
# the GEMM of a kernel


def test_conv_maps_output_pixels_to_m_filters_to_n_and_the_window_to_k():
    (op, ks, kd), = kernels(conv(1, 8, 16, 10, 3, 1))
    axes = kpu.gemm_axes(kd)
    names = lambda dims: [kd.dims[d].name for d in dims]  # noqa: E731
    assert (names(axes.m), names(axes.n), names(axes.k), axes.g) == \
        (["n", "oh", "ow"], ["oc"], ["ic", "kh", "kw"], ())
    assert kpu.whole_gemm(kd, axes) == (100, 16, 72, 1)


def test_groups_and_shared_batch_dims_are_independent_gemms():
    (op, ks, kd), = kernels(conv(1, 8, 8, 6, 3, 1, groups=8))       # depthwise
    axes = kpu.gemm_axes(kd)
    assert [kd.dims[d].name for d in axes.g] == ["g"]
    assert kpu.whole_gemm(kd, axes) == (36, 1, 9, 8)
    b = GraphBuilder("bmm")
    q, k = b.input("q", [4, 32, 16]), b.input("k", [4, 16, 24])
    (op, ks, kd), = kernels(b.build(b.matmul(q, k)))
    assert kpu.whole_gemm(kd, kpu.gemm_axes(kd)) == (32, 24, 16, 4)
    # weights shared by the batch: the batch joins the rows
    (op, ks, kd), = kernels(matmul(32, 16, 24, batch=4))
    assert kpu.whole_gemm(kd, kpu.gemm_axes(kd)) == (128, 24, 16, 1)


def test_a_kernel_without_a_contraction_has_no_gemm():
    b = GraphBuilder("r")
    g = b.build(b.relu(b.input("x", [64, 64])))
    (op, ks, kd), = kernels(g)
    assert kpu.gemm_axes(kd) == "no anchor (nothing accumulates)"
    b = GraphBuilder("m")
    g = b.build(b.op("ReduceMax", b.input("x", [8, 64]), np.array([1], np.int64)))
    (op, ks, kd), = kernels(g)
    assert kpu.gemm_axes(kd) == "its anchor ReduceMax is a reduction, not a contraction"


LEVELS = list(reversed(KPU16.target.on_chip))   # outermost first


def tilings(kd):
    return random_tilings(kd, LEVELS)


@settings(max_examples=examples(40), deadline=None)
@given(st.data(), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from(["os", "ws"]))
def test_tile_groups_equal_a_walk_over_every_tile(data, m, k, n, dataflow):
    op = matmul(m, k, n).ops[0]
    kd = kernel_domain(op)
    ks = lower_kernel(op, kd, data.draw(tilings(kd)), LEVELS)
    model = kpu.kernel_model(op, ks, kd, KPU16, dataflow=dataflow)
    sizes = [dim_tiles(ks.tilings, kd.extents)[d][-1][1] for d in range(3)]
    walked = sum(kpu_cycles(int(tm), int(tn), int(tk), 16, 16, dataflow).cycles
                 for tm, tn, tk in itertools.product(*sizes))
    assert sum(gr.cycles for gr in model.gemms) == walked
    assert sum(gr.count for gr in model.gemms) == math.prod(len(s) for s in sizes)
    assert model.breakdown["array_cycles"] == walked + model.vector_flops / 512


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_nested_tile_sizes_count_the_nested_tiles(extent, sizes):
    (*_, (_, lengths)), = [nested_tiles(extent, sizes)]
    want = dict(zip(*(v.tolist() for v in np.unique(lengths, return_counts=True))))
    assert dict(nested_tile_sizes(extent, tuple(sizes))) == want


def test_elementwise_kernels_run_as_vector_lanes():
    b = GraphBuilder("add")
    g = b.build(b.add(b.input("x", [256, 256]), b.input("y", [256, 256])))
    (k,), = [costs(g)]
    assert k.gemms == () and k.vector_flops == 256 * 256
    assert k.breakdown["compute_cycles"] == 256 * 256 / (16 * 16 * 2)
    assert k.breakdown["array_utilisation"] == 0.0
    assert k.cost.bound != "compute"          # 12 bytes per FLOP: memory bound


def test_the_epilogue_runs_as_vector_lanes_beside_the_gemm():
    (k,) = costs(conv(1, 16, 16, 16, 3, 1, relu=True))
    macs = 16 * 16 * 16 * 16 * 9
    assert sum(gr.macs for gr in k.gemms) == macs
    assert k.vector_flops == k.cost.flops - 2 * macs == 16 * 16 * 16   # the ReLU


# ---------------------------------------------------------------------------------------------
# the cycle breakdown


@pytest.mark.parametrize("graph", [matmul(64, 64, 64), matmul(200, 96, 130),
                                   conv(1, 32, 64, 28, 3, 1, relu=True)],
                         ids=["64^3", "200x96x130", "conv3x3"])
def test_breakdown_parts_sum_to_the_total(graph):
    for k in costs(graph) + costs(graph, dataflow="ws") + costs(graph, mode="scalesim"):
        b = k.breakdown
        assert set(kpu.PARTS) <= set(b)
        assert all(b[p] >= 0 for p in kpu.PARTS)
        assert sum(b[p] for p in kpu.PARTS) == pytest.approx(b["total_cycles"], rel=1e-12)
        assert b["total_cycles"] == pytest.approx(k.cost.time_s * KPU16.clock_hz, rel=1e-12)
        # the array is busy for its streaming plus its fill and drain, within the total
        assert b["compute_cycles"] <= b["array_cycles"] <= b["total_cycles"]
        assert k.cost.compute_s * KPU16.clock_hz == pytest.approx(b["array_cycles"])


def test_waits_cascade_from_the_array_outwards():
    # a memory-bound kernel: the streamers, then the block movers, then the DMA reach past
    # what is inside them; their waits add up to the slowest link beyond the array
    b = GraphBuilder("add")
    g = b.build(b.add(b.input("x", [512, 512]), b.input("y", [512, 512])))
    (k,) = costs(g)
    c = k.cost
    links = {m.kind: c.link_s[(m.outer, m.inner)] * 2e9 for m in KPU16.movers}
    busy = c.compute_s * 2e9
    bd = k.breakdown
    assert bd["streamer_wait_cycles"] == pytest.approx(max(0, links["streamer"] - busy))
    reach = max(busy, links["streamer"])
    assert bd["block_mover_wait_cycles"] == pytest.approx(max(0, links["block_mover"] - reach))
    reach = max(reach, links["block_mover"])
    assert bd["dma_wait_cycles"] == pytest.approx(max(0, links["dma"] - reach))
    assert c.bound == "DRAM->L3" and bd["dma_wait_cycles"] > 0


def test_links_move_at_their_engines_bandwidth():
    (k,) = costs(matmul(128, 128, 128))
    for m in KPU16.movers:
        link = (m.outer, m.inner)
        assert k.cost.link_s[link] == k.cost.links[link].total / (m.count * m.bandwidth_bytes_per_s)


# ---------------------------------------------------------------------------------------------
# laws


@st.composite
def kernel_graphs(draw):
    kind = draw(st.sampled_from(["matmul", "conv", "relu", "pool"]))
    if kind == "matmul":
        return matmul(draw(st.integers(1, 300)), draw(st.integers(1, 300)),
                      draw(st.integers(1, 300)), batch=draw(st.sampled_from([None, 2])))
    if kind == "conv":
        hw, kernel = draw(st.integers(3, 24)), draw(st.sampled_from([1, 3, 5]))
        assume(kernel <= hw)
        groups = draw(st.sampled_from([1, 2]))
        return conv(1, groups * draw(st.integers(1, 24)), groups * draw(st.integers(1, 24)),
                    hw, kernel, draw(st.integers(0, kernel // 2)), groups=groups,
                    relu=draw(st.booleans()))
    b = GraphBuilder(kind)
    x = b.input("x", [1, draw(st.integers(1, 64)), draw(st.integers(2, 40)), 20])
    y = b.relu(x) if kind == "relu" else b.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    return b.build(y)


@settings(max_examples=examples(30), deadline=None)
@given(kernel_graphs(), st.sampled_from(["os", "ws"]))
def test_no_kernel_is_faster_than_its_roofline(graph, dataflow):
    for k in costs(graph, dataflow=dataflow):
        assert k.cost.time_s >= roofline_seconds(k.cost, KPU16) * (1 - 1e-12)


@settings(max_examples=examples(30), deadline=None)
@given(kernel_graphs(), st.sampled_from([1.5, 2.0, 10.0]))
def test_more_bandwidth_on_every_engine_is_never_slower(graph, scale):
    faster = variant(scale_bandwidth=scale)
    for op, ks, kd in kernels(graph):
        slow = kpu.kernel_cost(op, ks, kd, KPU16)
        fast = kpu.kernel_cost(op, ks, kd, faster)
        assert fast.time_s <= slow.time_s * (1 + 1e-12)


@settings(max_examples=examples(30), deadline=None)
@given(kernel_graphs(), st.sampled_from(["os", "ws"]))
def test_a_bigger_array_is_never_slower(graph, dataflow):
    bigger = variant(scale_array=2)
    assert bigger.target == KPU16.target          # the same tiles
    for op, ks, kd in kernels(graph):
        small = kpu.kernel_model(op, ks, kd, KPU16, dataflow=dataflow)
        big = kpu.kernel_model(op, ks, kd, bigger, dataflow=dataflow)
        assert big.cost.time_s <= small.cost.time_s * (1 + 1e-12)
        assert big.breakdown["array_cycles"] <= small.breakdown["array_cycles"]


def test_the_64x64_preset_is_faster_on_a_model_sized_gemm_and_conv():
    for graph in (matmul(512, 768, 768), conv(1, 64, 64, 56, 3, 1, relu=True)):
        small = simulate(graph, "kpu-16x16")
        big = simulate(graph, "kpu-64x64")
        assert big.latency_s < small.latency_s


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300),
       st.sampled_from([None, 3]))
def test_matmul_dram_traffic_is_at_least_compulsory(m, k, n, batch):
    check_compulsory(matmul(m, k, n, batch=batch))


def check_compulsory(graph):
    for op, ks, kd in kernels(graph):
        dram = kpu.kernel_cost(op, ks, kd, KPU16).links[("DRAM", "L3")]
        assert dram.down >= sum(v.type.nbytes for v in op.operands if v is not None)
        assert dram.up >= op.results[0].type.nbytes


@settings(max_examples=examples(30), deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.integers(3, 24), st.sampled_from([1, 3, 5]),
       st.integers(0, 2), st.booleans())
def test_stride_1_conv_dram_traffic_is_at_least_compulsory(cin, cout, hw, kernel, pad, relu):
    assume(kernel <= hw + 2 * pad)
    check_compulsory(conv(1, cin, cout, hw, kernel, pad, relu=relu))


# ---------------------------------------------------------------------------------------------
# dataflows and SCALE-Sim mode


def test_weight_stationary_by_option_or_by_profile():
    graph = matmul(96, 64, 80)
    by_option = costs(graph, dataflow="ws")
    by_profile = costs(graph, kpu.with_dataflow(KPU16, "weight-stationary"))
    assert [k.cost for k in by_option] == [k.cost for k in by_profile]
    assert by_option[0].dataflow == "ws" and by_option[0].cost.notes.startswith("ws")
    assert costs(graph)[0].dataflow == "os"   # the preset's default


def test_options_are_checked():
    graph = matmul(8, 8, 8)
    (op, ks, kd), = kernels(graph)
    with pytest.raises(ProfileError, match="'input-stationary' is not one the array runs"):
        kpu.kernel_cost(op, ks, kd, KPU16, dataflow="is")
    with pytest.raises(ProfileError, match="expected one of"):
        kpu.kernel_cost(op, ks, kd, KPU16, dataflow="diagonal")
    with pytest.raises(ProfileError, match="kpu mode: expected one of kpu, scalesim"):
        kpu.kernel_cost(op, ks, kd, KPU16, mode="timeloop")
    with pytest.raises(ProfileError, match="needs a kpu profile, not a cpu one"):
        kpu.kernel_cost(op, ks, kd, load_profile("cpu-avx512"))
    # SCALE-Sim runs every dataflow
    assert kpu.kernel_model(op, ks, kd, KPU16, dataflow="is", mode="scalesim").dataflow == "is"


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_scalesim_mode_is_scalesim_cycles_of_the_kernel_as_one_gemm(dataflow):
    (k,) = costs(matmul(256, 256, 128), dataflow=dataflow, mode="scalesim")
    want = scalesim_cycles(256, 128, 256, 16, 16, dataflow)
    assert [(g.count, g.m, g.n, g.k) for g in k.gemms] == [(1, 256, 128, 256)]
    assert k.breakdown["array_cycles"] == want.cycles
    assert k.breakdown["array_utilisation"] == pytest.approx(want.utilisation)


def test_scalesim_golden_alexnet_conv1_through_the_backend():
    # scale-sim-v2 test/golden_trace: AlexNet conv1 on 32 x 32, ws, Total Cycles 112,283.
    # SCALE-Sim's ofmap is ceil((224 - 11 + 4) / 4) = 55; ONNX's floor((227 - 11) / 4) + 1 = 55
    graph = conv(1, 3, 96, 227, 11, 0, stride=4)
    assert conv_as_gemm(227, 227, 11, 11, 3, 96, 4)[:3] == conv_as_gemm(224, 224, 11, 11, 3,
                                                                           96, 4)[:3]
    p32 = variant(scale_array=2)
    (op, ks, kd), = kernels(graph)
    k = kpu.kernel_model(op, ks, kd, p32, dataflow="ws", mode="scalesim")
    assert [(g.m, g.n, g.k) for g in k.gemms] == [(3025, 96, 363)]
    assert k.breakdown["array_cycles"] - 1 == 112283     # SCALE-Sim prints F * L - 1


def test_kpu_simulate_applies_the_options_to_every_kernel():
    graph = conv(1, 16, 32, 28, 3, 1, relu=True)
    default = kpu.simulate(graph, "kpu-16x16")
    assert default.kernels == simulate(graph, "kpu-16x16").kernels
    ws = kpu.simulate(graph, "kpu-16x16", dataflow="ws")
    assert all(k.notes.startswith("ws") for k in ws.kernels)
    sc = kpu.simulate(graph, "kpu-16x16", mode="scalesim")
    assert all(k.notes.startswith("os scalesim") for k in sc.kernels)
    row = sc.kernel_rows()[0]
    assert row["total_cycles"] == pytest.approx(sc.kernels[0].time_s * 2e9)


# ---------------------------------------------------------------------------------------------
# the Stillwater figures, through the whole backend


def test_a_64_cubed_gemm_costs_its_l1_tiles_on_the_array():
    report = simulate(matmul(64, 64, 64), "kpu-16x16")
    (k,) = report.kernels
    (op, ks, kd), = kernels(matmul(64, 64, 64))
    sizes = [dim_tiles(ks.tilings, kd.extents)[d][-1][1] for d in range(3)]
    want = sum(kpu_cycles(int(m), int(n), int(kk), 16, 16, "os").cycles
               for m, n, kk in itertools.product(*sizes))
    assert k.breakdown["array_cycles"] == want
    assert want >= kpu_cycles(64, 64, 64, 16, 16).cycles == 1054    # one GEMM, no tiles
    assert report.cycles == round(k.breakdown["total_cycles"])
    # memory adds to the array: 48 KiB over 64 GB/s is 1,536 cycles of DMA alone
    assert report.cycles > 64 ** 2 * 3 * 4 / 32


def test_without_memory_limits_a_gemm_is_its_array_cycles():
    fast = variant(scale_bandwidth=1e6)
    (op, ks, kd), = kernels(matmul(256, 256, 256))
    k = kpu.kernel_model(op, ks, kd, fast)
    b = k.breakdown
    assert b["dma_wait_cycles"] + b["block_mover_wait_cycles"] + b["streamer_wait_cycles"] \
        == pytest.approx(0, abs=1e-6)
    assert b["total_cycles"] == pytest.approx(b["array_cycles"], rel=1e-4)


# ---------------------------------------------------------------------------------------------
# invalid inputs


def test_a_kernel_that_fits_no_scratchpad_stops_simulate_with_the_lowering_error():
    # a softmax row must stay whole: 16384 f32 = 64 KiB, and L1 offers 32 KiB (double buffered)
    b = GraphBuilder("wide")
    g = b.build(b.softmax(b.input("x", [4, 16384]), axis=-1))
    with pytest.raises(PassError) as info:
        simulate(g, "kpu-16x16")
    msg = str(info.value)
    assert "does not fit target 'kpu-16x16'" in msg and "Softmax" in msg and "L1" in msg
    with pytest.raises(PassError):
        kpu.simulate(g, "kpu-16x16", dataflow="ws")


def test_shape_errors_in_the_graph_are_not_the_backends():
    b = GraphBuilder("bad")
    with pytest.raises(ShapeError):
        b.matmul(b.input("x", [4, 5]), b.input("y", [6, 7]))


@settings(max_examples=examples(60), deadline=None)
@given(st.sampled_from(["os", "ws", "is"]), st.integers(1, 40), st.integers(1, 40),
       st.integers(1, 40), st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_the_fold_tile_is_the_cheapest_then_the_largest_then_the_first(dataflow, M, N, K, R,
                                                                        C, overlap):
    """The array's fold tile (r, c): the least cycles, ties to the most PEs, then to the
    smallest r (brute force over every r x c corner of the array)."""
    found = kpu_cycles(M, N, K, R, C, dataflow, overlap)
    mp = found.mapping
    tiles = []
    for r, c in itertools.product(range(1, R + 1), range(1, C + 1)):
        F = -(-mp.sr // r) * -(-mp.sc // c)
        L = mp.t + r + c - 2 if dataflow == "os" else mp.t + 2 * r + c - 2
        tiles.append(((F - 1) * max(mp.t, r) + L if overlap else F * L, -r * c, r, c))
    cycles, _, r, c = min(tiles)
    assert (found.cycles, found.tile_rows, found.tile_cols) == (cycles, r, c)
