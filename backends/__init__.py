"""Simulator backends: hardware profiles, the CPU, KPU and GPU models, one Report, compare.

>>> from backends import simulate, compare
>>> from frontends.python import GraphBuilder
>>> b = GraphBuilder("mlp", seed=0)
>>> g = b.build(b.relu(b.matmul(b.input("x", [64, 256]), b.weight("w", [256, 128]))))
>>> report = simulate(g, "kpu-16x16")
>>> report.latency_s > 0 and report.flops == 2 * 64 * 256 * 128 + 64 * 128  # MACs + ReLU
True
"""

from .profile import HardwareProfile, list_presets, load_profile
from .report import Report
from .simulate import Comparison, compare, simulate

__all__ = ["Comparison", "HardwareProfile", "Report", "compare", "list_presets", "load_profile",
           "simulate"]
