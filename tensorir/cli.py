"""The ``tensorir`` command: the composition root that wires frontends, core and reports.

    tensorir inspect [MODEL] [--batch N]   per-op shapes, FLOPs, bytes and totals
    tensorir print [MODEL]                 the text form
    tensorir verify MODEL                  check the graph's invariants
    tensorir compile MODEL [--pipeline P] [--target PROFILE]
                                           run passes (then lower and allocate for a target);
                                           dump the IR between them; write the result
    tensorir run [MODEL]                   interpret on seeded random inputs
    tensorir export MODEL -o OUT.onnx      write the model as an ONNX file
    tensorir models                        the built-in models
    tensorir profiles [NAME]               hardware presets; one profile's details
    tensorir simulate [MODEL] --profile P  latency, traffic, occupancy, energy on one profile
    tensorir compare [MODEL] [-p P ...]    one table, a row per profile (default: every preset)

MODEL is a built-in name (default: the MLP-Mixer-S/16), an ``.onnx`` file or a ``.tir`` text
file; ``--batch N`` and ``--bind seq=128`` resolve symbolic dims.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

import numpy as np

from .analysis import graph_stats, stats_rows
from .errors import TensorIRError
from .interpreter import interpret
from .ir import Graph
from .parser import parse_file
from .printer import print_graph
from .table import binary_bytes, format_table, si
from .verifier import verify


def load_model(spec: str | None, batch: int | None = None,
               bind: dict[str, int] | None = None, weights: str | None = None) -> Graph:
    """A built-in model name, or a path to a ``.onnx`` or ``.tir`` file.

    ``batch`` binds the symbol ``batch``; ``bind`` any others (``{"seq": 128}``).
    """
    from frontends.zoo import BUILTIN_MODELS, DEFAULT_MODEL

    spec = spec or DEFAULT_MODEL
    if spec in BUILTIN_MODELS:
        return BUILTIN_MODELS[spec](batch=batch if batch is not None else 1)
    if not os.path.exists(spec):
        raise TensorIRError(f"{spec!r} is neither a file nor a built-in model "
                            f"({', '.join(sorted(BUILTIN_MODELS))})")
    env = dict(bind or {})
    if batch is not None:
        env["batch"] = batch
    if spec.endswith(".tir"):
        graph = parse_file(spec)
        if weights:
            from .constants_io import load_constants
            load_constants(graph, weights)
    elif spec.endswith(".onnx"):
        from frontends.onnx import load
        return load(spec, bind=env)
    else:
        raise TensorIRError(f"{spec}: unknown model format (expected .onnx or .tir)")
    return graph.bind(env) if env else graph


def parse_bindings(items: Sequence[str]) -> dict[str, int]:
    env = {}
    for item in items:
        name, _, size = item.partition("=")
        if not name or not size.isdigit():
            raise TensorIRError(f"--bind {item!r}: expected SYMBOL=N, e.g. seq=128")
        env[name.strip()] = int(size)
    return env


def cmd_inspect(args: argparse.Namespace) -> int:
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    stats = graph_stats(g)
    if args.json:
        print(json.dumps({"model": g.name, "ops": len(stats.ops), "params": stats.params,
                          "flops": stats.flops, "macs": stats.contraction_macs,
                          "activation_bytes": stats.activation_bytes,
                          "per_op": [{"name": o.name, "type": o.op_type, "flops": o.flops,
                                      "bytes_read": o.bytes_read,
                                      "bytes_written": o.bytes_written, "params": o.params,
                                      "results": list(o.result_types)} for o in stats.ops]},
                         indent=2))
        return 0
    if args.by_type:
        print(format_table(["op type", "count", "FLOPs"],
                           [[t, n, si(f)] for t, n, f in stats.by_op_type()], align="lrr"))
    else:
        print(format_table(["op", "type", "result", "FLOPs", "read", "written", "params"],
                           stats_rows(stats.ops), align="lllrrrr"))
    weights = sum(v.type.nbytes for v in g.constants)
    print()
    print(f"model {g.name}: {len(stats.ops)} ops, {si(stats.params)} parameters "
          f"({binary_bytes(weights)} of constants)")
    print(f"FLOPs {si(stats.flops)} ({si(stats.contraction_macs)} multiply-adds in "
          f"MatMul/Gemm/Conv; 1 multiply-add = 2 FLOPs)")
    print(f"activations written {binary_bytes(stats.activation_bytes)}")
    return 0


def cmd_print(args: argparse.Namespace) -> int:
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    sys.stdout.write(print_graph(g, locations=not args.no_locations))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    verify(g)
    print(f"{g.name}: ok ({len(g)} ops, {len(g.values())} values)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    rng = np.random.default_rng(args.seed)
    feeds = {}
    for v in g.inputs:
        if v.dtype.is_float:
            feeds[v.name] = rng.standard_normal(v.type.shape).astype(v.dtype.numpy)
        else:
            feeds[v.name] = rng.integers(0, 2, v.type.shape).astype(v.dtype.numpy)
    start = time.perf_counter()
    outputs = interpret(g, feeds)
    elapsed = time.perf_counter() - start
    rows = [[name, f"{a.dtype}{list(a.shape)}", f"{float(np.mean(a)):.6g}",
             f"{float(np.std(a)):.6g}"] for name, a in outputs.items()]
    print(format_table(["output", "array", "mean", "std"], rows, align="llrr"))
    print(f"\ninterpreted {len(g)} ops in {elapsed * 1e3:.1f} ms (NumPy, seed {args.seed})")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from passes import PassManager, registered_passes
    from passes.pipeline import PRESETS

    if args.list_passes:
        rows = [[name, cls.description] for name, cls in registered_passes().items()]
        rows += [[f"{name} (preset)", text] for name, text in PRESETS.items()]
        print(format_table(["pass", "what it does"], rows, align="ll"))
        return 0
    if args.model is None:
        raise TensorIRError("compile needs a MODEL (or --list-passes)")
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    pipeline = args.pipeline
    if args.target:
        pipeline += f",lower{{target={args.target}}},allocate"
    manager = PassManager(pipeline, verify=not args.no_verify, dump_ir=args.dump_ir,
                          dump_only_changed=args.dump_changed_only,
                          dump_passes=args.dump_passes.split(",") if args.dump_passes else None,
                          dump_diff=args.dump_diff)
    result = manager.run(g)
    print(result.table())
    if args.print_kernel:
        from .schedule_text import format_kernel
        if result.graph.schedule is None:
            raise TensorIRError("--print-kernel needs a lowered graph: give --target")
        kernels = result.graph.schedule.kernels
        found = ([k for k in kernels if k.result == args.print_kernel]
                 or [k for k in kernels if args.print_kernel in k.result])
        if not found:
            raise TensorIRError(f"no kernel's result name contains {args.print_kernel!r}")
        print()
        print(format_kernel(result.graph, found[0]), end="")
    if args.occupancy:
        from passes.allocation import occupancy_csv, occupancy_json
        if result.graph.schedule is None:
            raise TensorIRError("--occupancy needs a lowered graph: give --target")
        with open(args.occupancy, "w", encoding="utf-8") as f:
            f.write(occupancy_json(result.graph.schedule) if args.occupancy.endswith(".json")
                    else occupancy_csv(result.graph.schedule))
        print(f"\nwrote {args.occupancy}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(print_graph(result.graph))
        print(f"\nwrote {args.output}")
        if args.save_weights:
            from .constants_io import save_constants
            stem = args.output[:-4] if args.output.endswith(".tir") else args.output
            n = save_constants(result.graph, stem + ".npz")
            print(f"wrote {stem}.npz ({n} constants)")
    if args.dump_ir:
        print(f"IR dumps in {args.dump_ir}/")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from frontends.onnx import save
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    save(g, args.output)
    print(f"wrote {args.output}: {len(g)} ops, {len(g.constants)} constants "
          f"({binary_bytes(os.path.getsize(args.output))})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from frontends.zoo import BUILTIN_MODELS, DEFAULT_MODEL
    for name in sorted(BUILTIN_MODELS):
        print(name + ("  (default)" if name == DEFAULT_MODEL else ""))
    return 0


def _dram_rate(p, format_rate) -> str:
    """Main memory's peak bandwidth, and what it sustains when that is less."""
    peak = p.main_memory.bandwidth_bytes_per_s * p.instances(p.main_memory)
    text = format_rate(peak, "B/s")
    if p.main_memory.sustained_fraction < 1:
        text += f" ({format_rate(p.dram_bandwidth, 'B/s')} sustained)"
    return text


