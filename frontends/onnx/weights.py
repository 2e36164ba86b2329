"""Seeded random weights for weight-stripped models.

The onnx package's "light" models keep their architecture but replace every weight with
``ConstantOfShape(<name>__SHAPE)``. :func:`fill_stripped_weights` turns each such node into an
initializer of seeded random values, in the ModelProto itself, so that tensorir and
onnxruntime run exactly the same weights. Values are chosen to keep deep networks finite: He
initialisation (std sqrt(2 / fan_in)) for weights of rank >= 2, and uniform [0.5, 1.5) for
vectors (biases, and BatchNorm scales, means and variances, which must stay positive).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from tensorir.dtypes import dtype_from_onnx


def random_weight(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) or 1
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
    return rng.uniform(0.5, 1.5, shape).astype(dtype)


def fill_stripped_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` whose ConstantOfShape-of-an-initializer weights are seeded random."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    # IR 3 required every initializer to be listed as a graph input; IR 4 lifted that, and
    # the new initializers are not inputs
    out.ir_version = max(out.ir_version, 4)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    rng = np.random.default_rng(seed)
    keep, used_shapes = [], set()
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            dtype = dtype_from_onnx(value.data_type).numpy if value is not None else np.float32
            g.initializer.append(numpy_helper.from_array(random_weight(shape, dtype, rng),
                                                         node.output[0]))
            used_shapes.add(node.input[0])
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    still_used = {name for node in keep for name in node.input}
    drop = used_shapes - still_used
    inits_kept = [t for t in g.initializer if t.name not in drop]
    del g.initializer[:]
    g.initializer.extend(inits_kept)
    inputs_kept = [i for i in g.input if i.name not in drop]
    del g.input[:]
    g.input.extend(inputs_kept)
    return out
