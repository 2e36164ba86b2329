"""The real models the ONNX frontend is tested on, and their onnxruntime reference outputs."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx

from frontends.onnx.weights import fill_stripped_weights

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))


def light_path(name: str) -> Path:
    return LIGHT_DIR / f"light_{name}.onnx"


@functools.lru_cache(maxsize=None)
def light_model_with_weights(name: str, seed: int = 0) -> onnx.ModelProto:
    """A light model with its stripped weights replaced by seeded random values."""
    return fill_stripped_weights(onnx.load(light_path(name)), seed=seed)


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the light models list initializers as inputs: ORT warns
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def image_feed(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded random values for every graph input that is not an initializer."""
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def onnx_static_types(model: onnx.ModelProto, bind: dict | None = None) -> dict[str, tuple]:
    """onnx.shape_inference's (shape, elem_type) for every value it infers statically.

    Symbolic input dims named in ``bind`` are fixed first, as tensorir's loader does.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and bind and d.dim_param in bind:
                d.dim_value = bind[d.dim_param]
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = tt.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[vi.name] = (tuple(d.dim_value for d in dims), tt.elem_type)
    return out