def cmd_profiles(args: argparse.Namespace) -> int:
    from backends.profile import format_bytes, format_rate, list_presets, load_profile

    if args.profile:
        print(load_profile(args.profile).describe())
        return 0

    def peak(p, dtype: str) -> str:
        return format_rate(p.peak_flops(dtype), "FLOP/s") if p.supports(dtype) else "-"

    rows = []
    for name in list_presets():
        p = load_profile(name)
        per = {"cpu": "/core", "gpu": "/SM"}.get(p.kind, "")
        levels = ", ".join(f"{lv.name} {format_bytes(lv.capacity_bytes)}"
                           f"{'' if p.instances(lv) == 1 else per}" for lv in p.on_chip)
        rows.append([p.name, p.kind, peak(p, "f32"), peak(p, "f16"),
                     _dram_rate(p, format_rate), levels])
    print(format_table(["profile", "kind", "peak f32", "peak f16", "DRAM bandwidth",
                        "on-chip levels"], rows, align="llrrrl"))
    print("\ntensorir profiles NAME shows one profile; NAME may also be a .yaml or .json file")
    return 0


def _write_report_files(report, args: argparse.Namespace) -> None:
    for path, text in ((args.json_out, report.to_json), (args.csv_out, report.to_csv),
                       (args.trace_out, report.to_trace), (args.markdown_out, report.to_markdown)):
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text())
            print(f"wrote {path}")


