"""Fusion: kernels before and after a pass pipeline, side by side with onnxruntime's graph.

    python benchmarks/fusion.py [--models resnet50 bert-base ...] [--pipeline fuse]

Per model (the nine onnx "light" models, MLP-Mixer S/16, and BERT-base and GPT-2 at batch 1,
seq 128 when torch and transformers are installed):

- ops and kernels before and after the pipeline. A *kernel* is a top-level op that is not a
  free shape op (:data:`passes.fusion.FREE_OPS`: Reshape, Flatten, Squeeze, Unsqueeze,
  Identity, inference Dropout, views, and shape computations): those only reinterpret a
  buffer, the others each read and write memory;
- the fused kernels by kind (top level; nested ones, such as the GELU inside an FFN's first
  MatMul, are not counted twice);
- bytes no longer written: the sizes of the values computed inside fused bodies and not
  returned by them (:func:`passes.fusion.internal_bytes`), each a tensor the unfused graph
  wrote to memory and read back;
- onnxruntime's node count after ORT_ENABLE_ALL (CPU): the optimised model is saved with
  ``SessionOptions.optimized_model_filepath`` and its nodes counted; "ORT kernels" applies the
  same free-op rule to them. Both sides see the same static shapes and constant weights: the
  light models' stripped weights are filled with seeded values (``fill_stripped_weights``, as
  the frontend's tests do) and no longer listed as graph inputs (an initializer that is also
  an input may be overridden at run time, which keeps onnxruntime from folding it), and the
  transformers' batch and seq inputs are fixed.

The issue's target: no more kernels than onnxruntime leaves nodes, on every model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import transformer_models  # noqa: E402
from onnx_models import LIGHT_MODELS, light_model_with_weights, light_path  # noqa: E402

from frontends.onnx import load  # noqa: E402
from frontends.zoo import mlp_mixer  # noqa: E402
from passes import PassManager  # noqa: E402
from passes.fusion import FREE_OPS, internal_bytes, kernel_count  # noqa: E402
from tensorir.table import binary_bytes, format_table  # noqa: E402

TRANSFORMER_BIND = {"batch": 1, "seq": 128}
MIXER = "mlp-mixer"
ALL = LIGHT_MODELS + [MIXER] + list(transformer_models.MODELS)
ORT_FREE = FREE_OPS | {"Shape", "Constant", "ConstantOfShape", "Size", "Range"}


def onnx_model(name: str, graph) -> onnx.ModelProto:
    """The model onnxruntime optimises, with the static shapes tensorir was given."""
    if name == MIXER:
        from frontends.onnx import to_model_proto
        return to_model_proto(graph)
    if name in transformer_models.MODELS:
        model = onnx.load(transformer_models.export(name))
        for vi in model.graph.input:
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in TRANSFORMER_BIND:
                    d.dim_value = TRANSFORMER_BIND[d.dim_param]
        return model
    model = onnx.ModelProto()
    model.CopyFrom(light_model_with_weights(name))
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model


def ort_nodes(model: onnx.ModelProto, workdir: Path) -> Counter:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    path = workdir / "optimized.onnx"
    options.optimized_model_filepath = str(path)
    # weights go to a side file: the count needs the graph only
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", "optimized.data")
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(path), load_external_data=False)
    return Counter(n.op_type for n in optimized.graph.node)


def load_graph(name: str):
    if name == MIXER:
        return mlp_mixer("S/16", batch=1)
    if name in transformer_models.MODELS:
        return load(transformer_models.export(name), bind=TRANSFORMER_BIND)
    return load(light_path(name))


def top_level_kinds(graph) -> str:
    kinds = Counter(o.type.split(".", 1)[1] for o in graph.ops if o.type.startswith("fused."))
    return " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["all"],
                        help=f"from {', '.join(ALL)}, or 'all' (the default)")
    parser.add_argument("--pipeline", default="default", help="the pass pipeline to measure")
    args = parser.parse_args()
    names = ALL if args.models == ["all"] else args.models
    have_torch, why = transformer_models.available()

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name in transformer_models.MODELS and not have_torch:
                notes.append(f"skipped {name}: {why}")
                continue
            graph = load_graph(name)
            ops_before, kernels_before = len(graph), kernel_count(graph)
            model = onnx_model(name, graph)
            start = time.perf_counter()
            result = PassManager(args.pipeline).run(graph)
            seconds = time.perf_counter() - start
            after = result.graph
            kernels = kernel_count(after)
            ort_counts = ort_nodes(model, Path(tmp))
            ort_total = sum(ort_counts.values())
            ort_kernels = sum(n for t, n in ort_counts.items() if t not in ORT_FREE)
            rows.append([name, ops_before, len(after), kernels_before, kernels,
                         top_level_kinds(after), binary_bytes(internal_bytes(after)),
                         f"{seconds * 1e3:.0f}", ort_total, ort_kernels,
                         "yes" if kernels <= ort_total else "NO"])

    print(f"command: python benchmarks/fusion.py --models {' '.join(args.models)} "
          f"--pipeline \"{args.pipeline}\"")
    print(f"onnxruntime {ort.__version__}, ORT_ENABLE_ALL, CPU; transformers at "
          f"batch {TRANSFORMER_BIND['batch']}, seq {TRANSFORMER_BIND['seq']}")
    print(format_table(["model", "ops", "ops after", "kernels", "kernels after",
                        "fused kernels (top level)", "not written", "ms", "ORT nodes",
                        "ORT kernels", "<= ORT nodes"], rows, align="lrrrrlrrrrl"))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
