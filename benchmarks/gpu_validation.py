"""The GPU-SM model beside published measurements, and its wave-quantisation steps.

    python benchmarks/gpu_validation.py            # the model's tables (no GPU needed)
    python benchmarks/gpu_validation.py --measure  # also time the same kernels with torch

Prints (docs/gpu.md quotes them):

1. Validation: large GEMMs (bf16, fp16, fp32 on CUDA cores, tf32), a memory-bound Add of two
   256M-element tensors, and FlashAttention-style fused attention, each through
   ``backends.simulate`` (attention through ``backends.gpu.op_cost``: the lowering cannot place
   long-sequence attention yet), beside the published figure it is compared with and the error.
2. The wave sweep: a bf16 GEMM M = K = 4096 on the H100 and A100 presets with the block tile
   pinned to 128 x 256 x 64, N growing by one column of blocks (32 blocks) per row: compute
   steps up each time the blocks cross a multiple of SMs x blocks per SM (and so does the time
   where compute bounds the kernel).
3. The same square GEMMs with the tile policy free (M = N = K from 1024 to 8192).

``--measure`` times the same kernels with PyTorch on the local GPU (CUDA events, median of 20
after 5 warm-ups) and prints them beside the model; without torch or CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends import gpu, simulate  # noqa: E402
from backends.profile import load_profile  # noqa: E402
from backends.simulate import lower_for  # noqa: E402
from frontends import zoo  # noqa: E402
from passes import PassManager  # noqa: E402
from tensorir import DType  # noqa: E402
from tensorir.table import format_table  # noqa: E402

DTYPES = {"bf16": DType.bfloat16, "f16": DType.float16, "f32": DType.float32,
          "tf32": DType.float32}

# Published figures. Every number is quoted in docs/gpu.md with its source's title and URL.
ZZC = "zzc0721/torch-performance-test-data #79 (torch.matmul, H100 80GB HBM3)"
MAMF = "stas00/ml-engineering MAMF table (A100 SXM, bf16, best shape)"
FA3 = "FlashAttention-3 paper, fig. 5 (FP16 fwd, non-causal, H100 SXM5)"
FA2 = "FlashAttention-2 paper (fwd, A100: up to 73 % of 312 TFLOPs/s)"
PTB = "pytorch/benchmark D60117034 (FA3, H100, B*S=16k)"
GEMMS = [  # profile, dtype, n (M=N=K), published TFLOP/s, source
    ("gpu-h100-sxm", "bf16", 8192, 797.51, ZZC), ("gpu-h100-sxm", "bf16", 4096, 788.72, ZZC),
    ("gpu-h100-sxm", "f16", 8192, 736.19, ZZC), ("gpu-h100-sxm", "f16", 4096, 760.04, ZZC),
    ("gpu-h100-sxm", "f32", 8192, 51.81, ZZC), ("gpu-h100-sxm", "f32", 4096, 51.88, ZZC),
    ("gpu-h100-sxm", "tf32", 8192, 372.05, ZZC), ("gpu-h100-sxm", "tf32", 4096, 402.15, ZZC),
    ("gpu-a100-sxm", "bf16", 8192, 271.2, MAMF), ("gpu-a100-sxm", "bf16", 4096, 271.2, MAMF),
]
STREAMS = [  # profile, dtype, published GB/s, source
    ("gpu-h100-sxm", "f16", 3134.26, "simveit/effective-reduction-mojo (H100, read, 2^30)"),
    ("gpu-h100-sxm", "f32", 3000.0, "deepseek-ai/FlashMLA README (H800 SXM5, same HBM3)"),
    ("gpu-a100-sxm", "f16", 1715.85, "BabelStream 5.0 Add, A100-SXM4-80GB (Tursa)"),
    ("gpu-a100-sxm", "f32", 1677.16, "triton-lang/triton #3894 (torch add, A100, 2^27)"),
]
ATTENTION = [  # profile, head dim, seq, published TFLOP/s, source
    ("gpu-h100-sxm", 128, 1024, 565, FA3), ("gpu-h100-sxm", 128, 2048, 625, FA3),
    ("gpu-h100-sxm", 128, 4096, 638, FA3), ("gpu-h100-sxm", 128, 8192, 646, FA3),
    ("gpu-h100-sxm", 128, 16384, 648, FA3), ("gpu-h100-sxm", 128, 16384, 620.73, PTB),
    ("gpu-h100-sxm", 64, 2048, 460, FA3), ("gpu-h100-sxm", 64, 16384, 497, FA3),
    ("gpu-a100-sxm", 128, 16384, 0.73 * 312, FA2),
]
STREAM_ELEMENTS = 1 << 28
TOKENS, HIDDEN = 16384, 2048          # the FlashAttention papers' setting: batch x seq = 16k


# --------------------------------------------------------------------------- graphs
def gemm_graph(m: int, n: int, k: int, dtype: str):
    return zoo.gemm(m, n, k, DTYPES[dtype])


def add_graph(elements: int, dtype: str):
    return zoo.elementwise_add(elements, DTYPES[dtype])


def attention_op(batch: int, heads: int, seq: int, dim: int):
    """The fused.attention kernel of softmax(Q K^T / sqrt(d)) V, fp16, after the default
    graph passes."""
    g = zoo.attention(batch, heads, seq, dim)
    PassManager("default", verify=False).run(g)
    return next(o for o in g.ops if o.type == "fused.attention")


def attention_flops(batch, heads, seq, dim) -> int:
    """The papers' count: 4 x seq^2 x head dim x heads x batch (two products, no softmax)."""
    return 4 * batch * heads * seq * seq * dim


