"""Built-in models written with the Python builder.

MLP-Mixer (Tolstikhin et al. 2021, arXiv:2105.01601): patches from a strided convolution, then
``layers`` blocks of token mixing (an MLP across the patches, applied on the transposed
activations) and channel mixing (an MLP across the channels), each pre-normalised with
LayerNorm and with a residual connection; global average pooling over the patches and a
linear head. Linear layers are MatMul + Add, GELU is exact (erf), as PyTorch exports them.
"""

from __future__ import annotations

import attrs

from tensorir import DType, Graph
from tensorir.dims import Dim

from .python import GraphBuilder


@attrs.frozen
class MixerConfig:
    """One row of Table 1 of the MLP-Mixer paper."""

    patch: int
    hidden: int
    layers: int
    tokens_mlp: int
    channels_mlp: int


# arXiv:2105.01601, Table 1
MIXER_CONFIGS = {
    "S/32": MixerConfig(32, 512, 8, 256, 2048),
    "S/16": MixerConfig(16, 512, 8, 256, 2048),
    "B/32": MixerConfig(32, 768, 12, 384, 3072),
    "B/16": MixerConfig(16, 768, 12, 384, 3072),
    "L/32": MixerConfig(32, 1024, 24, 512, 4096),
    "L/16": MixerConfig(16, 1024, 24, 512, 4096),
    "H/14": MixerConfig(14, 1280, 32, 640, 5120),
}


def mlp_mixer(variant: str = "S/16", batch: Dim = 1, image_size: int = 224,
              num_classes: int = 1000, layers: int | None = None, seed: int = 0) -> Graph:
    """Build MLP-Mixer ``variant`` (a key of MIXER_CONFIGS) with seeded random weights.

    ``batch`` may be an int or a symbol such as ``"batch"``; ``layers`` overrides the depth
    (for quick tests).
    """
    cfg = MIXER_CONFIGS[variant]
    depth = cfg.layers if layers is None else layers
    grid = image_size // cfg.patch
    tokens = grid * grid
    c = cfg.hidden
    b = GraphBuilder(f"mlp_mixer_{variant.replace('/', '_').lower()}", seed=seed)
    x = b.input("image", [batch, 3, image_size, image_size])

    with b.scope("stem"):
        y = b.conv(x, b.weight("weight", [c, 3, cfg.patch, cfg.patch]),
                   b.weight("bias", [c]),
                   kernel_shape=[cfg.patch, cfg.patch], strides=[cfg.patch, cfg.patch])
        y = b.reshape(y, [0, c, tokens])               # [B, C, T]
        y = b.transpose(y, perm=[0, 2, 1])              # [B, T, C]

    def layer_norm(v, name):
        with b.scope(name):
            return b.layer_normalization(v, b.weight("scale", [c], init="ones"),
                                         b.weight("bias", [c], init="zeros"), axis=-1,
                                         epsilon=1e-6)

    def mlp(v, width, hidden, name):
        with b.scope(name):
            h = b.gelu(b.linear(v, width, hidden, "fc1"))
            return b.linear(h, hidden, width, "fc2")

    for i in range(depth):
        with b.scope(f"block{i}"):
            t = layer_norm(y, "norm1")
            t = b.transpose(t, perm=[0, 2, 1])          # [B, C, T]: mix across tokens
            t = mlp(t, tokens, cfg.tokens_mlp, "token_mixing")
            t = b.transpose(t, perm=[0, 2, 1])
            y = b.add(y, t)
            ch = layer_norm(y, "norm2")
            ch = mlp(ch, c, cfg.channels_mlp, "channel_mixing")
            y = b.add(y, ch)

    with b.scope("head"):
        y = layer_norm(y, "norm")
        y = b.reduce_mean(y, [1], keepdims=0)            # global average over tokens: [B, C]
        logits = b.linear(y, c, num_classes, "fc")
    return b.build(logits)


# ----------------------------------------------------------------------------- micro-workloads
# single kernels the backends are validated on (docs/gpu.md, benchmarks/gpu_validation.py)

def gemm(m: int, n: int, k: int, dtype: DType = DType.float32) -> Graph:
    """``C[m, n] = A[m, k] @ B[k, n]`` with both operands as inputs."""
    b = GraphBuilder("gemm", dtype=dtype)
    return b.build(b.matmul(b.input("a", [m, k]), b.input("b", [k, n])))


def elementwise_add(elements: int, dtype: DType = DType.float32) -> Graph:
    """``z = x + y`` over two 1-D inputs: a memory-bound streaming kernel."""
    b = GraphBuilder("add", dtype=dtype)
    return b.build(b.add(b.input("x", [elements]), b.input("y", [elements])))


def attention(batch: int, heads: int, seq: int, dim: int,
              dtype: DType = DType.float16) -> Graph:
    """``softmax(Q K^T / sqrt(d)) V`` over [batch, heads, seq, dim] inputs (unfused ops;
    the default pipeline fuses it into one ``fused.attention``)."""
    b = GraphBuilder("attention", dtype=dtype)
    q, k, v = (b.input(n, [batch, heads, seq, dim]) for n in "qkv")
    scores = b.mul(b.matmul(q, b.transpose(k, perm=[0, 1, 3, 2])), b.constant(dim ** -0.5))
    return b.build(b.matmul(b.softmax(scores, axis=-1), v))


BUILTIN_MODELS = {
    "mlp-mixer-s16": lambda batch=1: mlp_mixer("S/16", batch=batch),
    "mlp-mixer-s32": lambda batch=1: mlp_mixer("S/32", batch=batch),
    "mlp-mixer-b16": lambda batch=1: mlp_mixer("B/16", batch=batch),
}
DEFAULT_MODEL = "mlp-mixer-s16"
