"""ONNX conformance: onnx's own node test cases through the ONNX frontend and the interpreter.

    python benchmarks/onnx_conformance.py                 # every case: per-op table, failures
    python benchmarks/onnx_conformance.py --op Conv,Pad   # a subset (--op is repeatable)
    python benchmarks/onnx_conformance.py --markdown      # the same report as Markdown
    python benchmarks/onnx_conformance.py --update-docs   # rewrite docs/onnx_conformance.md's table

Each case of ``onnx.backend.test.case.node.collect_testcases`` (a model, data sets of inputs and
expected outputs, tolerances) is loaded with ``frontends.onnx.load`` and run with
``tensorir.interpret``; every output must have the expected shape and dtype and match the
expected values: integer and boolean outputs exactly, floating ones within the case's
``rtol``/``atol`` (default 1e-3 and 1e-7, like onnx's backend runner; bfloat16 outputs at
least two bfloat16 ULPs, as there). A case is

- **pass**: every output of every data set matches;
- **fail**: a wrong value, shape or dtype, or a typed tensorir error on an op the registry
  claims (the reason is recorded), or any other exception ("crash: ...", a bug; also when a
  typed error only wraps one, as the interpreter does for an op's NumPy error);
- **unsupported**: the model uses an op type the registry does not claim, a dtype tensorir
  lacks (string, float8, uint16, complex ...), a non-tensor value (sequences, optionals), or a
  feature the docs list as unsupported (:data:`UNSUPPORTED_FEATURES`); the reason is recorded.

**Specialisation.** tensorir's types are static, so an operand that fixes a result's shape
(Reshape's shape, Slice's starts, reduction axes, Pad's pads, Range's bounds ...) must be a
constant. onnx's cases feed those as graph inputs; when the import fails because such an
operand is computed at run time, the graph inputs it is computed from become initializers
holding the data set's values (the form exported models have) and the import is retried. The
op itself still runs, on the same values.

Cases are grouped by op type: a one-node case under its node's op, an expanded function case
(``test_X_expanded``, ``test_X_expanded_ver18``: the op's function body, several nodes) under
the op of its unexpanded twin ``test_X``. Ops outside the default ONNX domain are named with
their domain (``ai.onnx.ml.Binarizer``). An unclaimed op's row can hold passes and failures:
its expanded cases run on claimed ops, so a failure there is a bug in one of those.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from frontends.onnx import load  # noqa: E402
from tensorir import interpret  # noqa: E402
from tensorir.errors import TensorIRError, UnsupportedOpsError  # noqa: E402
from tensorir.ops.registry import is_registered  # noqa: E402

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7
EXPANDED = re.compile(r"_expanded(_ver\d+)?$")
ONNX_DOMAINS = ("", "ai.onnx")

# Typed errors that name a feature tensorir documents as unsupported: (pattern, reason).
# Each is listed in docs/onnx_conformance.md; anything not matched here is a failure.
UNSUPPORTED_FEATURES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"ONNX element type \d+ \((\w+)\) has no tensorir equivalent"),
     "dtype {0}"),
    (re.compile(r"NumPy dtype (\S+) has no tensorir equivalent"), "dtype {0}"),
    (re.compile(r"holds a subgraph \(control flow\)"), "control flow (subgraph attribute)"),
    (re.compile(r"input '[^']*' is not a tensor"), "non-tensor input (sequence or optional)"),
    (re.compile(r"attribute to=\d+ \((\w+)\) is not a dtype tensorir supports"), "dtype {0}"),
    (re.compile(r"training-mode dropout is random"), "training-mode Dropout (random)"),
    (re.compile(r"training_mode=1 \(batch statistics, running-mean outputs\) is not supported"),
     "training-mode BatchNormalization"),
    (re.compile(r"uses its optional output\(s\) .*, which tensorir's (\w+) does not produce"),
     "{0}'s optional outputs"),
]


@dataclass
class CaseResult:
    name: str
    op: str
    status: str            # "pass", "fail" or "unsupported"
    reason: str = ""
    seconds: float = 0.0


@dataclass
class OpRow:
    op: str
    claimed: bool
    cases: int = 0
    passed: int = 0
    failed: int = 0
    unsupported: int = 0
    failures: list[CaseResult] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        """pass / (pass + fail); None when no case ran to a verdict."""
        judged = self.passed + self.failed
        return self.passed / judged if judged else None


# ------------------------------------------------------------------------------------- cases
def collect_cases() -> list:
    """onnx's node test cases (onnx's case generators warn about their own overflows)."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return list(collect_testcases(None))


