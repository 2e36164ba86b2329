"""simulate / compare / Report across every backend, and the laws every backend obeys:

- no kernel is faster than its roofline: max(FLOPs / peak, bytes / bandwidth at every link);
- more bandwidth never makes a kernel slower;
- traffic to main memory is never below the compulsory traffic (each input read once, each
  output written once) for kernels whose maps touch every element;
- exports (JSON, CSV, Markdown, Chrome trace) carry the same numbers as the report.
"""

import copy
import csv
import io
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import compare, list_presets, simulate
from backends.cost import roofline_seconds
from backends.profile import load_profile, profile_from_dict
from frontends.python import GraphBuilder
from hypothesis_budget import examples
from tensorir.errors import PassError, ProfileError
from tensorir.target import preset_path, read_profile_data

PRESETS = list_presets()


def mlp(m=64, k=256, n=128, seed=0):
    b = GraphBuilder("mlp", seed=seed)
    x = b.input("x", [m, k])
    h = b.relu(b.add(b.matmul(x, b.weight("w", [k, n])), b.weight("b", [n])))
    return b.build(b.matmul(h, b.weight("w2", [n, 32])))


def conv_net(c=8, hw=16, seed=0):
    b = GraphBuilder("convnet", seed=seed)
    x = b.input("x", [1, c, hw, hw])
    y = b.relu(b.conv(x, b.weight("w", [2 * c, c, 3, 3]), b.weight("b", [2 * c]),
                      pads=[1, 1, 1, 1]))
    return b.build(b.add(y, b.conv(x, b.weight("w1", [2 * c, c, 1, 1]))))


def scaled(profile_name, factor):
    """The preset with every level's bandwidth (and every mover's) times ``factor``."""
    data = copy.deepcopy(read_profile_data(preset_path(profile_name)))
    for level in data["memory"]:
        for key in ("bandwidth_bytes_per_s", "bytes_per_cycle"):
            if key in level:
                level[key] = level[key] * factor
    for mover in data.get("movers", []):
        mover["bandwidth_bytes_per_s"] = mover["bandwidth_bytes_per_s"] * factor
    data["name"] = f"{profile_name}-x{factor}"
    return profile_from_dict(data, where=f"{profile_name}-x{factor}")


@pytest.mark.parametrize("profile", PRESETS)
def test_every_kernel_respects_its_roofline(profile):
    for g in (mlp(), conv_net()):
        report = simulate(g, profile)
        p = load_profile(profile)
        assert report.latency_s > 0 and report.kernels
        for k in report.kernels:
            assert k.time_s >= roofline_seconds(k, p) * (1 - 1e-9), k.name
            assert 0 <= k.utilisation <= 1 + 1e-9


@settings(max_examples=examples(10), deadline=None)
@given(st.sampled_from(PRESETS), st.integers(8, 96), st.integers(8, 200), st.integers(8, 96))
def test_more_bandwidth_is_never_slower(profile, m, k, n):
    g = mlp(m, k, n)
    slow = simulate(g, profile)
    fast = simulate(g, scaled(profile, 2.0))
    assert [x.name for x in slow.kernels] == [x.name for x in fast.kernels]
    for a, b in zip(slow.kernels, fast.kernels):
        assert b.time_s <= a.time_s * (1 + 1e-9), (a.name, a.time_s, b.time_s)


@pytest.mark.parametrize("profile", PRESETS)
def test_main_memory_traffic_is_at_least_compulsory(profile):
    g = mlp()
    report = simulate(g, profile)
    main = report.levels[-1]
    lowered_ops = {op.results[0].name: op for op in g.ops}
    for k in report.kernels:
        op = lowered_ops.get(k.name)
        if op is None:
            continue
        read = sum(b.down for link, b in k.links.items() if link[0] == main)
        written = sum(b.up for link, b in k.links.items() if link[0] == main)
        assert read >= sum(v.type.nbytes for v in op.operands if v is not None), k.name
        assert written >= sum(r.type.nbytes for r in op.results), k.name


