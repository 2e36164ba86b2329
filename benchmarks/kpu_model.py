"""The KPU backend on the Stillwater figures and on whole models.

    python benchmarks/kpu_model.py [--models resnet50 bert-base] [--top 8]

Prints (docs/kpu.md quotes them):

1. The 16 x 16 output-stationary KPU beside the Stillwater KPU simulator's published figures
   (64^3 GEMM: 1,792 cycles; 1024^3: about 4.4 M cycles at 96 %), each GEMM a one-op graph
   through the whole backend (``backends.simulate``: default passes, lowering for kpu-16x16,
   allocation, ``backends.kpu``): tiled by the tile search, or by hand with 64 x 64 x 16 L1
   tiles (:func:`hand_tilings`); f32 and bf16; and with every engine's bandwidth
   multiplied by 10^6 (the array and its tiles alone).
2. Per model on kpu-16x16: where the cycles go (the breakdown summed over kernels; "passes
   ms" is the default pipeline, lowering and allocation, "simulate ms" the backend), the kernels
   that take the most time (alike kernels, with the same op, GEMMs and cycles, on one row) with
   their L1-tile GEMMs, and the same model with weight-stationary, in SCALE-Sim mode and on
   kpu-64x64.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from backends import kpu  # noqa: E402
from backends.profile import load_profile, profile_from_dict  # noqa: E402
from backends.simulate import lower_for, simulate  # noqa: E402
from backends.systolic import kpu_cycles, stillwater_serial_tile_cycles  # noqa: E402
from frontends.python import GraphBuilder  # noqa: E402
from passes.allocation import AllocatePass  # noqa: E402
from tensorir.dtypes import DType  # noqa: E402
from tensorir.errors import TensorIRError  # noqa: E402
from tensorir.kernel import kernel_domain  # noqa: E402
from tensorir.schedule import LevelTiling, Schedule, lower_kernel  # noqa: E402
from tensorir.table import format_table  # noqa: E402
from tensorir.target import PRESET_DIR, read_profile_data  # noqa: E402

STILLWATER = {64: "1,792", 1024: "about 4.4 M at 96 %"}
PARTS = [("compute", "compute_cycles"), ("DMA wait", "dma_wait_cycles"),
         ("block-mover wait", "block_mover_wait_cycles"),
         ("streamer wait", "streamer_wait_cycles"), ("stalls", "stall_cycles")]


def unlimited_memory(name: str = "kpu-16x16"):
    """The preset with every level's and engine's bandwidth x 10^6 (same name and memory, so
    the same tiles)."""
    data = copy.deepcopy(read_profile_data(PRESET_DIR / f"{name}.yaml"))
    for lv in data["memory"]:
        key = "bandwidth_bytes_per_s" if "bandwidth_bytes_per_s" in lv else "bytes_per_cycle"
        lv[key] *= 1e6
    for m in data["movers"]:
        m["bandwidth_bytes_per_s"] *= 1e6
    return profile_from_dict(data, where=f"{name} x 1e6 bandwidth")


def gemm(n: int, dtype: DType):
    b = GraphBuilder(f"gemm{n}", seed=0, dtype=dtype)
    x = b.input("a", [n, n], dtype)
    return b.build(b.matmul(x, b.weight("b", [n, n])))


def pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def hand_tilings(n: int):
    """The tiles of the hand-tiled GEMM, outermost level first: L1 tiles of 64 x 64 x 16 (16
    folds of the array each), inside L2 tiles of 256 x 128 x 64 and L3 tiles of
    512 x 256 x 128 (each capped at n), loops in (m, n, k) order."""
    sizes = {"L3": (512, 256, 128), "L2": (256, 128, 64), "L1": (64, 64, 16)}
    return [LevelTiling(level, tuple(min(n, t) for t in tile), (0, 1, 2))
            for level, tile in sizes.items()]


def lowered_gemm(n: int, dtype: DType, hand: bool, profile):
    """The GEMM lowered and allocated for ``profile``: by the tile search (what ``simulate``
    does), or in the hand tiles (``lower_kernel`` with :func:`hand_tilings`)."""
    graph = gemm(n, dtype)
    if not hand:
        return lower_for(graph, profile)
    op = graph.ops[0]
    levels = list(reversed(profile.target.on_chip))          # outermost first
    ks = lower_kernel(op, kernel_domain(op), hand_tilings(n), levels)
    graph.schedule = Schedule(profile.target, (ks,))
    AllocatePass()(graph)
    return graph


def stillwater_tables() -> tuple[str, str]:
    """The comparison, and where each run's cycles go."""
    p16 = load_profile("kpu-16x16")
    fast = unlimited_memory()
    runs = [("f32", False, p16), ("f32", False, fast), ("f32", True, p16), ("f32", True, fast),
            ("bf16", False, p16), ("bf16", True, p16)]
    rows, parts = [], []
    for n in (64, 1024):
        one = kpu_cycles(n, n, n, 16, 16, "os")
        for dtype, hand, profile in runs:
            label = "x 1e6 bandwidth" if profile is fast else "kpu-16x16"
            tiles = "hand: 64x64x16" if hand else "search"
            head = [f"{n}^3", dtype, tiles, label]
            try:
                graph = lowered_gemm(n, DType.parse(dtype), hand, p16)
            except TensorIRError as exc:        # say so in the table
                rows.append(head + [STILLWATER[n], "-", "-", f"does not lower: {exc}", "-",
                                    "-", "-"])
                continue
            report = simulate(graph, profile)
            (model,) = kpu.kernel_models(graph, profile)
            b = model.breakdown
            l1 = "; ".join(f"{g.count} x {g.m}x{g.n}x{g.k}" for g in model.gemms)
            rows.append(head + [STILLWATER[n],
                                f"{stillwater_serial_tile_cycles(n, n, n, 16, 16):,}",
                                f"{one.cycles:,} ({pct(one.utilisation)})", l1,
                                f"{b['array_cycles']:,.0f} ({pct(b['array_utilisation'])})",
                                f"{report.cycles:,} ({pct(n ** 3 / (256 * report.cycles))})",
                                model.cost.bound])
            parts.append(head + [f"{b[key]:,.0f}" for _, key in PARTS]
                         + [f"{b['total_cycles']:,.0f}"])
    compare = format_table(["GEMM", "dtype", "tiles", "profile", "Stillwater published",
                            "serial tiles (K+2R+C)", "kpu_cycles, one GEMM",
                            "L1 tiles: count x M x N x K", "array cycles (util)",
                            "backend cycles (util)", "bound"], rows,
                           align="llllrrrlrrl", markdown=True)
    split = format_table(["GEMM", "dtype", "tiles", "profile"] + [name for name, _ in PARTS]
                         + ["total"], parts, align="llll" + "r" * (len(PARTS) + 1),
                         markdown=True)
    return compare, split