def _node_op(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ONNX_DOMAINS else f"{node.domain}.{node.op_type}"


def case_ops(cases: Sequence) -> dict[str, str]:
    """The op type each case counts under, by case name (see the module doc)."""
    by_name = {c.name: c for c in cases}
    ops = {}
    for c in cases:
        base = by_name.get(EXPANDED.sub("", c.name), c)
        # the unexpanded twin's one node; failing that (none today), the case's first node
        nodes = base.model.graph.node if len(base.model.graph.node) == 1 else c.model.graph.node
        ops[c.name] = _node_op(nodes[0]) if nodes else "(no nodes)"
    return ops


def is_claimed(op: str) -> bool:
    """Whether the registry claims an ONNX op type (default domain only)."""
    return "." not in op and is_registered(op)


# ------------------------------------------------------------------------------------- running
def _as_array(item: Any) -> Any:
    if isinstance(item, onnx.TensorProto):
        return numpy_helper.to_array(item)
    if isinstance(item, np.generic):
        return np.asarray(item)
    return item


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype.name == "bfloat16"   # ml_dtypes' kinds are "V"


def compare(index: int, ours: Any, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """Why output ``index`` differs from the expected one, or None when it matches."""
    if not isinstance(ours, np.ndarray):
        return f"output {index}: got a {type(ours).__name__}, not an array"
    if ours.shape != want.shape:
        return f"output {index}: shape {list(ours.shape)}, expected {list(want.shape)}"
    if ours.dtype != want.dtype:
        return f"output {index}: dtype {ours.dtype}, expected {want.dtype}"
    if ours.size == 0:
        return None
    if not _is_float(want.dtype):   # integers (int4 included) and booleans: exactly
        bad = ours != want
        if not bad.any():
            return None
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        return (f"output {index}: {int(bad.sum())} of {want.size} {want.dtype} elements differ "
                f"(first at {list(where)}: {ours[where]} vs expected {want[where]})")
    if want.dtype.name == "bfloat16":
        rtol = max(rtol, 2.0 ** -6)
    a = ours.astype(np.float64)
    b = want.astype(np.float64)
    with np.errstate(all="ignore"):
        close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    where = tuple(int(i) for i in np.argwhere(~close)[0])
    with np.errstate(all="ignore"):
        err = np.where(close, 0.0, np.abs(a - b))
    return (f"output {index}: {int((~close).sum())} of {want.size} elements differ beyond "
            f"rtol={rtol:g} atol={atol:g} (max abs error {np.nanmax(err):.3g}; first at "
            f"{list(where)}: {a[where]:.9g} vs expected {b[where]:.9g})")


def _unsupported_reason(exc: TensorIRError) -> str | None:
    if isinstance(exc, UnsupportedOpsError):
        return "op(s) not claimed: " + ", ".join(sorted(exc.counts))
    text = str(exc)
    for pattern, reason in UNSUPPORTED_FEATURES:
        m = pattern.search(text)
        if m:
            return reason.format(*m.groups())
    return None


def _crash_in(exc: BaseException) -> BaseException | None:
    """The non-tensorir exception a typed error wraps (an op's evaluation or type rule that
    tripped over a NumPy error: the interpreter and ``infer_types`` re-raise those as their
    own), or None. Follows ``__cause__`` and re-raised typed errors' ``__context__``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if not isinstance(exc, TensorIRError):
            return exc
        if exc.__cause__ is not None:
            exc = exc.__cause__
        elif isinstance(exc.__context__, TensorIRError):
            exc = exc.__context__
        else:
            return None
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


NEEDS_CONSTANT = re.compile(r"node '([^']*)' \(\w+\): .*?operand (\d+)(?: \([^)]*\))?: "
                            r"must be a constant to infer the result type")


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose nodes all have names, so that an error names the node unambiguously."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    taken = {n.name for n in named.graph.node}
    for i, node in enumerate(named.graph.node):
        if not node.name:
            name = f"n{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return named


def _fan_in(model: onnx.ModelProto, tensor: str) -> set[str]:
    """The graph inputs that ``tensor`` is computed from."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inputs = {vi.name for vi in model.graph.input}
    found, todo, seen = set(), [tensor], set()
    while todo:
        name = todo.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inputs:
            found.add(name)
        elif name in producer:
            todo.extend(producer[name].input)
    return found


def _needs_constant(exc: TensorIRError, model: onnx.ModelProto) -> set[str]:
    """The graph inputs behind the operand an error says must be a constant (else empty)."""
    m = NEEDS_CONSTANT.search(str(exc))
    if not m:
        return set()
    node = next((n for n in model.graph.node if n.name == m.group(1)), None)
    operand = int(m.group(2))
    if node is None or operand >= len(node.input):
        return set()
    return _fan_in(model, node.input[operand])


def specialise(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``model`` with the named graph inputs turned into initializers holding ``values``."""
    if not values:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [vi for vi in out.graph.input if vi.name not in values]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name)
                                 for name, v in values.items())
    return out


def load_specialised(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                     frozen: set[str]):
    """Load ``model``; an input that a type rule needs as a constant (a shape, axes, pads ...)
    is frozen to its value in ``feeds`` and the load retried. ``frozen`` (updated in place)
    starts with the inputs frozen for an earlier data set."""
    while True:
        try:
            return load(specialise(model, {n: feeds[n] for n in frozen}))
        except TensorIRError as exc:
            need = _needs_constant(exc, model) - frozen
            if not need:
                raise
            frozen |= need


def run_case(case, op: str) -> CaseResult:
    """Load, run and compare one case; never raises."""
    start = time.perf_counter()

    def done(status: str, reason: str = "") -> CaseResult:
        return CaseResult(case.name, op, status, reason, time.perf_counter() - start)

    rtol = DEFAULT_RTOL if case.rtol is None else case.rtol
    atol = DEFAULT_ATOL if case.atol is None else case.atol
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            model = _named(case.model)
            init_names = {t.name for t in model.graph.initializer}
            input_names = [vi.name for vi in model.graph.input if vi.name not in init_names]
            frozen: set[str] = set()
            for inputs, expected in case.data_sets:
                inputs = [_as_array(x) for x in inputs]
                if any(not isinstance(x, np.ndarray) for x in inputs):
                    return done("unsupported", "non-tensor input (sequence or optional)")
                feeds = dict(zip(input_names, inputs))
                graph = load_specialised(model, feeds, frozen)
                out = interpret(graph, {n: v for n, v in feeds.items() if n not in frozen})
                ours = [out[v.name] for v in graph.outputs]
                expected = [_as_array(x) for x in expected]
                if len(ours) != len(expected):
                    return done("fail", f"{len(ours)} outputs, expected {len(expected)}")
                for i, (a, b) in enumerate(zip(ours, expected)):
                    if not isinstance(b, np.ndarray):
                        return done("unsupported", "non-tensor output (sequence or optional)")
                    why = compare(i, a, b, rtol, atol)
                    if why:
                        return done("fail", why)
    except TensorIRError as exc:
        reason = _unsupported_reason(exc)
        if reason is not None:
            return done("unsupported", reason)
        crash = _crash_in(exc)
        if crash is not None:
            return done("fail", f"crash: {type(crash).__name__}: {_one_line(crash)} "
                                f"(reported as {type(exc).__name__}: {_one_line(exc, 200)})")
        return done("fail", f"{type(exc).__name__}: {_one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - any other exception is a bug to report
        return done("fail", f"crash: {type(exc).__name__}: {_one_line(exc)}")
    return done("pass")


def select(cases: Sequence, ops: dict[str, str], only: Iterable[str] | None = None,
           claimed_only: bool = False) -> list:
    wanted = {o.lower() for o in only} if only else None
    return [c for c in cases
            if (wanted is None or ops[c.name].lower() in wanted)
            and (not claimed_only or is_claimed(ops[c.name]))]


def run_cases(cases: Sequence, ops: dict[str, str]) -> list[CaseResult]:
    return [run_case(c, ops[c.name]) for c in cases]


def summarize(results: Iterable[CaseResult]) -> list[OpRow]:
    rows: dict[str, OpRow] = {}
    for r in results:
        row = rows.setdefault(r.op, OpRow(r.op, is_claimed(r.op)))
        row.cases += 1
        if r.status == "pass":
            row.passed += 1
        elif r.status == "fail":
            row.failed += 1
            row.failures.append(r)
        else:
            row.unsupported += 1
    return sorted(rows.values(), key=lambda row: (not row.claimed, row.op.lower()))


# ------------------------------------------------------------------------------------- report
def _rate(row: OpRow) -> str:
    return "-" if row.rate is None else f"{100 * row.rate:.1f}%"


def _totals(rows: Sequence[OpRow]) -> OpRow:
    total = OpRow("total", True)
    for row in rows:
        total.cases += row.cases
        total.passed += row.passed
        total.failed += row.failed
        total.unsupported += row.unsupported
    return total


HEAD = ["op", "cases", "pass", "fail", "unsupported", "pass rate"]


def _cells(row: OpRow) -> list[str]:
    return [row.op, str(row.cases), str(row.passed), str(row.failed), str(row.unsupported),
            _rate(row)]


def _text_table(rows: Sequence[OpRow]) -> list[str]:
    cells = [HEAD] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    fmt = lambda c: "  ".join(x.ljust(w) if i == 0 else x.rjust(w)  # noqa: E731
                              for i, (x, w) in enumerate(zip(c, widths)))
    return [fmt(cells[0]), fmt(["-" * w for w in widths])] + [fmt(c) for c in cells[1:]]


def _md_table(rows: Sequence[OpRow]) -> list[str]:
    lines = ["| " + " | ".join(HEAD) + " |", "| --- |" + " ---: |" * (len(HEAD) - 1)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return lines


def report(results: Sequence[CaseResult], markdown: bool = False) -> str:
    """The per-op tables, the failures with their reasons and the unsupported cases by reason
    (deterministic: no timings, so the docs can hold it verbatim)."""
    rows = summarize(results)
    claimed = [r for r in rows if r.claimed]
    other = [r for r in rows if not r.claimed]
    table = _md_table if markdown else _text_table
    h = (lambda s: f"### {s}") if markdown else (lambda s: f"== {s}")
    item = (lambda s: f"- {s}") if markdown else (lambda s: f"  {s}")
    total_claimed, total = _totals(claimed), _totals(rows)
    total_claimed.op, total.op = "claimed ops", "all cases"
    judged = [r for r in claimed if r.rate is not None]
    full = [r for r in judged if r.rate == 1.0]
    lowest = sorted((r for r in judged if r.rate < 1.0), key=lambda r: (r.rate, r.op))[:5]
    out = [h("Totals"), ""] + table([total_claimed, total]) + [""]
    out.append(f"{len(claimed)} op types the registry claims have cases; {len(full)} of the "
               f"{len(judged)} with a verdict pass every case"
               + (f"; lowest: {', '.join(f'{r.op} {_rate(r)}' for r in lowest)}." if lowest
                  else "."))
    out += ["", h("Ops the registry claims"), ""] + table(claimed) + [""]
    if other:
        out += [h("Other op types (not claimed: only their expanded function bodies can run)"),
                ""] + table(other) + [""]

    failures = sorted((r for r in results if r.status == "fail"),
                      key=lambda r: (r.op.lower(), r.name))
    out += [h(f"Failures ({len(failures)})"), ""]
    out += [item(f"`{r.name}` ({r.op}): {r.reason}") for r in failures] or [item("none")]

    by_op: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        if r.status == "unsupported" and is_claimed(r.op):
            by_op[r.op][r.reason] += 1
    out += ["", h("Unsupported cases of claimed ops"), ""]
    for op in sorted(by_op, key=str.lower):
        reasons = sorted(by_op[op].items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(item(f"{op}: " + "; ".join(f"{reason} ({n})" for reason, n in reasons)))
    if not by_op:
        out.append(item("none"))

    everything = Counter(r.reason for r in results if r.status == "unsupported")
    kinds = Counter()
    for reason, n in everything.items():
        kinds["op(s) not claimed" if reason.startswith("op(s) not claimed") else
              "dtype" if reason.startswith("dtype ") else reason] += n
    out += ["", h("All unsupported cases, by kind of reason"), ""]
    out += [item(f"{kind}: {n}") for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1],
                                                                                      kv[0]))]
    return "\n".join(out)


DOCS = ROOT / "docs" / "onnx_conformance.md"
BEGIN = "<!-- generated by: python benchmarks/onnx_conformance.py --markdown -->"
END = "<!-- end of generated part -->"


def docs_section(text: str) -> str:
    """The generated part of the docs page (between the markers)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def update_docs(markdown: str, path: Path = DOCS) -> None:
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n\n" + markdown + "\n\n" + text[end:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", action="append", metavar="NAME",
                        help="run only the cases of this op type (repeatable or comma-separated, "
                             "case-insensitive)")
    parser.add_argument("--claimed", action="store_true",
                        help="run only the cases of op types the registry claims")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables and lists as Markdown (for the docs)")
    parser.add_argument("--update-docs", action="store_true",
                        help=f"run every case and rewrite the generated part of "
                             f"{DOCS.relative_to(ROOT)}")
    parser.add_argument("--slowest", type=int, default=0, metavar="N",
                        help="also list the N slowest cases")
    args = parser.parse_args(argv)
    only = [o.strip() for arg in args.op for o in arg.split(",") if o.strip()] if args.op else None
    if args.update_docs and (only or args.claimed):
        parser.error("--update-docs runs every case; leave out --op and --claimed")
    start = time.perf_counter()
    cases = collect_cases()
    ops = case_ops(cases)
    chosen = select(cases, ops, only, args.claimed)
    if not chosen:
        print(f"no case matches {', '.join(only or [])}", file=sys.stderr)
        return 2
    results = run_cases(chosen, ops)
    text = report(results, markdown=args.markdown or args.update_docs)
    if args.update_docs:
        update_docs(text)
        print(f"updated {DOCS.relative_to(ROOT)}")
    else:
        print(text)
    if args.slowest:
        print()
        for r in sorted(results, key=lambda r: -r.seconds)[: args.slowest]:
            print(f"{r.seconds:7.3f} s  {r.name}")
    if not args.markdown:
        print(f"\n{len(results)} cases in {time.perf_counter() - start:.1f} s "
              f"({sum(r.seconds for r in results):.1f} s running them)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
