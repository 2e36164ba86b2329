"""The CPU backend's analytical cache model against its exact mode (LRU replay), and its speed.

    python benchmarks/cpu_model.py [--factors 1 8] [--shapes mm64 cv16 ...] [--models resnet50]

1. For each shape (tiled matmuls and convolutions, f32, one kernel each, after the default
   graph passes) and each profile (the ``cpu-avx512`` preset, and the same core with every
   cache divided by a factor, :func:`backends.cpu.scaled_caches`, so that the problems exceed
   the caches), the graph is lowered for that profile (``passes.lowering.lower``: the tile
   search picks the tiles) and the kernel's traffic between DRAM and L3 is computed twice:
   by the analytical model (:func:`backends.cpu.analytical_traffic`) and by replaying the
   kernel's access trace through the caches (:func:`backends.cpu.exact_traffic`, one core,
   LRU, write-allocate, write-back, flushed at the end). "error" is analytical / exact - 1;
   the issue's bound is 15 %. The L3 -> L2 and L2 -> L1 columns give the same for the inner
   links, for information. "model ms" is the analytical model's time, "exact s" the trace
   generation and replay.
2. ``--models``: the analytical model's time on whole models, per CPU preset (every kernel's
   ``backends.cpu.kernel_cost`` after lowering; not the lowering).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import cpu  # noqa: E402
from backends.profile import load_profile  # noqa: E402
from frontends.python import GraphBuilder  # noqa: E402
from passes import PassManager  # noqa: E402
from passes.lowering import lower  # noqa: E402
from tensorir.kernel import kernel_domain, kernel_domain_or_reason  # noqa: E402
from tensorir.table import format_table  # noqa: E402


def matmul(m: int, n: int, k: int):
    b = GraphBuilder(f"matmul {m}x{n}x{k}", seed=0)
    x = b.input("x", [m, k])
    return b.build(b.matmul(x, b.weight("w", [k, n])))


def conv(c: int, hw: int, f: int, k: int = 3, pad: int = 1):
    """Conv c -> f channels, k x k, pad, on a 1 x c x hw x hw image, with bias and ReLU."""
    b = GraphBuilder(f"conv {c}->{f} {k}x{k} {hw}x{hw}", seed=0)
    x = b.input("x", [1, c, hw, hw])
    y = b.conv(x, b.weight("w", [f, c, k, k]), b.weight("b", [f]), pads=[pad] * 4)
    return b.build(b.relu(y))


SHAPES = {
    "mm64": lambda: matmul(64, 64, 64),
    "mm96": lambda: matmul(96, 96, 96),
    "mm128": lambda: matmul(128, 128, 128),
    "mm192": lambda: matmul(192, 192, 192),
    "mm256x64x128": lambda: matmul(256, 64, 128),
    "mm160x96x200": lambda: matmul(160, 96, 200),
    "cv16-32@28": lambda: conv(16, 28, 32),
    "cv32-32@14": lambda: conv(32, 14, 32),
    "cv8-16@30": lambda: conv(8, 30, 16),
    "cv64-64@14 1x1": lambda: conv(64, 14, 64, k=1, pad=0),
}


def percent(a: float, e: float) -> str:
    return f"{(a - e) / e:+.1%}" if e else "-"


def compare(names, factors, max_accesses: int):
    base = load_profile("cpu-avx512")
    profiles = [base if f == 1 else cpu.scaled_caches(base, f) for f in factors]
    rows, errors = [], []
    for name in names:
        g = SHAPES[name]()
        PassManager("default", verify=False).run(g)
        for p in profiles:
            lg = lower(g, p.target)
            op, ks = lg.ops[0], lg.schedule.kernels[0]
            kd = kernel_domain(op)
            t0 = time.perf_counter()
            an = cpu.analytical_traffic(op, ks, kd, p, packed=False)
            t1 = time.perf_counter()
            ex = cpu.exact_traffic(op, ks, kd, p, max_accesses=max_accesses)
            t2 = time.perf_counter()
            links = list(ex)
            dram = links[0]
            err = (an[dram].total - ex[dram].total) / ex[dram].total
            errors.append(abs(err))
            tiles = " ".join("x".join(map(str, t.tile)) for t in ks.tilings)
            rows.append([name, p.name, tiles, f"{ex[dram].total / 1e3:,.1f}",
                         f"{an[dram].total / 1e3:,.1f}", percent(an[dram].total, ex[dram].total)]
                        + [percent(an[link].total, ex[link].total) for link in links[1:]]
                        + [f"{(t1 - t0) * 1e3:.0f}", f"{t2 - t1:.1f}"])
    heads = (["shape", "profile", "tiles L3 L2 L1", "exact DRAM kB", "model DRAM kB", "error"]
             + [f"{a}->{b}" for a, b in links[1:]] + ["model ms", "exact s"])
    print(format_table(heads, rows, align="lll" + "r" * (len(heads) - 3)))
    within = sum(e <= 0.15 for e in errors)
    print(f"\nDRAM traffic within 15% of the exact mode: {within} of {len(errors)}; "
          f"largest error {max(errors):.1%}")


def model_speed(models):
    from graph_passes import load_model
    from backends.simulate import lower_for
    rows = []
    for name in models:
        g = load_model(name)
        PassManager("default", verify=False).run(g)
        for pname in ("cpu-avx512", "cpu-avx512-16core", "cpu-neoverse-v2"):
            p = load_profile(pname)
            lg = lower_for(g, p, "")
            producers = {op.results[0].name: op for op in lg.ops if op.results}
            cpu._ANALYSES.clear()
            t0 = time.perf_counter()
            total = 0.0
            for ks in lg.schedule.kernels:
                op = producers[ks.result]
                kd = None if ks.untiled else kernel_domain_or_reason(op)
                total += cpu.kernel_cost(op, ks, None if isinstance(kd, str) else kd, p).time_s
            rows.append([name, pname, len(lg.schedule.kernels),
                         f"{(time.perf_counter() - t0) * 1e3:.0f}", f"{total * 1e3:,.2f}"])
    print(format_table(["model", "profile", "kernels", "cpu model ms", "predicted ms"], rows,
                       align="llrrr"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 8],
                        help="cache divisors of cpu-avx512 (1: the preset)")
    parser.add_argument("--max-accesses", type=int, default=cpu.MAX_EXACT_ACCESSES)
    parser.add_argument("--models", nargs="*", default=[],
                        help="also time the model on whole models (resnet50 bert-base ...)")
    args = parser.parse_args()
    print("command: python benchmarks/cpu_model.py " + " ".join(sys.argv[1:]) + "\n")
    compare(args.shapes, args.factors, args.max_accesses)
    if args.models:
        print()
        model_speed(args.models)


if __name__ == "__main__":
    main()
