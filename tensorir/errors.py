"""One small exception hierarchy for everything a user can get wrong.

Every error the project raises on bad input derives from :class:`TensorIRError`, so callers can
catch one type. Messages say what was expected, what was found and where.
"""

from __future__ import annotations

from typing import Sequence


class TensorIRError(Exception):
    """Base class of every error tensorir raises on bad input."""


class InvalidOpError(TensorIRError):
    """An op is malformed: wrong number of operands, a missing or ill-typed attribute."""


class ShapeError(InvalidOpError):
    """A type rule rejected its operands (names the op, the operand and the shapes)."""


class UnboundDimError(ShapeError):
    """A computation needed a concrete size but found a symbolic dimension."""


class UnknownOpError(TensorIRError):
    """An op type is not in the registry."""


class UnsupportedOpsError(TensorIRError):
    """A model uses op types the registry does not know; lists all of them with counts."""

    def __init__(self, counts: dict[str, int], first_nodes: dict[str, str] | None = None,
                 where: str = "model") -> None:
        self.counts = dict(counts)
        self.first_nodes = dict(first_nodes or {})
        lines = [f"{where} uses {len(self.counts)} unsupported op type(s):"]
        for op_type, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            first = self.first_nodes.get(op_type)
            at = f" (first: {first!r})" if first else ""
            lines.append(f"  {op_type} x{n}{at}")
        super().__init__("\n".join(lines))


class ModelLoadError(TensorIRError):
    """A model file is missing, unreadable, not ONNX, truncated or otherwise malformed."""


class ProfileError(TensorIRError):
    """A target or hardware profile is invalid; names the file and the field."""


class GraphError(TensorIRError):
    """A graph mutation was illegal (unknown value, value still in use, name clash ...)."""


class ViewError(TensorIRError):
    """A tensor view operation is impossible (out of bounds, reshape needing a copy ...)."""


class InterpreterError(TensorIRError):
    """The interpreter was given bad inputs or met a graph it cannot run."""


class PassError(TensorIRError):
    """A pass failed, broke its contract, or left an invalid graph; names the pass and what ran
    before it, and where the reproducer was written."""

    def __init__(self, message: str, pass_name: str = "", ran_before: tuple = (),
                 reproducer: str | None = None) -> None:
        self.pass_name = pass_name
        self.ran_before = tuple(ran_before)
        self.reproducer = reproducer
        super().__init__(message)


class ParseError(TensorIRError):
    """The text form could not be read; carries the line and column of the problem."""

    def __init__(self, message: str, line: int, column: int, source: str = "<text>") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        super().__init__(f"{source}:{line}:{column}: {message}")


class VerificationError(TensorIRError):
    """The verifier found problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[str], graph_name: str = "graph") -> None:
        self.problems = list(problems)
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{graph_name}: {len(self.problems)} verification problem(s):\n{body}")