def test_report_exports_agree():
    report = simulate(conv_net(), "kpu-16x16")
    data = json.loads(report.to_json())
    assert data["latency_s"] == pytest.approx(report.latency_s)
    assert data["cycles"] == report.cycles == round(report.latency_s * load_profile(
        "kpu-16x16").clock_hz)
    assert len(data["kernels"]) == len(report.kernels)
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["kernel"] for r in rows] == [k.name for k in report.kernels]
    assert sum(float(r["time_s"]) for r in rows) == pytest.approx(report.latency_s)
    trace = json.loads(report.to_trace())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(report.kernels)
    assert spans[-1]["ts"] + spans[-1]["dur"] == pytest.approx(report.latency_s * 1e6)
    md = report.to_markdown()
    assert md.startswith("### convnet on kpu-16x16") and "| kernel" in md
    by_level = report.bytes_by_level()
    assert by_level["DRAM"]["read"] > 0 and by_level["DRAM"]["written"] > 0
    assert report.peak_bytes["DRAM"] > 0
    assert "kpu-16x16" in report.timeline()


def test_compare_has_a_row_per_profile():
    comparison = compare(mlp(), ["kpu-16x16", "cpu-avx512", "gpu-h100-sxm"])
    rows = comparison.rows()
    assert [r["profile"] for r in rows] == ["kpu-16x16", "cpu-avx512", "gpu-h100-sxm"]
    assert all(r["latency_s"] > 0 and r["energy_j"] > 0 for r in rows)
    table = comparison.table()
    assert "kpu-16x16" in table and "gpu-h100-sxm" in table
    assert "cpu-avx512" in comparison.kernel_table()


def test_simulate_runs_the_default_pipeline_once():
    g = mlp()
    report = simulate(g, "cpu-avx512")
    assert g.schedule is None  # the caller's graph is untouched
    assert [k.op_type for k in report.kernels] == ["fused.ffn"]  # matmul, bias, relu, matmul


def test_invalid_profile_names_the_field(tmp_path):
    data = copy.deepcopy(read_profile_data(preset_path("kpu-16x16")))
    data["memory"][0]["capacity_bytes"] = -5
    path = tmp_path / "broken.yaml"
    import yaml
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=r"broken.yaml.*capacity_bytes"):
        simulate(mlp(), str(path))


def test_a_kernel_too_big_for_every_scratchpad_is_a_clear_error():
    b = GraphBuilder("wide", seed=0)
    x = b.input("x", [2, 1 << 20])
    g = b.build(b.softmax(x, axis=-1))  # a 4 MiB row must be whole
    with pytest.raises(PassError, match="does not fit target 'kpu-16x16'"):
        simulate(g, "kpu-16x16")


def test_roofline_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from backends.plot import roofline_plot, roofline_points
    report = simulate(conv_net(), "gpu-a100-sxm")
    assert roofline_points(report)
    out = roofline_plot(report, tmp_path / "roof.png")
    assert (tmp_path / "roof.png").stat().st_size > 1000 and out.endswith("roof.png")