def cmd_simulate(args: argparse.Namespace) -> int:
    from backends import simulate
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    start = time.perf_counter()
    report = simulate(g, args.profile, model=args.model or g.name)
    elapsed = time.perf_counter() - start
    print(format_table(["", "value"], report.summary_rows(), align="lr"))
    print()
    print(report.timeline(top=args.top))
    print(f"\n(simulated in {elapsed * 1e3:.0f} ms, lowering included)")
    _write_report_files(report, args)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from backends import compare, list_presets
    g = load_model(args.model, args.batch, parse_bindings(args.bind), args.weights)
    profiles = args.profile or list_presets()
    start = time.perf_counter()
    comparison = compare(g, profiles, model=args.model or g.name, jobs=args.jobs)
    elapsed = time.perf_counter() - start
    print(comparison.to_markdown() if args.markdown else comparison.table())
    print()
    print(comparison.kernel_table(top=args.top))
    print(f"\n({len(profiles)} profiles in {elapsed * 1e3:.0f} ms, lowering included)")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"profiles": comparison.rows(),
                       "reports": [r.to_dict() for r in comparison.reports]}, f, indent=1)
        print(f"wrote {args.json_out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorir", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def model_command(name: str, fn, help_text: str, model_required: bool = False):
        p = sub.add_parser(name, help=help_text)
        if model_required:
            p.add_argument("model", help="built-in model name, .onnx or .tir file")
        else:
            p.add_argument("model", nargs="?", default=None,
                           help="built-in model name, .onnx or .tir file (default: mlp-mixer-s16)")
        p.add_argument("--batch", type=int, default=None, help="bind the batch size")
        p.add_argument("--bind", action="append", default=[], metavar="SYMBOL=N",
                       help="bind a symbolic dim, e.g. --bind seq=128 (repeatable)")
        p.add_argument("--weights", metavar="NPZ",
                       help="constants for a .tir model (written by --save-weights)")
        p.set_defaults(fn=fn)
        return p

    p = model_command("inspect", cmd_inspect, "per-op shapes, FLOPs, bytes and totals")
    p.add_argument("--by-type", action="store_true", help="aggregate per op type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = model_command("print", cmd_print, "print the text form")
    p.add_argument("--no-locations", action="store_true", help="omit loc(...) source names")
    model_command("verify", cmd_verify, "check the graph's invariants", model_required=True)
    p = model_command("run", cmd_run, "interpret on seeded random inputs")
    p.add_argument("--seed", type=int, default=0)
    p = model_command("compile", cmd_compile, "run a pass pipeline on a model")
    p.add_argument("--pipeline", default="default",
                   help="passes, e.g. 'shape-inference,dce' or a preset (default: default)")
    p.add_argument("--target", metavar="PROFILE",
                   help="then tile, lower and allocate for this preset or profile file")
    p.add_argument("--print-kernel", metavar="NAME",
                   help="print the lowered kernel whose result is NAME (or contains it)")
    p.add_argument("--occupancy", metavar="OUT.csv|OUT.json",
                   help="write memory occupancy over time per level")
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR before and after every pass")
    p.add_argument("--dump-changed-only", action="store_true",
                   help="dump only passes that changed the graph")
    p.add_argument("--dump-passes", metavar="P1,P2", help="dump only after these passes")
    p.add_argument("--dump-diff", action="store_true", help="also write a unified diff per pass")
    p.add_argument("--no-verify", action="store_true", help="skip verification between passes")
    p.add_argument("-o", "--output", metavar="OUT.tir", help="write the compiled graph's text")
    p.add_argument("--save-weights", action="store_true",
                   help="with -o, also write the constants to OUT.npz")
    p.add_argument("--list-passes", action="store_true", help="list passes and presets")
    p = model_command("export", cmd_export, "write the model as an ONNX file",
                      model_required=True)
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p = model_command("simulate", cmd_simulate, "simulate a model on one hardware profile")
    p.add_argument("-p", "--profile", default="kpu-16x16",
                   help="a preset name (tensorir profiles) or a .yaml/.json profile file")
    p.add_argument("--top", type=int, default=10, help="slowest kernels to show")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the report")
    p.add_argument("--csv", dest="csv_out", metavar="OUT.csv", help="write a row per kernel")
    p.add_argument("--trace", dest="trace_out", metavar="OUT.json",
                   help="write a Chrome/Perfetto trace of the timeline")
    p.add_argument("--markdown", dest="markdown_out", metavar="OUT.md",
                   help="write the report as Markdown")
    p = model_command("compare", cmd_compare, "simulate a model on several profiles")
    p.add_argument("-p", "--profile", action="append", default=[],
                   help="a preset or profile file (repeatable; default: every preset)")
    p.add_argument("--top", type=int, default=10, help="slowest kernels to show")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="write every report")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="simulate the profiles in this many processes (default 1)")
    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(fn=cmd_models)
    p = sub.add_parser("profiles", help="list the hardware presets, or show one profile")
    p.add_argument("profile", nargs="?", default=None,
                   help="a preset name or a .yaml/.json profile file to show in full")
    p.set_defaults(fn=cmd_profiles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except TensorIRError as exc:
        print(f"tensorir: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tensorir print | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