def load(name: str):
    from graph_passes import load_model
    return load_model(name)


def model_tables(name: str, top: int) -> str:
    p16 = load_profile("kpu-16x16")
    graph = load(name)
    start = time.perf_counter()
    lowered = lower_for(graph, p16)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    report = kpu.simulate(lowered, p16, model=name)
    sim_s = time.perf_counter() - start
    gemms = {m.cost.name: m.gemms for m in kpu.kernel_models(lowered, p16)}
    total = report.cycles
    sums = {key: sum(k.breakdown[key] for k in report.kernels) for _, key in PARTS}
    head = [[name, f"{len(report.kernels)}", f"{report.latency_s * 1e3:.3f} ms", f"{total:,}",
             pct(report.achieved_flops / p16.peak_flops("f32"))]
            + [pct(sums[key] / total) for _, key in PARTS]
            + [f"{lower_s * 1e3:.0f}", f"{sim_s * 1e3:.0f}"]]
    out = [format_table(["model", "kernels", "latency", "cycles", "util"]
                        + [n for n, _ in PARTS] + ["passes ms", "simulate ms"], head,
                        align="lrrrr" + "r" * len(PARTS) + "rr", markdown=True)]
    groups: dict[tuple, list] = {}          # kernels alike: same op, GEMMs and cycles
    for k in report.kernels:
        key = (k.op_type, tuple((g.count, g.m, g.n, g.k, g.g) for g in gemms[k.name]),
               round(k.breakdown["total_cycles"]))
        groups.setdefault(key, []).append(k)
    rows = []
    for ks in sorted(groups.values(), key=lambda ks: -sum(k.time_s for k in ks))[:top]:
        k = ks[0]
        b = k.breakdown
        found = gemms[k.name]
        shape = (f"{found[0].count} x {found[0].m}x{found[0].n}x{found[0].k}"
                 + (f" (+{len(found) - 1})" if len(found) > 1 else "")) if found else "vector"
        rows.append([k.name[-28:], f"{len(ks)}", k.op_type, shape,
                     f"{b['total_cycles']:,.0f}", pct(b["array_utilisation"])]
                    + [pct(b[key] / b["total_cycles"]) for _, key in PARTS] + [k.bound])
    out.append(format_table(["kernel", "alike", "op", "L1-tile GEMMs", "cycles each",
                             "array util"] + [n for n, _ in PARTS] + ["bound"], rows,
                            align="lrllrr" + "r" * len(PARTS) + "l", markdown=True))
    variants = [("kpu-16x16", "os", "kpu", report)]
    variants.append(("kpu-16x16", "ws", "kpu", kpu.simulate(lowered, p16, dataflow="ws")))
    variants.append(("kpu-16x16", "os", "scalesim",
                     kpu.simulate(lowered, p16, mode="scalesim")))
    variants.append(("kpu-64x64", "os", "kpu", simulate(graph, "kpu-64x64", model=name)))
    vrows = []
    for prof, flow, mode, r in variants:
        peak = load_profile(prof).peak_flops("f32")
        array = sum(k.breakdown["array_cycles"] for k in r.kernels)
        vrows.append([prof, flow, mode, f"{r.latency_s * 1e3:.3f} ms", f"{r.cycles:,}",
                      f"{array:,.0f}", pct(r.achieved_flops / peak), r.bound])
    out.append(format_table(["profile", "dataflow", "mode", "latency", "cycles",
                             "array cycles", "util", "bound"], vrows, align="llllrrrl",
                            markdown=True))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["resnet50", "bert-base"])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    print(f"command: python benchmarks/kpu_model.py --models {' '.join(args.models)} "
          f"--top {args.top}\n")
    print("## Stillwater's 16 x 16 output-stationary figures, through the whole backend\n")
    compare, split = stillwater_tables()
    print(compare)
    print("\nwhere the cycles go:\n")
    print(split)
    for name in args.models:
        print(f"\n## {name} on kpu-16x16\n")
        try:
            print(model_tables(name, args.top))
        except Exception as exc:       # a model that cannot load or simulate: say why
            print(f"{name}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
