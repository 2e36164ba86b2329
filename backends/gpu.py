"""The gpu backend (a first, roofline-level compute model; see the module to come)."""

from __future__ import annotations

from tensorir.ir import Op
from tensorir.kernel import KernelDomain
from tensorir.schedule import KernelSchedule

from .cost import KernelCost, finish, kernel_dtype, kernel_traffic
from .profile import HardwareProfile


def kernel_cost(op: Op, ks: KernelSchedule, kd: KernelDomain | None,
                profile: HardwareProfile) -> KernelCost:
    links = kernel_traffic(op, ks, profile, kd)
    from tensorir.ops.registry import op_flops
    flops = op_flops(op)
    flops = flops if isinstance(flops, int) else 0
    try:
        peak = profile.peak_flops(kernel_dtype(op))
    except Exception:
        peak = profile.peak_flops("f32")
    return finish(op, ks, profile, flops / peak, links)
