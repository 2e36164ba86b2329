"""Time of tiling + lowering + allocation on whole models, per target.

    python benchmarks/scheduling.py [--models resnet50 bert-base mlp-mixer] [--targets ...]

For each model (after the default graph pipeline, not timed) and each target preset: the time
of the ``lower`` pass (kernel domains, multi-level tile choice, loop nests) and of the
``allocate`` pass (scratchpad offsets, DRAM arena), kernels tiled / untiled / unfused, the
DRAM arena's peak, and the verifier's time on the lowered program. The issue's bound: tiling +
lowering + allocation of ResNet-50 or BERT-base for one target under one second. Each target
runs on a fresh copy with the process-wide memos emptied (tile searches, kernel-domain
compositions, arena placements): the times are cold.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_passes import load_model  # noqa: E402

import passes.tiling  # noqa: E402
import tensorir.arena  # noqa: E402
import tensorir.kernel  # noqa: E402
from passes import PassManager  # noqa: E402
from passes.allocation import AllocatePass  # noqa: E402
from passes.lowering import LowerPass  # noqa: E402
from tensorir.table import format_table  # noqa: E402
from tensorir.target import preset_names  # noqa: E402
from tensorir.verifier import check  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert-base", "mlp-mixer"])
    parser.add_argument("--targets", nargs="+", default=["kpu-16x16", "cpu-avx512",
                                                          "gpu-h100-sxm"],
                        help=f"presets ({', '.join(preset_names())}) or profile paths")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        graph = load_model(name)
        PassManager("default", verify=False).run(graph)
        for target in args.targets:
            g = graph.copy()
            # cold: nothing an earlier target searched, composed or placed is reused
            passes.tiling._choose_cached.cache_clear()
            passes.tiling._approx_search.cache_clear()
            tensorir.kernel._by_structure.clear()
            tensorir.kernel._by_content.clear()
            tensorir.arena._PLACEMENTS.clear()
            t0 = time.perf_counter()
            lowered = LowerPass(target=target)(g)
            t1 = time.perf_counter()
            AllocatePass()(g)
            t2 = time.perf_counter()
            problems = check(g)
            t3 = time.perf_counter()
            st = lowered.stats
            rows.append([name, target, st["tiled"], st["untiled"], st["unfused"],
                         f"{(t1 - t0) * 1e3:.0f}", f"{(t2 - t1) * 1e3:.0f}",
                         f"{(t2 - t0) * 1e3:.0f}", f"{g.schedule.arena.peak / 2**20:.2f}",
                         f"{(t3 - t2) * 1e3:.0f}", len(problems)])
    print(f"command: python benchmarks/scheduling.py --models {' '.join(args.models)} "
          f"--targets {' '.join(args.targets)}\n")
    print(format_table(["model", "target", "tiled", "untiled", "unfused", "lower ms",
                        "allocate ms", "total ms", "arena MiB", "verify ms", "problems"],
                       rows, align="llrrrrrrrrr"))


if __name__ == "__main__":
    main()
