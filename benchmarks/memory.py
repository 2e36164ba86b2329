"""DRAM arena sizes: the values between kernels, planned with liveness and offset assignment.

    python benchmarks/memory.py [--models resnet50 bert-base ...] [--pipeline default]
                                [--alignment 64] [--occupancy DIR]

Per model (the nine onnx "light" models, MLP-Mixer S/16, and BERT-base and GPT-2 at batch 1,
seq 128 when torch and transformers are installed; fp32 throughout), as loaded and after the
pass pipeline, in the graph's own topological order (:func:`tensorir.arena.plan_arena`):

- naive: every buffer its own memory (no reuse);
- bound: the most bytes live at one step, without in-place writes (no placement of these
  buffers does better; in-place merging can);
- greedy-by-size: TFLite's strategy (largest first, lowest offset that fits), no in-place;
- ours: the best of the strategies on the in-place-merged blocks, its ratio to the bound and
  the strategy that won, the in-place writes, and the planning time (best of 3 runs);
- weights: the constants, which live in their own region.

A second table gives the bound and our peak in the memory-aware order
(:func:`tensorir.arena.memory_order`). Sizes are in MB (10^6 bytes). ``--occupancy DIR``
writes each plan's bytes live per step as CSV.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import transformer_models  # noqa: E402
from onnx_models import LIGHT_MODELS, light_path  # noqa: E402

from frontends.onnx import load  # noqa: E402
from frontends.zoo import mlp_mixer  # noqa: E402
from passes import PassManager  # noqa: E402
from tensorir.arena import check_arena, plan_arena  # noqa: E402
from tensorir.table import format_table  # noqa: E402

TRANSFORMER_BIND = {"batch": 1, "seq": 128}
MIXER = "mlp-mixer"
ALL = LIGHT_MODELS + [MIXER] + list(transformer_models.MODELS)
MB = 1e6


def load_graph(name: str):
    if name == MIXER:
        return mlp_mixer("S/16", batch=1)
    if name in transformer_models.MODELS:
        return load(transformer_models.export(name), bind=TRANSFORMER_BIND)
    return load(light_path(name))  # stripped weights: their types are all the arena needs


def timed_plan(graph, repeats: int = 3, **options):
    best, plan = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        plan = plan_arena(graph, **options)
        best = min(best, time.perf_counter() - start)
    return check_arena(plan), best


def mb(n: int) -> str:
    return f"{n / MB:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["all"],
                        help=f"from {', '.join(ALL)}, or 'all' (the default)")
    parser.add_argument("--pipeline", default="default", help="the pass pipeline to compare")
    parser.add_argument("--alignment", type=int, default=64, help="offset alignment, bytes")
    parser.add_argument("--occupancy", type=Path, default=None,
                        help="a folder to write <model>-<graph>.csv occupancy tables to")
    args = parser.parse_args()
    names = ALL if args.models == ["all"] else args.models
    have_torch, why = transformer_models.available()

    rows, order_rows, notes = [], [], []
    for name in names:
        if name in transformer_models.MODELS and not have_torch:
            notes.append(f"skipped {name}: {why}")
            continue
        loaded = load_graph(name)
        after = PassManager(args.pipeline).run(loaded.copy()).graph
        for tag, graph in (("loaded", loaded), (args.pipeline, after)):
            plan, seconds = timed_plan(graph, alignment=args.alignment)
            rows.append([name, tag, len(graph), mb(plan.naive), mb(plan.lower_bound),
                         mb(plan.greedy_by_size), mb(plan.peak),
                         f"{plan.peak / plan.lower_bound:.3f}", plan.strategy,
                         len(plan.in_place), f"{seconds * 1e3:.1f}", mb(plan.weights)])
            mem, mem_seconds = timed_plan(graph, order="memory", alignment=args.alignment)
            order_rows.append([name, tag, mb(plan.lower_bound), mb(mem.lower_bound),
                               mb(plan.peak), mb(mem.peak), f"{mem_seconds * 1e3:.1f}"])
            if args.occupancy is not None:
                args.occupancy.mkdir(parents=True, exist_ok=True)
                (args.occupancy / f"{name}-{tag}.csv").write_text(plan.to_csv())

    print(f"command: python benchmarks/memory.py --models {' '.join(args.models)} "
          f"--pipeline \"{args.pipeline}\" --alignment {args.alignment}")
    print(f"batch 1, fp32; transformers at seq {TRANSFORMER_BIND['seq']}; MB = 10^6 bytes; "
          f"graph order (graph.ops)")
    print(format_table(["model", "graph", "ops", "naive MB", "bound MB", "greedy-by-size MB",
                        "ours MB", "ours/bound", "strategy", "in place", "plan ms",
                        "weights MB"], rows, align="llrrrrrrlrrr"))
    print()
    print("memory-aware op order (order=\"memory\"):")
    print(format_table(["model", "graph", "bound MB", "bound MB (memory order)", "ours MB",
                        "ours MB (memory order)", "plan ms (memory order)"], order_rows,
                       align="llrrrrr"))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
