"""Time of the default pass pipeline on whole models.

    python benchmarks/graph_passes.py [--models resnet50 bert-base ...] [--pipeline default]

For each model: the pipeline's wall time as `PassManager` runs it by default (a copy kept
before each in-place pass for the reproducer), without verification (what `tensorir compile
--no-verify` costs) and with the verifier after every pass (the default); ops before and after;
and the per-pass table of the unverified run. The issue's bound: the default pipeline on
ResNet-50 and BERT-base (batch 1, seq 128) under one second each. Loading is not counted
(benchmarks/onnx_frontend.py times it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import transformer_models  # noqa: E402
from onnx_models import LIGHT_MODELS, light_model_with_weights  # noqa: E402

from frontends.onnx import load  # noqa: E402
from frontends.zoo import mlp_mixer  # noqa: E402
from passes import PassManager  # noqa: E402
from tensorir.table import format_table  # noqa: E402


def load_model(name: str):
    if name == "mlp-mixer":
        return mlp_mixer("S/16", batch=1)
    if name in transformer_models.MODELS:
        return load(transformer_models.export(name), bind={"batch": 1, "seq": 128})
    return load(light_model_with_weights(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert-base"],
                        help=f"from {', '.join(LIGHT_MODELS)}, mlp-mixer, "
                             f"{', '.join(transformer_models.MODELS)}, or 'all'")
    parser.add_argument("--pipeline", default="default")
    args = parser.parse_args()
    names = (LIGHT_MODELS + ["mlp-mixer"] + list(transformer_models.MODELS)
             if args.models == ["all"] else args.models)
    have_torch, why = transformer_models.available()
    rows, tables = [], []
    for name in names:
        if name in transformer_models.MODELS and not have_torch:
            print(f"skipping {name}: {why}")
            continue
        timings = {}
        for verify in (False, True):
            graph = load_model(name)
            start = time.perf_counter()
            result = PassManager(args.pipeline, verify=verify).run(graph)
            timings[verify] = time.perf_counter() - start
            if not verify:
                tables.append((name, result.table()))
        rows.append([name, result.records[0].ops_before, len(result.graph),
                     f"{timings[False] * 1e3:.0f}", f"{timings[True] * 1e3:.0f}"])
    print(f"command: python benchmarks/graph_passes.py --models {' '.join(args.models)} "
          f"--pipeline {args.pipeline}\n")
    print(format_table(["model", "ops before", "ops after", "pipeline ms", "with verify ms"],
                       rows, align="lrrrr"))
    for name, table in tables:
        print(f"\n{name}:\n{table}")


if __name__ == "__main__":
    main()
