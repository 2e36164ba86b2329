"""Roofline plots of simulation reports (needs the ``plot`` extra: ``pip install -e '.[plot]'``).

One point per kernel at (arithmetic intensity = FLOPs / main-memory bytes, achieved FLOP/s),
under the profile's roofs: the compute peak of the report's dtype and one bandwidth slope per
link (main memory's and each on-chip level's). A kernel on a slope is bound by that link; one
under the flat roof is bound by compute.
"""

from __future__ import annotations

import os

from tensorir.errors import TensorIRError

from .profile import HardwareProfile, load_profile
from .report import Report


def roofline_points(report: Report) -> list[tuple[str, float, float, str]]:
    """(kernel, FLOPs per main-memory byte, achieved FLOP/s, bound) for kernels with FLOPs."""
    main = report.levels[-1]
    out = []
    for k in report.kernels:
        dram = sum(b.total for link, b in k.links.items() if link[0] == main)
        if k.flops and dram and k.time_s:
            out.append((k.name, k.flops / dram, k.flops / k.time_s, k.bound))
    return out


def roofline_plot(report: Report, path: str | os.PathLike,
                  profile: HardwareProfile | str | None = None, dtype: str = "f32") -> str:
    """Write the roofline of ``report`` to ``path`` (PNG, SVG or PDF by extension)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TensorIRError("roofline plots need matplotlib: pip install -e '.[plot]'") from None
    profile = load_profile(profile or report.profile)
    points = roofline_points(report)
    peak = profile.peak_flops(dtype)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [p[1] for p in points] or [1.0]
    lo, hi = min(xs) / 4, max(xs) * 4
    for outer, inner in zip([lv.name for lv in reversed(profile.levels)],
                            [lv.name for lv in reversed(profile.levels)][1:]):
        bw = profile.bandwidth(outer, inner)
        ridge = peak / bw
        ax.plot([lo, ridge, hi], [bw * lo, peak, peak], lw=1,
                label=f"{outer}->{inner} {bw / 1e9:.0f} GB/s")
    bounds = sorted({p[3] for p in points})
    for b in bounds:
        sel = [p for p in points if p[3] == b]
        ax.scatter([p[1] for p in sel], [p[2] for p in sel], s=14, label=f"bound: {b}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"FLOPs per {report.levels[-1]} byte")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"{report.model} on {profile.name} (peak {peak / 1e12:.1f} TFLOP/s {dtype})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
    return os.fspath(path)
