"""The pass contract, enforced by the base class (after onnx-ir's ``_pass_infra``).

A pass declares its ``name``, a one-line ``description``, whether it works ``in_place`` or
returns a new graph, its typed ``options`` (an attrs class), and the analyses it ``preserves``.
``Pass.__call__`` runs ``requires`` -> ``run`` -> ``ensures`` and checks the in-place
declaration, so a pass body only does its rewrite and returns a :class:`PassResult` with a
``modified`` flag and counters (``fused=12, skipped=3``).

The smallest pass is a decorated function::

    @function_pass("drop-identity", "remove Identity ops")
    def drop_identity(graph: Graph, options) -> dict:
        ...
        return {"removed": n}      # or a bool / int: "changed something"
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import attrs

from tensorir.errors import PassError
from tensorir.ir import Graph


@attrs.frozen
class NoOptions:
    """Options of a pass that takes none."""


@attrs.define
class PassResult:
    graph: Graph
    modified: bool
    stats: dict[str, int] = attrs.field(factory=dict)


class Pass:
    """Base class of every pass. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    in_place: ClassVar[bool] = True
    preserves: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type] = NoOptions

    def __init__(self, **options: Any) -> None:
        try:
            self.options = self.Options(**options)
        except TypeError as exc:
            known = ", ".join(f.name for f in attrs.fields(self.Options)) or "none"
            raise PassError(f"pass {self.name!r}: bad options {options}: {exc} (options: "
                            f"{known})", self.name) from None

    # -- the three parts a pass may define
    def requires(self, graph: Graph) -> None:
        """Raise PassError when the graph does not meet this pass's precondition."""

    def run(self, graph: Graph) -> PassResult:
        raise NotImplementedError

    def ensures(self, graph: Graph) -> None:
        """Raise PassError when the result misses this pass's postcondition."""

    # -- enforced contract
    def __call__(self, graph: Graph) -> PassResult:
        self.requires(graph)
        result = self.run(graph)
        if not isinstance(result, PassResult):
            raise PassError(f"pass {self.name!r} returned {type(result).__name__}, not a "
                            f"PassResult", self.name)
        if self.in_place and result.graph is not graph:
            raise PassError(f"pass {self.name!r} is declared in place but returned a new "
                            f"graph", self.name)
        if not self.in_place and result.graph is graph:
            raise PassError(f"pass {self.name!r} is declared not in place but returned its "
                            f"input graph", self.name)
        self.ensures(result.graph)
        return result

    def spec(self) -> str:
        """This pass with its non-default options, in pipeline syntax (``fuse{max-ops=8}``)."""
        defaults = self.Options()
        changed = {f.name: getattr(self.options, f.name) for f in attrs.fields(self.Options)
                   if getattr(self.options, f.name) != getattr(defaults, f.name)}
        if not changed:
            return self.name
        body = ",".join(f"{k.replace('_', '-')}={_format_option(v)}" for k, v in changed.items())
        return f"{self.name}{{{body}}}"

    def __repr__(self) -> str:
        return f"<pass {self.spec()}>"


def _format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available to pipelines by its name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise ValueError(f"a pass named {cls.name!r} is already registered")
    _PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    try:
        return _PASSES[name]
    except KeyError:
        raise PassError(f"unknown pass {name!r}; known passes: "
                        f"{', '.join(sorted(_PASSES))}", name) from None


def registered_passes() -> dict[str, type[Pass]]:
    return dict(sorted(_PASSES.items()))


def _stats_of(outcome: Any) -> tuple[bool, dict[str, int]]:
    if isinstance(outcome, Mapping):
        stats = {k: int(v) for k, v in outcome.items()}
        return any(stats.values()), stats
    if isinstance(outcome, bool):
        return outcome, {}
    if isinstance(outcome, int):
        return outcome > 0, {"changes": outcome}
    raise PassError(f"a function pass must return a dict of counters, a bool or an int, not "
                    f"{type(outcome).__name__}")


def function_pass(name: str, description: str = "", *, options: type = NoOptions,
                  preserves: frozenset[str] = frozenset(),
                  register: bool = True) -> Callable[[Callable], type[Pass]]:
    """Turn ``fn(graph, options) -> dict | bool | int`` into an in-place pass class."""

    def wrap(fn: Callable[[Graph, Any], Any]) -> type[Pass]:
        def run(self: Pass, graph: Graph) -> PassResult:
            modified, stats = _stats_of(fn(graph, self.options))
            return PassResult(graph, modified, stats)

        cls = type(fn.__name__, (Pass,), {
            "name": name, "description": description or (fn.__doc__ or "").strip().split("\n")[0],
            "in_place": True, "preserves": frozenset(preserves), "Options": options,
            "run": run, "__doc__": fn.__doc__, "__module__": fn.__module__})
        return register_pass(cls) if register else cls

    return wrap