def gemm_cost(profile, dtype: str, m: int, n: int, k: int, **options):
    p = load_profile(profile)
    with gpu.options(allow_tf32=dtype == "tf32", **options):
        return simulate(lower_for(gemm_graph(m, n, k, dtype), p), p).kernels[0]


def stream_cost(profile, dtype: str, elements: int = STREAM_ELEMENTS):
    return simulate(add_graph(elements, dtype), profile).kernels[0]


def attention_cost(profile, dim: int, seq: int):
    heads, batch = HIDDEN // dim, TOKENS // seq
    return gpu.op_cost(attention_op(batch, heads, seq, dim), profile)


# --------------------------------------------------------------------------- tables
def err(model: float, published: float) -> str:
    return f"{100 * (model / published - 1):+.1f} %"


def validation_rows():
    rows = []
    for prof, dt, n, pub, src in GEMMS:
        k = gemm_cost(prof, dt, n, n, n)
        tf = 2 * n ** 3 / k.time_s / 1e12
        rows.append([prof, f"GEMM {dt} {n}^3", f"{tf:.1f} TFLOP/s", f"{pub:g}", err(tf, pub),
                     k.bound, src])
    for prof, dt, pub, src in STREAMS:
        k = stream_cost(prof, dt)
        gbs = 3 * STREAM_ELEMENTS * DTYPES[dt].itemsize / k.time_s / 1e9
        rows.append([prof, f"Add {dt} 2^28", f"{gbs:.0f} GB/s", f"{pub:g}", err(gbs, pub),
                     k.bound, src])
    for prof, dim, seq, pub, src in ATTENTION:
        k = attention_cost(prof, dim, seq)
        tf = attention_flops(TOKENS // seq, HIDDEN // dim, seq, dim) / k.time_s / 1e12
        rows.append([prof, f"attention d{dim} s{seq}", f"{tf:.1f} TFLOP/s", f"{pub:g}",
                     err(tf, pub), k.bound, src])
    return rows


def wave_rows(profile="gpu-h100-sxm", m=4096, k=4096, tile=(128, 256, 64)):
    rows, last = [], None
    for n in range(256, 8448 + 1, 256):
        c = gemm_cost(profile, "bf16", m, n, k, tile=tile)
        b = c.breakdown
        waves = int(b["waves"])
        step = "<- wave step" if last is not None and waves > last else ""
        last = waves
        l2 = max(t for (outer, inner), t in c.link_s.items() if inner == "SMEM")
        rows.append([n, int(b["blocks"]), int(b["blocks_per_sm"]), waves,
                     f"{b['tail_efficiency']:.2f}", f"{c.compute_s * 1e6:.1f}",
                     f"{l2 * 1e6:.1f}", f"{c.time_s * 1e6:.1f}",
                     f"{2 * m * n * k / c.time_s / 1e12:.0f}", step])
    return rows


def policy_rows(profile="gpu-h100-sxm"):
    rows = []
    for n in range(1024, 8192 + 1, 512):
        c = gemm_cost(profile, "bf16", n, n, n)
        b = c.breakdown
        tile = c.notes.split("block ")[1].split(",")[0]
        rows.append([n, tile, int(b["blocks"]), int(b["waves"]), f"{b['tail_efficiency']:.2f}",
                     f"{c.time_s * 1e6:.1f}", f"{2 * n ** 3 / c.time_s / 1e12:.0f}", c.bound])
    return rows


# --------------------------------------------------------------------------- measuring
def measure() -> None:
    try:
        import torch
    except ImportError:
        print("--measure: torch is not installed; nothing measured")
        return
    if not torch.cuda.is_available():
        print("--measure: no CUDA device; nothing measured")
        return
    name = torch.cuda.get_device_name()
    profile = "gpu-a100-sxm" if "A100" in name else "gpu-h100-sxm"

    def timed(fn, reps=20):
        for _ in range(5):
            fn()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return sorted(times)[len(times) // 2]

    torch_dt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32,
                "tf32": torch.float32}
    rows = []
    for dt in ("bf16", "f16", "f32", "tf32"):
        torch.backends.cuda.matmul.allow_tf32 = dt == "tf32"
        for n in (4096, 8192):
            a = torch.randn(n, n, device="cuda", dtype=torch_dt[dt])
            b = torch.randn(n, n, device="cuda", dtype=torch_dt[dt])
            t = timed(lambda: a @ b)
            model = gemm_cost(profile, dt, n, n, n).time_s
            rows.append([f"GEMM {dt} {n}^3", f"{2 * n ** 3 / t / 1e12:.1f}",
                         f"{2 * n ** 3 / model / 1e12:.1f}", err(1 / model, 1 / t)])
    for dt in ("f16", "f32"):
        x = torch.randn(STREAM_ELEMENTS, device="cuda", dtype=torch_dt[dt])
        y = torch.randn_like(x)
        t = timed(lambda: x + y)
        nbytes = 3 * STREAM_ELEMENTS * DTYPES[dt].itemsize
        model = stream_cost(profile, dt).time_s
        rows.append([f"Add {dt} 2^28 (GB/s)", f"{nbytes / t / 1e9:.0f}",
                     f"{nbytes / model / 1e9:.0f}", err(1 / model, 1 / t)])
    import torch.nn.functional as F
    for dim in (64, 128):
        for seq in (1024, 4096, 16384):
            heads, batch = HIDDEN // dim, TOKENS // seq
            q, k, v = (torch.randn(batch, heads, seq, dim, device="cuda", dtype=torch.float16)
                       for _ in range(3))
            t = timed(lambda: F.scaled_dot_product_attention(q, k, v))
            fl = attention_flops(batch, heads, seq, dim)
            model = attention_cost(profile, dim, seq).time_s
            rows.append([f"attention d{dim} s{seq}", f"{fl / t / 1e12:.1f}",
                         f"{fl / model / 1e12:.1f}", err(1 / model, 1 / t)])
    print(f"\nmeasured on {name} (torch {torch.__version__}) beside the {profile} model:\n")
    print(format_table(["kernel", "measured TFLOP/s", "model", "model vs measured"], rows,
                       align="lrrr", markdown=True))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="also time the kernels with torch")
    args = ap.parse_args(argv)
    print("command: python benchmarks/gpu_validation.py" + (" --measure" if args.measure else ""))
    start = time.perf_counter()
    print("\n1. The model beside published measurements (error = model / published - 1)\n")
    print(format_table(["profile", "kernel", "model", "published", "error", "bound", "source"],
                       validation_rows(), align="llrrrll", markdown=True))
    for prof in ("gpu-h100-sxm", "gpu-a100-sxm"):
        sms = load_profile(prof).compute.sm_count
        print(f"\n2. Wave quantisation: bf16 GEMM M = K = 4096 on {prof}, block tile pinned to "
              f"128x256x64 ({sms} SMs x 1 block/SM per wave; compute = the busiest SM, "
              f"L2 = the L2->SMEM link)\n")
        print(format_table(["N", "blocks", "blocks/SM", "waves", "tail eff", "compute us",
                            "L2 us", "time us", "TFLOP/s", ""], wave_rows(prof),
                           align="rrrrrrrrrl", markdown=True))
    print("\n3. Square bf16 GEMMs on gpu-h100-sxm, block tile chosen by the policy\n")
    print(format_table(["M=N=K", "block tile", "blocks", "waves", "tail eff", "time us",
                        "TFLOP/s", "bound"], policy_rows(), align="rlrrrrrl", markdown=True))
    print(f"\n({time.perf_counter() - start:.1f} s)")
    if args.measure:
        measure()


if __name__ == "__main__":
    main()
