"""Systolic-array cycle model: SCALE-Sim's golden reports, the Stillwater KPU figures, dataflows.

    python benchmarks/systolic.py

Prints three markdown tables (docs/kpu.md quotes them):

1. SCALE-Sim v2's own golden COMPUTE_REPORT.csv rows (scalesim-project/scale-sim-v2, test/),
   beside :func:`backends.systolic.scalesim_cycles`. The golden GEMM runs use a user DRAM
   bandwidth, so their totals include memory stalls; total - stalls is the stall-free compute
   that the model reproduces.
2. The 16 x 16 output-stationary array beside the Stillwater KPU simulator's published figures
   (64^3 GEMM: 1,792 cycles; 1024^3: about 4.4 M cycles at 96 % utilisation).
3. Every dataflow, SCALE-Sim mode against the KPU mode, on a few shapes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.systolic import (DATAFLOWS, conv_as_gemm, kpu_cycles,  # noqa: E402
                               scalesim_cycles, stillwater_serial_tile_cycles)

ALEXNET_CONV1 = conv_as_gemm(224, 224, 11, 11, 3, 96, 4)[:3]

# name, dataflow, GEMM, golden Total Cycles, Stall Cycles, Mapping %, Compute Util %, source
GOLDEN = [
    ("GEMM 256x128x256", "os", (256, 128, 256), 52447, 42272, 100.0, 80.50314465408806,
     "test/general/golden_trace_user_os"),
    ("GEMM 256x128x256", "ws", (256, 128, 256), 52447, 41248, 100.0, 67.19160104986877,
     "test/general/golden_trace_user_ws"),
    ("GEMM 256x128x256", "is", (256, 128, 256), 19984, 5777, 100.0, 50.59288537549407,
     "test/general/golden_trace_user_is"),
    ("AlexNet conv1", "ws", ALEXNET_CONV1, 112283, 0, 94.53125, 90.78000992063485,
     "test/golden_trace"),
]

STILLWATER = [(64, 1792, "1,792"), (1024, None, "about 4.4 M at 96 %")]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def pct(x):
    return f"{100 * x:.2f} %"


def golden_table():
    rows = []
    for name, df, gemm, total, stalls, mapping, compute, src in GOLDEN:
        r = scalesim_cycles(*gemm, 32, 32, df)
        rep = r.scalesim_report(stall_cycles=stalls)
        ok = (r.scalesim_total_cycles == total - stalls
              and abs(rep["Compute Util %"] - compute) < 1e-9
              and abs(rep["Mapping Efficiency %"] - mapping) < 1e-9)
        rows.append([f"{name} ({src})", df, "x".join(map(str, gemm)), f"{total:,}",
                     f"{stalls:,}", f"{total - stalls:,}",
                     f"{r.folds} x {r.fold_cycles} - 1 = {r.scalesim_total_cycles:,}",
                     f"{compute:.4f} / {rep['Compute Util %']:.4f}",
                     f"{mapping:.4f} / {rep['Mapping Efficiency %']:.4f}",
                     "yes" if ok else "NO"])
    return table(["SCALE-Sim golden run", "df", "M x N x K", "golden Total", "golden Stall",
                  "golden Total - Stall", "ours F x L - 1", "Compute Util % golden / ours",
                  "Mapping % golden / ours", "match"], rows)


def stillwater_table():
    rows = []
    for n, _, published in STILLWATER:
        macs = n ** 3
        ideal = macs // 256
        s = scalesim_cycles(n, n, n, 16, 16, "os")
        k0 = kpu_cycles(n, n, n, 16, 16, "os", overlap=False)
        k1 = kpu_cycles(n, n, n, 16, 16, "os")
        serial = stillwater_serial_tile_cycles(n, n, n, 16, 16)
        rows.append([f"{n}^3", f"{ideal:,}", published,
                     f"{serial:,} ({pct(macs / (256 * serial))})",
                     f"{s.cycles:,} / {s.scalesim_total_cycles:,} ({pct(s.utilisation)})",
                     f"{k0.cycles:,} ({pct(k0.utilisation)})",
                     f"{k1.cycles:,} ({pct(k1.utilisation)})"])
    return table(["GEMM", "roofline MACs/256", "Stillwater published",
                  "tiles x (K + 2R + C)", "SCALE-Sim os: busy / printed",
                  "KPU os, overlap=False", "KPU os, overlap=True (default)"], rows)


def dataflow_table():
    shapes = [("GEMM 64^3", (64, 64, 64)), ("GEMM 1024^3", (1024, 1024, 1024)),
              ("GEMM 4x1024x1024 (M=4)", (4, 1024, 1024)),
              ("AlexNet conv1 (3025x96x363)", ALEXNET_CONV1)]
    rows = []
    for size in (16, 32):
        for name, gemm in shapes:
            row = [f"{size}x{size}", name]
            for df in DATAFLOWS:
                s = scalesim_cycles(*gemm, size, size, df)
                k = kpu_cycles(*gemm, size, size, df)
                row.append(f"{s.cycles:,} / {k.cycles:,} ({pct(k.utilisation)})")
            rows.append(row)
    return table(["array", "problem"] + [f"{df}: SCALE-Sim / KPU (KPU util)"
                                         for df in DATAFLOWS], rows)


def main():
    print("$ python benchmarks/systolic.py\n")
    print("SCALE-Sim v2 golden compute reports (32 x 32 array) against scalesim_cycles:\n")
    print(golden_table())
    print("\n16 x 16 output-stationary array (cycles, utilisation = MACs / (256 x cycles)):\n")
    print(stillwater_table())
    print("\nAll dataflows, SCALE-Sim mode (busy cycles F x L) / KPU mode (overlapped):\n")
    print(dataflow_table())


if __name__ == "__main__":
    main()
