"""The compare tables of docs/backends.md: whole models on every preset, side by side.

    python benchmarks/compare_models.py [--models mlp-mixer resnet50 bert-base]
                                        [--plots docs/img] [--timeline]

For each model (after the default graph passes): one row per preset (latency, throughput,
energy, achieved FLOP/s, peak DRAM arena, what bounds most of the time) as a Markdown table,
the slowest kernels side by side, and the time the whole comparison took. ``--plots DIR``
writes a roofline plot per preset for the first model (needs the ``plot`` extra);
``--timeline`` prints each report's ASCII timeline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_passes import load_model, transformer_models  # noqa: E402

from backends import compare, list_presets  # noqa: E402
from passes import PassManager  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp-mixer", "resnet50", "bert-base"])
    parser.add_argument("--plots", metavar="DIR", help="roofline PNGs for the first model")
    parser.add_argument("--timeline", action="store_true")
    args = parser.parse_args()
    have_torch, why = transformer_models.available()
    print(f"command: python benchmarks/compare_models.py --models {' '.join(args.models)}"
          + (f" --plots {args.plots}" if args.plots else "") + "\n")
    for i, name in enumerate(args.models):
        if name in transformer_models.MODELS and not have_torch:
            print(f"skipping {name}: {why}")
            continue
        graph = load_model(name)
        PassManager("default", verify=False).run(graph)
        start = time.perf_counter()
        comparison = compare(graph, list_presets(), pipeline="", model=name)
        elapsed = time.perf_counter() - start
        print(f"### {name} (batch 1{', seq 128' if name in transformer_models.MODELS else ''}"
              f"): {len(comparison.reports)} presets in {elapsed:.2f} s\n")
        print(comparison.to_markdown() + "\n")
        print("```\n" + comparison.kernel_table(top=8) + "\n```\n")
        if args.timeline:
            for r in comparison.reports:
                print("```\n" + r.timeline(top=5) + "\n```\n")
        if args.plots and i == 0:
            from backends.plot import roofline_plot
            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            for r in comparison.reports:
                dtype = "f32"
                print(roofline_plot(r, out / f"roofline-{name}-{r.profile}.png", dtype=dtype))


if __name__ == "__main__":
    main()
