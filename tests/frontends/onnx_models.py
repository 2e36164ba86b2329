"""The real models the ONNX frontend is tested on, and their onnxruntime reference outputs."""

from __future__ import annotations

import functools
import os
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
