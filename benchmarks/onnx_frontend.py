"""ONNX frontend speed: loading and running real models, side by side with onnx and onnxruntime.

    python benchmarks/onnx_frontend.py [--models resnet50 bert-base ...] [--repeat 5]

Two tables:

1. Load: ``frontends.onnx.load`` (read, version-convert, import, infer every type, fold shape
   arithmetic) against ``onnx.load`` + ``onnx.shape_inference.infer_shapes`` (C++) on the same
   file. The issue's bound: at most 20x.
2. Run: one inference of ``tensorir.interpret`` (NumPy) against onnxruntime's
   ``InferenceSession.run`` (ORT_ENABLE_ALL, CPU), both warmed up once, median of ``--repeat``.
   The bound for ResNet-50 at batch 1: at most 5x.

Light models get seeded random weights (the same for both sides); transformers run at batch 1,
seq 128 and need torch + transformers (skipped otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import transformer_models  # noqa: E402
from onnx_models import LIGHT_MODELS, image_feed, light_model_with_weights  # noqa: E402

import tensorir  # noqa: E402
from frontends.onnx import load  # noqa: E402
from tensorir.table import format_table  # noqa: E402

TRANSFORMER_BIND = {"batch": 1, "seq": 128}


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_file(name: str, workdir: Path) -> tuple[Path, dict, dict]:
    """(path of the ONNX file, bindings, inputs) for a model name."""
    if name in transformer_models.MODELS:
        path = transformer_models.export(name)
        rng = np.random.default_rng(0)
        shape = (TRANSFORMER_BIND["batch"], TRANSFORMER_BIND["seq"])
        feeds = {"input_ids": rng.integers(0, 1000, shape).astype(np.int64),
                 "attention_mask": np.ones(shape, np.int64)}
        return path, TRANSFORMER_BIND, feeds
    model = light_model_with_weights(name)
    path = workdir / f"{name}.onnx"
    onnx.save(model, path)
    return path, {}, image_feed(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ["resnet50", "bert-base"]
    parser.add_argument("--models", nargs="+", default=default,
                        help=f"from {', '.join(LIGHT_MODELS + list(transformer_models.MODELS))}, "
                             f"or 'all'")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    names = LIGHT_MODELS + list(transformer_models.MODELS) if args.models == ["all"] else args.models
    have_torch, why = transformer_models.available()

    load_rows, run_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name in transformer_models.MODELS and not have_torch:
                print(f"skipping {name}: {why}")
                continue
            path, bind, feeds = model_file(name, Path(tmp))

            def onnx_side():
                onnx.shape_inference.infer_shapes(onnx.load(path))

            onnx_t = median_time(onnx_side, args.repeat)
            ours_t = median_time(lambda: load(path, bind=bind), args.repeat)
            graph = load(path, bind=bind)
            load_rows.append([name, len(graph), f"{onnx_t * 1e3:.0f}", f"{ours_t * 1e3:.0f}",
                              f"{ours_t / onnx_t:.2f}"])

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            session.run(None, feeds)
            tensorir.interpret(graph, feeds)
            ort_t = median_time(lambda: session.run(None, feeds), args.repeat)
            ours_run = median_time(lambda: tensorir.interpret(graph, feeds), args.repeat)
            run_rows.append([name, f"{ort_t * 1e3:.1f}", f"{ours_run * 1e3:.1f}",
                             f"{ours_run / ort_t:.2f}"])

    print(f"command: python benchmarks/onnx_frontend.py --models {' '.join(args.models)} "
          f"--repeat {args.repeat}")
    print("\nLoad + shape inference (median ms)")
    print(format_table(["model", "ops", "onnx load+infer_shapes", "tensorir load", "ratio"],
                       load_rows, align="lrrrr"))
    print("\nOne inference (median ms, warm)")
    print(format_table(["model", "onnxruntime", "tensorir interpret", "ratio"], run_rows,
                       align="lrrr"))


if __name__ == "__main__":
    main()