def test_cli_compare_and_simulate(tmp_path):
    trace = tmp_path / "t.json"
    run = subprocess.run([sys.executable, "-m", "tensorir.cli", "simulate", "-p", "cpu-avx512",
                          "--trace", str(trace)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "latency" in run.stdout and json.loads(trace.read_text())["traceEvents"]
    run = subprocess.run([sys.executable, "-m", "tensorir.cli", "compare", "--jobs", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for name in PRESETS:
        assert name in run.stdout
    bad = subprocess.run([sys.executable, "-m", "tensorir.cli", "simulate", "-p", "nope"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def _two_alike_layers():
    """Two matmul + bias + ReLU layers on two inputs, with different weights and names."""
    b = GraphBuilder("alike", seed=0)
    ys = []
    for i in range(2):
        x = b.input(f"x{i}", [64, 96])
        ys.append(b.relu(b.add(b.matmul(x, b.weight(f"w{i}", [96, 48])), b.weight(f"b{i}", [48]))))
    return b.build(*ys)


@pytest.mark.parametrize("preset", ["cpu-avx512", "gpu-h100-sxm", "kpu-16x16"])
def test_alike_kernels_are_costed_once_under_their_own_names(preset, monkeypatch):
    import importlib
    sim = importlib.import_module("backends.simulate")   # the package exports the function
    calls = []
    real = sim.backend_for

    class Counting:
        def __init__(self, backend):
            self.backend, self.__name__ = backend, backend.__name__

        def kernel_cost(self, op, *args, **kwargs):
            calls.append(op.results[0].name)
            return self.backend.kernel_cost(op, *args, **kwargs)

    monkeypatch.setattr(sim, "_COSTS", {})
    monkeypatch.setattr(sim, "backend_for", lambda profile: Counting(real(profile)))
    report = simulate(_two_alike_layers(), preset)
    first, second = report.kernels
    assert len(calls) == 1 and first.name != second.name
    direct = real(load_profile(preset))
    from backends.simulate import lower_for
    from tensorir.kernel import kernel_domain
    lowered = lower_for(_two_alike_layers(), load_profile(preset))
    op, ks = lowered.ops[1], lowered.schedule.kernels[1]
    assert second == direct.kernel_cost(op, ks, kernel_domain(op), load_profile(preset))


def test_the_memo_key_holds_the_kernel_domain():
    """The cost memo's key holds the kernel domain as well as the op and its schedule: a
    domain a constant's data shaped differently (or one a caller passes) is not confused
    with the op's own."""
    import attrs
    from tensorir.kernel import kernel_domain
    from tensorir.structure import kernel_key
    op = _two_alike_layers().ops[0]
    kd = kernel_domain(op)
    assert kernel_key(op, kd, None) == kernel_key(op, kernel_domain(op), None)
    assert kernel_key(op, kd, None) != kernel_key(op, attrs.evolve(kd, whole=frozenset({2})), None)
    assert kernel_key(op, kd, None) != kernel_key(op, "untiled: a reason", None)


def test_compare_in_worker_processes_gives_the_same_reports():
    g = _two_alike_layers()
    presets = ["cpu-avx512", "gpu-h100-sxm", "kpu-16x16"]
    serial = compare(g, presets)
    parallel = compare(g, presets, jobs=2)
    assert [r.profile for r in parallel.reports] == presets
    assert [r.to_json() for r in parallel.reports] == [r.to_json() for r in serial.reports]


class _Forgetful(dict):
    """A memo that never remembers (``memo[key] = value`` is dropped)."""

    def __setitem__(self, key, value) -> None:
        pass


@st.composite
def repeated_layers(draw):
    """Parallel branches of matmul + bias + activation layers drawn from a few kinds, so that
    some branches repeat a structure under other names and some differ by one detail."""
    b = GraphBuilder("layers", seed=draw(st.integers(0, 99)))
    kinds = draw(st.lists(st.tuples(st.sampled_from([16, 48, 64]), st.sampled_from([32, 96]),
                                    st.sampled_from(["relu", "sigmoid", "tanh"])),
                          min_size=1, max_size=3))
    outs = []
    for i, index in enumerate(draw(st.lists(st.integers(0, len(kinds) - 1), min_size=2,
                                            max_size=6))):
        m, n, act = kinds[index]
        x = b.input(f"x{i}", [m, 64])
        y = b.add(b.matmul(x, b.weight(f"w{i}", [64, n])), b.weight(f"b{i}", [n]))
        outs.append(getattr(b, act)(y))
    return b.build(*outs)


@settings(max_examples=examples(15), deadline=None)
@given(repeated_layers(), st.sampled_from(["cpu-avx512-16core", "gpu-a100-sxm", "kpu-16x16"]))
def test_the_memos_change_no_report(g, preset):
    """Lowering and costing each structure once gives the reports that lowering and costing
    every kernel gives."""
    import importlib

    lowering = importlib.import_module("passes.lowering")
    sim = importlib.import_module("backends.simulate")
    remembered = simulate(g, preset).to_json()
    saved = lowering._LOWERED, sim._COSTS
    lowering._LOWERED, sim._COSTS = _Forgetful(), _Forgetful()
    try:
        fresh = simulate(g, preset).to_json()
    finally:
        lowering._LOWERED, sim._COSTS = saved
    assert remembered == fresh
