"""One report for every simulation: ``backends.simulate`` returns a :class:`Report`.

A report holds one :class:`~backends.cost.KernelCost` per kernel, in execution order (kernels
run one after another), and the memory occupancy of the lowered program. Totals are sums over
kernels; the model, not the report, decides what overlaps inside a kernel. Exports: JSON, CSV
(a row per kernel), Markdown (summary and kernel table), a Chrome/Perfetto trace of the
timeline (``chrome://tracing`` or https://ui.perfetto.dev) and an ASCII timeline.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Mapping

import attrs

from tensorir.table import binary_bytes, format_table, si

from .cost import KernelCost, link_name


def _si(x: float, unit: str) -> str:
    return si(x, unit)


def _time(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.2f} us"


@attrs.frozen
class Report:
    model: str
    profile: str
    kind: str
    clock_hz: float
    kernels: tuple[KernelCost, ...]
    levels: tuple[str, ...]                     # innermost first, main memory last
    occupancy: tuple[Mapping[str, Any], ...] = ()
    peak_bytes: Mapping[str, int] = attrs.field(factory=dict)
    capacity_bytes: Mapping[str, int] = attrs.field(factory=dict)

    # -- totals
    @property
    def latency_s(self) -> float:
        return sum(k.time_s for k in self.kernels)

    @property
    def cycles(self) -> int:
        return round(self.latency_s * self.clock_hz)

    @property
    def throughput(self) -> float:
        """Inferences per second, one after another."""
        return 1.0 / self.latency_s if self.latency_s else 0.0

    @property
    def flops(self) -> int:
        return sum(k.flops for k in self.kernels)

    @property
    def energy_j(self) -> float:
        return sum(k.energy_j for k in self.kernels)

    @property
    def achieved_flops(self) -> float:
        return self.flops / self.latency_s if self.latency_s else 0.0

    def bytes_by_level(self) -> dict[str, dict[str, int]]:
        """Bytes read from and written to each level over the whole run."""
        out = {lv: {"read": 0, "written": 0} for lv in self.levels}
        for k in self.kernels:
            for (outer, inner), b in k.links.items():
                out[outer]["read"] += b.down
                out[inner]["written"] += b.down
                out[inner]["read"] += b.up
                out[outer]["written"] += b.up
        return out

    def bound_summary(self) -> dict[str, float]:
        """Seconds spent in kernels bound by each resource."""
        out: dict[str, float] = {}
        for k in self.kernels:
            out[k.bound] = out.get(k.bound, 0.0) + k.time_s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    @property
    def bound(self) -> str:
        summary = self.bound_summary()
        return next(iter(summary)) if summary else "-"

    # -- exports
    def kernel_rows(self) -> list[dict[str, Any]]:
        start = 0.0
        rows = []
        for k in self.kernels:
            row = {"kernel": k.name, "op": k.op_type, "start_s": start, "time_s": k.time_s,
                   "flops": k.flops, "dtype": k.dtype, "bound": k.bound,
                   "utilisation": k.utilisation, "energy_j": k.energy_j,
                   "compute_s": k.compute_s}
            for link, b in k.links.items():
                row[f"bytes {link_name(link)}"] = b.total
            for key, v in k.breakdown.items():
                row[key] = v
            rows.append(row)
            start += k.time_s
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "profile": self.profile, "kind": self.kind,
                "latency_s": self.latency_s, "cycles": self.cycles,
                "throughput_per_s": self.throughput, "flops": self.flops,
                "energy_j": self.energy_j, "bound": self.bound,
                "bound_summary_s": self.bound_summary(),
                "bytes_by_level": self.bytes_by_level(),
                "peak_bytes": dict(self.peak_bytes), "capacity_bytes": dict(self.capacity_bytes),
                "kernels": self.kernel_rows(), "occupancy": list(self.occupancy)}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        rows = self.kernel_rows()
        columns: list[str] = []
        for r in rows:
            columns += [c for c in r if c not in columns]
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return out.getvalue()

    def summary_rows(self) -> list[list[str]]:
        return [["latency", _time(self.latency_s)], ["cycles", f"{self.cycles:,}"],
                ["throughput", f"{self.throughput:.1f} /s"],
                ["FLOPs", _si(self.flops, "FLOP")],
                ["achieved", _si(self.achieved_flops, "FLOP/s")],
                ["energy", f"{self.energy_j * 1e3:.3f} mJ"], ["bound", self.bound]] + [
            [f"peak {lv}", binary_bytes(b)] for lv, b in self.peak_bytes.items()]

    def to_markdown(self, top: int | None = 20) -> str:
        """A summary and the kernels (the ``top`` slowest, all if None) as Markdown tables."""
        head = f"### {self.model} on {self.profile}\n\n"
        summary = format_table(["", "value"], self.summary_rows(), align="lr", markdown=True)
        kernels = sorted(self.kernels, key=lambda k: -k.time_s)[:top] if top else self.kernels
        rows = [[k.name, k.op_type, _time(k.time_s), _si(k.flops, "FLOP"), k.bound,
                 f"{k.utilisation * 100:.1f}%",
                 _si(sum(b.total for link, b in k.links.items()
                         if link[0] == self.levels[-1]), "B")] for k in kernels]
        table = format_table(["kernel", "op", "time", "FLOPs", "bound", "util",
                              f"{self.levels[-1]} bytes"], rows, align="llrrlrr",
                             markdown=True)
        return head + summary + "\n\n" + table + "\n"

    def to_trace(self) -> str:
        """Chrome/Perfetto trace JSON: a complete event per kernel (microseconds), and counters
        of the bytes each level holds."""
        events = [{"name": "process_name", "ph": "M", "pid": 0,
                   "args": {"name": f"{self.model} on {self.profile}"}}]
        for row in self.kernel_rows():
            events.append({"name": row["op"], "cat": row["bound"], "ph": "X", "pid": 0,
                           "tid": 0, "ts": row["start_s"] * 1e6, "dur": row["time_s"] * 1e6,
                           "args": {k: v for k, v in row.items()
                                    if k not in ("start_s", "time_s")}})
        starts = {r["kernel"]: r["start_s"] for r in self.kernel_rows()}
        for occ in self.occupancy:
            if occ["kernel"] in starts:
                events.append({"name": f"{occ['level']} bytes", "ph": "C", "pid": 0,
                               "ts": starts[occ["kernel"]] * 1e6,
                               "args": {"bytes": occ["bytes"]}})
        return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"})

    def timeline(self, width: int = 72, top: int = 12) -> str:
        """An ASCII timeline: the run as a bar of kernels (letters by bound), then the
        slowest kernels."""
        total = self.latency_s or 1.0
        bounds = list(self.bound_summary())
        letters = {b: chr(ord("A") + i) for i, b in enumerate(bounds)}
        bar = []
        for k in self.kernels:
            n = max(1, round(k.time_s / total * width)) if k.time_s / total > 0.5 / width else 0
            bar.append(letters[k.bound] * n)
        lines = [f"{self.model} on {self.profile}: {_time(self.latency_s)}",
                 "|" + "".join(bar)[:width * 2] + "|",
                 "  " + "  ".join(f"{letters[b]} = {b} ({self.bound_summary()[b] / total:.0%})"
                                  for b in bounds)]
        for k in sorted(self.kernels, key=lambda k: -k.time_s)[:top]:
            n = max(1, round(k.time_s / total * width))
            lines.append(f"  {k.name[-28:]:>28} {'#' * n} {_time(k.time_s)} ({k.bound})")
        return "\n".join(lines)
