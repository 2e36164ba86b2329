"""Pass instruments: hooks the PassManager calls around every pass (after TVM's instrument.py).

Each hook of :class:`PassInstrument` is a documented no-op; an instrument overrides the ones it
needs. Verification and IR dumps are instruments, never code inside passes.
"""

from __future__ import annotations

import difflib
import os
from typing import TYPE_CHECKING, Collection, Sequence

from tensorir.ir import Graph
from tensorir.printer import print_graph
from tensorir.verifier import verify

if TYPE_CHECKING:
    from .base import Pass, PassResult
    from .manager import PassRecord, PipelineResult


class PassInstrument:
    """Base class: every hook does nothing."""

    def enter_pipeline(self, graph: Graph, passes: Sequence["Pass"]) -> None:
        """Called once before the first pass with the input graph and the passes to run."""

    def before_pass(self, index: int, p: "Pass", graph: Graph) -> None:
        """Called before pass number ``index`` (1-based) runs on ``graph``."""

    def after_pass(self, index: int, p: "Pass", result: "PassResult", record: "PassRecord") -> None:
        """Called after a pass returned; may raise to fail the pipeline at this pass."""

    def pass_failed(self, index: int, p: "Pass", graph: Graph, error: BaseException) -> None:
        """Called when a pass (or an instrument's after_pass) raised."""

    def exit_pipeline(self, result: "PipelineResult") -> None:
        """Called once after the last pass."""


class VerifyInstrument(PassInstrument):
    """Runs the verifier after every pass (the manager's ``verify=True``)."""

    def enter_pipeline(self, graph: Graph, passes: Sequence["Pass"]) -> None:
        verify(graph)

    def after_pass(self, index, p, result, record) -> None:
        verify(result.graph)


class DumpIRInstrument(PassInstrument):
    """Writes ``00-input.tir`` and ``NN-<pass>.tir`` after each pass into ``directory``.

    ``only_changed`` skips passes that reported no change; ``passes`` limits the dumps to the
    named passes; ``diff`` also writes ``NN-<pass>.diff``, a unified diff against the IR the
    pass was given.
    """

    def __init__(self, directory: str, only_changed: bool = False,
                 passes: Collection[str] | None = None, diff: bool = False) -> None:
        self.directory = directory
        self.only_changed = only_changed
        self.passes = set(passes) if passes else None
        self.diff = diff
        self.written: list[str] = []
        self._previous = ""

    def _write(self, name: str, text: str) -> None:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.written.append(path)

    def enter_pipeline(self, graph: Graph, passes: Sequence["Pass"]) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._previous = print_graph(graph)
        self._write("00-input.tir", self._previous)

    def after_pass(self, index, p, result, record) -> None:
        text = print_graph(result.graph)
        wanted = (self.passes is None or p.name in self.passes) and \
            (result.modified or not self.only_changed)
        if wanted:
            stem = f"{index:02d}-{p.name}"
            self._write(stem + ".tir", text)
            if self.diff:
                diff = difflib.unified_diff(self._previous.splitlines(True), text.splitlines(True),
                                            f"before {p.name}", f"after {p.name}")
                self._write(stem + ".diff", "".join(diff))
        self._previous = text
