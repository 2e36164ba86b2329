"""The PassManager: runs a pipeline, times and counts every pass, calls the instruments.

>>> from passes import PassManager
>>> from frontends.zoo import mlp_mixer
>>> result = PassManager("dce").run(mlp_mixer("S/32", layers=1))
>>> [r.name for r in result.records]
['dce']

A pass that raises, or whose result fails verification, stops the pipeline with a
:class:`PassError` naming it and the passes run before it, after a reproducer was written: the
IR the failing pass was given (``.tir``, its constants in ``.npz``) with the command that
replays the rest of the pipeline.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Collection, Sequence

import attrs

from tensorir.constants_io import save_constants
from tensorir.errors import PassError
from tensorir.ir import Graph, GraphSnapshot
from tensorir.printer import print_graph
from tensorir.table import format_table

from .base import Pass, PassResult
from .instruments import DumpIRInstrument, PassInstrument, VerifyInstrument
from .pipeline import format_pipeline, resolve


@attrs.define
class PassRecord:
    """What one pass did: its spec, wall time, op counts before and after, and its counters."""

    name: str
    seconds: float
    ops_before: int
    ops_after: int
    modified: bool
    stats: dict[str, int]


@attrs.define
class PipelineResult:
    graph: Graph
    records: list[PassRecord]

    @property
    def modified(self) -> bool:
        return any(r.modified for r in self.records)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def table(self) -> str:
        """Per-pass time, op counts and counters, plus the total."""
        rows = [[r.name, f"{r.seconds * 1e3:.1f}", r.ops_before, r.ops_after,
                 "yes" if r.modified else "no",
                 ", ".join(f"{k}={v}" for k, v in r.stats.items() if v)] for r in self.records]
        rows.append(["total", f"{self.seconds * 1e3:.1f}",
                     self.records[0].ops_before if self.records else "",
                     self.records[-1].ops_after if self.records else "", "", ""])
        return format_table(["pass", "ms", "ops before", "ops after", "changed", "statistics"],
                            rows, align="lrrrll")


class PassManager:
    """Runs passes in order with verification, dumps, timing and a reproducer on failure."""

    def __init__(self, pipeline: str | Sequence[Pass | str], *, verify: bool = True,
                 dump_ir: str | None = None, dump_only_changed: bool = False,
                 dump_passes: Collection[str] | None = None, dump_diff: bool = False,
                 instruments: Sequence[PassInstrument] = (), reproducer: bool = True,
                 reproducer_dir: str | None = None) -> None:
        self.passes = resolve(pipeline)
        self.instruments: list[PassInstrument] = []
        if verify:
            self.instruments.append(VerifyInstrument())
        self.dumper = None
        if dump_ir is not None:
            self.dumper = DumpIRInstrument(dump_ir, dump_only_changed, dump_passes, dump_diff)
            self.instruments.append(self.dumper)
        self.instruments.extend(instruments)
        self.reproducer = reproducer
        self.reproducer_dir = reproducer_dir or dump_ir

    @property
    def pipeline(self) -> str:
        return format_pipeline(self.passes)

    def run(self, graph: Graph) -> PipelineResult:
        for inst in self.instruments:
            inst.enter_pipeline(graph, self.passes)
        records: list[PassRecord] = []
        for index, p in enumerate(self.passes, start=1):
            ops_before = len(graph)
            # an in-place pass may leave a half-rewritten graph: keep what it was given
            given = graph.snapshot() if (self.reproducer and p.in_place) else graph
            try:
                for inst in self.instruments:
                    inst.before_pass(index, p, graph)
                start = time.perf_counter()
                result: PassResult = p(graph)
                seconds = time.perf_counter() - start
                record = PassRecord(p.spec(), seconds, ops_before, len(result.graph),
                                    result.modified, dict(result.stats))
                for inst in self.instruments:
                    inst.after_pass(index, p, result, record)
            except Exception as exc:
                for inst in self.instruments:
                    inst.pass_failed(index, p, graph, exc)
                raise self._failure(index, p, given, exc, records) from exc
            graph = result.graph
            records.append(record)
        outcome = PipelineResult(graph, records)
        for inst in self.instruments:
            inst.exit_pipeline(outcome)
        return outcome

    def _failure(self, index: int, p: Pass, given: Graph | GraphSnapshot, exc: Exception,
                 records: list[PassRecord]) -> PassError:
        ran = tuple(r.name for r in records)
        before = ", ".join(ran) or "nothing"
        if not self.reproducer:
            return PassError(f"pass {p.spec()!r} failed (after {before}): "
                             f"{type(exc).__name__}: {exc}", p.name, ran)
        if isinstance(given, GraphSnapshot):
            given = given.restore()
        rest = format_pipeline(self.passes[index - 1:])
        directory = self.reproducer_dir or tempfile.mkdtemp(prefix="tensorir-repro-")
        os.makedirs(directory, exist_ok=True)
        stem = os.path.join(directory, f"repro-{index:02d}-{p.name}")
        with open(stem + ".tir", "w", encoding="utf-8") as f:
            f.write(f"# reproducer: pass {p.spec()!r} (number {index}) failed\n")
            f.write(f"# ran before it: {', '.join(ran) or 'nothing'}\n")
            f.write(f"# replay: tensorir compile {stem}.tir --weights {stem}.npz "
                    f"--pipeline \"{rest}\"\n")
            for line in f"{type(exc).__name__}: {exc}".splitlines():
                f.write(f"# {line}\n")
            f.write(print_graph(given))
        save_constants(given, stem + ".npz")
        return PassError(f"pass {p.spec()!r} failed (after {before}): {type(exc).__name__}: "
                         f"{exc}\nreproducer: {stem}.tir (replay with: tensorir compile "
                         f"{stem}.tir --weights {stem}.npz --pipeline \"{rest}\")",
                         p.name, ran, stem + ".tir")
