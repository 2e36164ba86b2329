"""Hardware profiles: every preset loads and its derived numbers equal the published ones (the
source is named beside each figure); every broken profile names its file and field."""

import copy
import functools
import json
import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.profile import (CpuCompute, GpuCompute, HardwareProfile, KpuCompute, dtype_name,
                              list_presets, load_profile, profile_from_dict, sram_pj_per_byte)
from tensorir import DType, ProfileError
from tensorir.cli import main
from tensorir.target import (PRESET_DIR, Managed, load_target, read_profile_data,
                             resolve_target)

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ["cpu-avx512", "cpu-avx512-16core", "cpu-neoverse-v2", "gpu-a100-sxm",
           "gpu-h100-sxm", "kpu-16x16", "kpu-64x64"]


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> dict:
    return read_profile_data(PRESET_DIR / f"{name}.yaml")


def raw(name: str) -> dict:
    """A preset's parsed YAML, a fresh copy each time."""
    return copy.deepcopy(_parsed(name))


def close(x: float, y: float, rel: float = 1e-3) -> bool:
    return math.isclose(x, y, rel_tol=rel)


# --- presets -------------------------------------------------------------------------------


def test_list_presets_names_every_shipped_file():
    assert list_presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_cites_its_sources_and_keeps_its_target(name):
    p = load_profile(name)
    assert p.name == name and p.kind in name and p.sources and p.description
    assert p.clock_hz > 0 and p.peak_flops("f32") > 0 and p.dram_bandwidth > 0
    # the memory section is the Target tiling plans for, read the same way by tensorir.target
    assert p.target == load_target(PRESET_DIR / f"{name}.yaml") == resolve_target(name)
    assert [lv.name for lv in p.target.levels] == [lv.name for lv in p.levels]
    capacities = [lv.capacity_bytes for lv in p.levels]
    assert capacities == sorted(capacities), "levels go innermost first"
    assert p.levels[-1].shared
    for lv in p.levels:
        assert lv.bandwidth_bytes_per_s > 0 and lv.latency_cycles > 0
        assert lv.read_pj_per_byte > 0 and lv.write_pj_per_byte > 0
        assert all(s in {src.id for src in p.sources} for s in lv.sources)
    assert load_profile(name) is load_profile(name)   # presets are cached; profiles are frozen
    assert hash(p) == hash(load_profile(PRESET_DIR / f"{name}.yaml"))


def test_h100_sxm_matches_nvidias_datasheet():
    # H100 datasheet / Hopper whitepaper: dense tensor peaks at 1.83 GHz, vector at 1.98 GHz
    p = load_profile("gpu-h100-sxm")
    assert isinstance(p.compute, GpuCompute) and p.compute.sm_count == 132
    assert close(p.peak_flops("f16"), 989.4e12) and close(p.peak_flops(DType.bfloat16), 989.4e12)
    assert close(p.peak_flops("tf32"), 494.7e12)
    assert close(p.peak_flops("f8"), 1978.9e12) and close(p.peak_flops("i8"), 1978.9e12)
    assert close(p.peak_flops("f32"), 66.9e12, 2e-3)
    assert close(p.peak_flops("f64"), 66.9e12, 2e-3)                      # FP64 tensor
    assert close(p.peak_flops("f64", unit="cuda_core"), 33.5e12, 2e-3)
    assert close(p.peak_flops("f16", unit="cuda_core"), 133.8e12, 2e-3)
    assert p.main_memory.bandwidth_bytes_per_s == 3.35e12 and p.main_memory.capacity_bytes == 80 << 30
    assert close(p.dram_bandwidth, 0.91 * 3.35e12)           # what refresh leaves sustainable
    assert p.level("L2").capacity_bytes == 50 << 20
    assert p.level("SMEM").capacity_bytes == 228 << 10 and p.instances("SMEM") == 132
    c = p.compute
    assert (c.registers_per_sm, c.max_warps_per_sm, c.max_threads_per_sm, c.max_blocks_per_sm) \
        == (65536, 64, 2048, 32)
    assert c.max_shared_memory_per_block_bytes == 227 << 10
    assert 1e-6 <= c.launch_overhead_s <= 1e-5
    assert any("nvidia.com" in s.url for s in p.sources)


def test_a100_sxm_matches_nvidias_datasheet():
    # A100 80GB SXM datasheet and Ampere whitepaper, all at the 1.41 GHz boost clock
    p = load_profile("gpu-a100-sxm")
    assert p.compute.sm_count == 108 and p.clock_hz == 1.41e9
    assert close(p.peak_flops("f16"), 312e12) and close(p.peak_flops("bf16"), 312e12)
    assert close(p.peak_flops("tf32"), 156e12) and close(p.peak_flops("i8"), 624e12)
    assert close(p.peak_flops("f32"), 19.5e12) and close(p.peak_flops("f64"), 19.5e12)
    assert close(p.peak_flops("f64", unit="cuda_core"), 9.7e12, 5e-3)
    assert close(p.peak_flops("bf16", unit="cuda_core"), 39e12)
    assert not p.supports("f8")
    with pytest.raises(ProfileError, match="gpu-a100-sxm: no compute unit runs f8"):
        p.peak_flops("fp8")
    assert p.main_memory.bandwidth_bytes_per_s == 2.039e12
    assert close(p.dram_bandwidth, 0.91 * 2.039e12) and p.level("L2").capacity_bytes == 40 << 20
    assert close(p.bandwidth("L2", "SMEM"), 5120 * 1.41e9)                 # 5120 B/clock
    assert p.level("SMEM").capacity_bytes == 164 << 10


def test_kpu_16x16_is_1024_gflops_with_the_issues_bandwidths():
    p = load_profile("kpu-16x16")
    assert isinstance(p.compute, KpuCompute) and p.compute.pe_count == 256
    assert p.peak_flops("f32") == 16 * 16 * 2 * 2e9 == 1024e9
    assert p.compute.dataflow == "output-stationary"
    assert [lv.managed for lv in p.on_chip] == [Managed.SCRATCHPAD] * 3
    assert p.bandwidth("DRAM", "L3") == 64e9 and p.bandwidth("L3", "L2") == 128e9
    assert p.bandwidth("L1", "L2") == p.bandwidth("L2", "L1") == 256e9
    assert {m.kind: (m.count, m.total_bandwidth_bytes_per_s) for m in p.movers} == {
        "dma": (4, 64e9), "block_mover": (4, 128e9), "streamer": (8, 256e9)}
    assert p.mover("DRAM", "L3").bandwidth_bytes_per_s == 16e9
    with pytest.raises(ProfileError, match="'L1' and 'L3' are not adjacent"):
        p.bandwidth("L1", "L3")


def test_kpu_64x64_has_16x_the_compute_and_4x_the_bandwidth():
    small, big = load_profile("kpu-16x16"), load_profile("kpu-64x64")
    assert big.peak_flops("bf16") == 16 * small.peak_flops("bf16") == 16.384e12
    for lv in small.levels:
        assert big.bandwidth(lv.name) == 4 * small.bandwidth(lv.name)


def test_cpu_avx512_core_is_two_fma_units_of_sixteen_fp32_lanes():
    p = load_profile("cpu-avx512")
    c = p.compute
    assert isinstance(c, CpuCompute) and c.lanes("f32") == 16 and c.fma_units == 2
    assert p.peak_flops("f32") == 2 * 16 * 2 * 2.0e9 and p.peak_flops("f64") == 64e9
    assert not p.supports("f16")
    # Skylake-SP caches (Intel optimization manual, AnandTech)
    assert [(lv.capacity_bytes, lv.associativity, lv.sets) for lv in p.on_chip] == [
        (32 << 10, 8, 64), (1 << 20, 16, 1024), (1441792, 11, 2048)]
    assert [lv.line_bytes for lv in p.levels] == [64] * 4
    assert p.bandwidth("L1") == 128 * 2.0e9


def test_sixteen_core_variant_is_sixteen_cores_sharing_l3_and_dram():
    one, many = load_profile("cpu-avx512"), load_profile("cpu-avx512-16core")
    assert many.compute.cores == 16 and many.peak_flops("f32") == 16 * one.peak_flops("f32")
    for name in ("L1", "L2"):
        assert not many.level(name).shared and many.instances(name) == 16
        assert many.level(name).capacity_bytes == one.level(name).capacity_bytes
        assert many.bandwidth(name) == 16 * one.bandwidth(name)
    for name in ("L3", "DRAM"):
        assert many.level(name).shared and many.instances(name) == 1
        assert many.bandwidth(name) == 16 * one.bandwidth(name)
    assert many.level("L3").capacity_bytes == 16 * one.level("L3").capacity_bytes == 22 << 20
    assert close(many.dram_bandwidth, 6 * 2666.67e6 * 8)                      # six DDR4-2666


def test_neoverse_v2_core():
    p = load_profile("cpu-neoverse-v2")
    assert p.peak_flops("f32") == 4 * 4 * 2 * 3.1e9 and p.peak_flops("f16") == 2 * p.peak_flops()
    assert (p.level("L1").capacity_bytes, p.level("L1").associativity) == (64 << 10, 4)
    assert p.level("L3").capacity_bytes * 72 == 117 << 20


def test_energies_default_to_horowitz_2014():
    p = load_profile("kpu-16x16")
    assert p.energy.op_pj("f32", "add") == 0.9 and p.energy.op_pj("f32", "mul") == 3.7
    assert close(p.energy.mac_pj("f32"), 4.6) and close(p.energy.mac_pj("i8"), 0.23)
    # dtypes the table lacks take the nearest listed one of their family at least as wide
    assert p.energy.mac_pj("bf16") == p.energy.mac_pj("f16")
    assert p.energy.mac_pj("f8") == p.energy.mac_pj("f16")
    assert p.energy.mac_pj("f64") == p.energy.mac_pj("f32")
    assert p.energy.mac_pj("i4") == p.energy.mac_pj("i8")
    # 64-bit SRAM reads: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; DRAM 1.3 nJ (low end)
    assert [sram_pj_per_byte(c) for c in (8 << 10, 32 << 10, 1 << 20)] == [1.25, 2.5, 12.5]
    sizes = [1 << k for k in range(10, 25)]
    energies = [sram_pj_per_byte(c) for c in sizes]
    assert energies == sorted(energies)
    assert p.main_memory.read_pj_per_byte == 1300 / 8
    assert p.level("L1").read_pj_per_byte == sram_pj_per_byte(64 << 10)


def test_dtype_names():
    assert dtype_name(DType.float16) == dtype_name("float16") == dtype_name("f16") == "f16"
    assert dtype_name("fp8") == "f8" and dtype_name("tf32") == "tf32"


def test_presets_ship_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "profiles/*.yaml" in config["tool"]["setuptools"]["package-data"]["tensorir"]


# --- validation ----------------------------------------------------------------------------


def mutate(name: str, fn) -> dict:
    data = copy.deepcopy(raw(name))
    fn(data)
    return data


def set_in(path, value):
    def fn(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return fn


def delete(path):
    def fn(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return fn


def rename(path, new):
    def fn(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[new] = node.pop(path[-1])
    return fn


def swap_levels(i, j):
    def fn(data):
        m = data["memory"]
        m[i], m[j] = m[j], m[i]
    return fn


H100, KPU, CPU = "gpu-h100-sxm", "kpu-16x16", "cpu-avx512"

MUTATIONS = [
    (H100, set_in(["compute", "sm_count"], -1),
     "compute.sm_count: expected a positive integer, got -1"),
    (H100, delete(["compute", "sm_count"]), "compute.sm_count: missing"),
    (H100, set_in(["compute", "sm_count"], "many"),
     "compute.sm_count: expected a positive integer, got 'many'"),
    (H100, rename(["compute", "sm_count"], "sm_cout"),
     "compute.sm_cout: unknown field; did you mean 'sm_count'?"),
    (H100, set_in(["clock_hz"], 0), "clock_hz: expected a positive number, got 0"),
    (H100, delete(["clock_hz"]), "clock_hz: missing"),
    (H100, set_in(["kind"], "tpu"), "kind: expected one of cpu, kpu, gpu, got 'tpu'"),
    (H100, set_in(["kind"], "cpu"), "compute.sm_count: unknown field"),
    (H100, set_in(["compute", "units", "tensor_core", "flops_per_cycle_per_sm", "fp16"], 4096),
     r"compute.units.tensor_core.flops_per_cycle_per_sm.fp16: unknown dtype 'fp16'"),
    (H100, set_in(["compute", "units", "cuda_core", "kind"], "scalar"),
     "compute.units.cuda_core.kind: expected one of vector, matrix"),
    (H100, set_in(["compute", "max_threads_per_sm"], 1024),
     "compute.max_threads_per_sm: 1024 is not max_warps_per_sm x warp_size = 2048"),
    (H100, set_in(["compute", "max_shared_memory_per_block_bytes"], 300000),
     "compute.max_shared_memory_per_block_bytes: 300000 exceeds the shared memory per SM"),
    (H100, set_in(["compute", "launch_overhead_s"], -1e-6),
     "compute.launch_overhead_s: expected a non-negative number"),
    (H100, set_in(["memory", 1, "bandwidth_bytes_per_s"], 1e12),
     r"memory\[1\].bandwidth_bytes_per_s: give exactly one of"),
    (H100, delete(["memory", 2, "bandwidth_bytes_per_s"]),
     r"memory\[2\].bandwidth_bytes_per_s: missing \(or bytes_per_cycle\)"),
    (H100, delete(["memory", 0, "latency_cycles"]), r"memory\[0\].latency_cycles: missing"),
    (H100, set_in(["memory", 2, "latency_cycles"], 10),
     r"memory\[2\].latency_cycles: 10 is below the inner level 'L2'"),
    (H100, set_in(["memory", 0, "shared"], True),
     r"memory\[0\]: a gpu's innermost level is the per-SM shared memory"),
    (H100, set_in(["movers"], []), "movers: only a kpu profile has data movers, not a gpu"),
    (H100, set_in(["source"], "h100-brochure"),
     "source: unknown source 'h100-brochure'"),
    (H100, set_in(["sources", "h100-datasheet"], {"url": "https://x"}),
     "sources.h100-datasheet.title: missing"),
    (H100, set_in(["memory", 0, "capacity_bytes"], -1),
     r"memory\[0\].capacity_bytes: expected a positive integer, got -1"),
    (CPU, swap_levels(0, 1),
     r"memory\[1\].capacity_bytes: 32768 is smaller than the inner level 'L2'"),
    (CPU, set_in(["memory", 0, "associativity"], 7),
     r"memory\[0\].associativity: 32768 bytes do not divide into 7-way sets"),
    (CPU, set_in(["memory", 3, "associativity"], 4),
     r"memory\[3\].associativity: only an on-chip cache has ways"),
    (CPU, set_in(["memory", 3, "shared"], False),
     r"memory\[3\].shared: false, but the inner level 'L3' is shared"),
    (CPU, set_in(["memory", 0, "line_bytes"], 48),
     r"memory\[0\].line_bytes: expected a power of two, got 48"),
    (CPU, set_in(["memory", 0, "managed"], "magic"),
     r"memory\[0\].managed: expected 'scratchpad' or 'cache', got 'magic'"),
    (CPU, set_in(["memory", 1, "name"], "L1"), r"memory\[1\].name: level 'L1' appears twice"),
    (CPU, set_in(["memory", 0, "energy_pj_per_byte"], {"read": 1.0}),
     r"memory\[0\].energy_pj_per_byte.write: missing"),
    (CPU, set_in(["compute", "fma_dtypes"], ["f32", "f24"]),
     r"compute.fma_dtypes\[1\]: unknown dtype 'f24'"),
    (CPU, set_in(["compute", "vector_bits"], 48),
     r"compute.fma_dtypes\[0\]: f64 does not divide a 48-bit vector"),
    (CPU, set_in(["memory"], []), "memory: expected a non-empty list of levels"),
    (CPU, set_in(["energy"], {"pj_per_op": {"f32": {"add": 1.0}}}),
     "energy.pj_per_op.f32.mul: missing"),
    (KPU, set_in(["movers", 0, "bandwidth_bytes_per_s"], 10e9),
     r"movers\[0\].bandwidth_bytes_per_s: 4 x 1e\+10 B/s = 4e\+10 B/s, but memory\[3\] \(DRAM\)"),
    (KPU, delete(["movers", 2]), "movers: no engine moves data between 'L2' and 'L1'"),
    (KPU, set_in(["movers", 1, "inner"], "L1"),
     r"movers\[1\].inner: 'L1' is not the level just inside 'L3'"),
    (KPU, set_in(["movers", 1, "kind"], "teleporter"),
     r"movers\[1\].kind: expected one of dma, block_mover, streamer"),
    (KPU, delete(["movers"]), "movers: missing"),
    (KPU, set_in(["compute", "dataflow"], "row-stationary"),
     "compute.dataflow: expected one of output-stationary, weight-stationary, input-stationary"),
    (KPU, set_in(["compute", "dataflows"], ["weight-stationary"]),
     "compute.dataflow: 'output-stationary' is not in dataflows"),
    (KPU, set_in(["compute", "rows"], 16.5),
     "compute.rows: expected a positive integer, got 16.5"),
]


@pytest.mark.parametrize("preset, fn, message", MUTATIONS,
                         ids=[f"{p}:{m.split(':')[0]}" for p, _, m in MUTATIONS])
def test_invalid_profiles_name_the_file_and_the_field(preset, fn, message):
    with pytest.raises(ProfileError, match=f"^{re.escape(preset)}.yaml: {message}"):
        profile_from_dict(mutate(preset, fn), where=f"{preset}.yaml")


def leaves(node, path=""):
    """(path as load messages write it, key path, value) for every scalar in a profile."""
    items = (node.items() if isinstance(node, dict) else enumerate(node))
    for key, value in items:
        here = (f"{path}[{key}]" if isinstance(key, int)
                else f"{path}.{key}" if path else str(key))
        if isinstance(value, (dict, list)):
            for sub, keys, leaf in leaves(value, here):
                yield sub, [key, *keys], leaf
        else:
            yield here, [key], value


NUMERIC = [(name, path, keys) for name in PRESETS for path, keys, v in leaves(raw(name))
           if isinstance(v, (int, float)) and not isinstance(v, bool)]
MAPPINGS = sorted({(name, tuple(keys[:i])) for name in PRESETS
                   for _, keys, _ in leaves(raw(name)) for i in range(len(keys))}, key=str)


def test_every_numeric_field_rejects_bad_values_by_name():
    assert len(NUMERIC) > 150
    for name, path, keys in NUMERIC:
        for bad in (-1, -2.5, "x", None, True, [1]):
            with pytest.raises(ProfileError) as err:
                profile_from_dict(mutate(name, set_in(keys, bad)), where=f"{name}.yaml")
            assert str(err.value).startswith(f"{name}.yaml: {path}: "), (bad, str(err.value))


def test_an_unknown_key_in_any_mapping_is_reported_with_its_path():
    checked = 0
    for name, keys in MAPPINGS:
        data = copy.deepcopy(raw(name))
        node = data
        for key in keys:
            node = node[key]
        if not isinstance(node, dict):
            continue
        node["bogus_field"] = 1
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        with pytest.raises(ProfileError) as err:
            profile_from_dict(data, where=f"{name}.yaml")
        where = f"{path}.bogus_field" if path else "bogus_field"
        assert str(err.value).startswith(f"{name}.yaml: {where}: "), str(err.value)
        checked += 1
    assert checked > 80


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**12) | st.floats()
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
ALL_PATHS = [(name, keys[:i]) for name in PRESETS for _, keys, _ in leaves(raw(name))
             for i in range(1, len(keys) + 1)]


@settings(max_examples=300)
@given(cases=st.lists(st.tuples(st.sampled_from(ALL_PATHS), JSON), min_size=1, max_size=3))
def test_any_mutation_loads_or_raises_profile_error_naming_the_file(cases):
    name = cases[0][0][0]
    data = copy.deepcopy(raw(name))
    for (other, keys), value in cases:
        if other != name:
            continue
        node = data
        try:
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue                 # an earlier mutation replaced this path's parent
    try:
        profile = profile_from_dict(data, where=f"{name}.yaml")
    except ProfileError as exc:
        assert str(exc).startswith(f"{name}.yaml: "), str(exc)
    else:
        assert profile.peak_flops(profile.dtypes[0]) > 0


def test_files_yaml_and_json_load_alike_and_errors_name_the_path(tmp_path):
    data = raw("kpu-16x16")
    (tmp_path / "kpu.json").write_text(json.dumps(data))
    (tmp_path / "kpu.yaml").write_text((PRESET_DIR / "kpu-16x16.yaml").read_text())
    assert load_profile(tmp_path / "kpu.json") == load_profile(str(tmp_path / "kpu.yaml")) \
        == load_profile("kpu-16x16")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("kpu-16x16", set_in(["compute", "cols"], 0))))
    with pytest.raises(ProfileError, match=re.escape(f"{bad}: compute.cols: expected a positive "
                                                     f"integer, got 0")):
        load_profile(bad)
    (tmp_path / "broken.yaml").write_text("name: [\n")
    with pytest.raises(ProfileError, match="broken.yaml: not valid YAML"):
        load_profile(tmp_path / "broken.yaml")
    with pytest.raises(ProfileError, match="missing.json: cannot read"):
        load_profile(tmp_path / "missing.json")


def test_scientific_notation_without_a_dot_reads_as_a_number(tmp_path):
    text = (PRESET_DIR / "kpu-16x16.yaml").read_text().replace("64.0e9", "64e9")
    assert "64e9" in text
    (tmp_path / "k.yaml").write_text(text)
    assert load_profile(tmp_path / "k.yaml").dram_bandwidth == 64e9


def test_unknown_preset_suggests_the_nearest_name():
    with pytest.raises(ProfileError, match="'gpu-h100' is neither a profile file nor a preset "
                                           r"\(did you mean 'gpu-h100-sxm'\?\)"):
        load_profile("gpu-h100")


def test_minimal_profile_without_sources_or_energy(tmp_path):
    p = profile_from_dict({
        "name": "tiny", "kind": "kpu", "clock_hz": 1e9, "source": "my notes",
        "compute": {"rows": 4, "cols": 4, "ops_per_pe_per_cycle": 2,
                    "dataflow": "weight-stationary", "dtypes": ["i8"]},
        "memory": [{"name": "SP", "capacity_bytes": 4096, "managed": "scratchpad",
                    "bytes_per_cycle": 16, "latency_cycles": 1},
                   {"name": "DRAM", "capacity_bytes": 1 << 20, "bandwidth_bytes_per_s": 1e9,
                    "latency_cycles": 100}],
        "movers": [{"kind": "dma", "count": 1, "outer": "DRAM", "inner": "SP",
                    "bandwidth_bytes_per_s": 1e9}]})
    assert isinstance(p, HardwareProfile) and p.peak_flops("int8") == 32e9
    assert p.target.source == "my notes" and p.compute.dataflows == ("weight-stationary",)
    assert p.level("SP").bandwidth_bytes_per_s == 16e9 and p.energy.mac_pj("i8") == 0.23


# --- command line ----------------------------------------------------------------------------


def test_cli_lists_every_preset_with_headline_numbers(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert "989 TFLOP/s" in out and "312 TFLOP/s" in out and "1.02 TFLOP/s" in out
    assert "3.35 TB/s" in out and "64 GB/s" in out and "SMEM 228 KiB/SM, L2 50 MiB" in out


def test_cli_shows_one_profile_and_reports_errors_in_one_line(capsys, tmp_path):
    assert main(["profiles", "kpu-16x16"]) == 0
    out = capsys.readouterr().out
    assert "16x16 systolic array" in out and "DRAM -> L3" in out and "[horowitz-2014]" in out
    assert main(["profiles", "nope"]) == 2
    assert capsys.readouterr().err.startswith("tensorir: error: 'nope' is neither")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate("cpu-avx512", set_in(["compute", "cores"], 0))))
    assert main(["profiles", str(bad)]) == 2
    assert f"{bad}: compute.cores: expected a positive integer, got 0" in capsys.readouterr().err


def test_cli_entry_point_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "tensorir.cli", "profiles"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "gpu-a100-sxm" in proc.stdout, proc.stderr


def test_sustained_fraction_scales_bandwidth_and_is_checked(tmp_path):
    import copy

    import yaml
    from tensorir.errors import ProfileError
    from tensorir.target import preset_path, read_profile_data
    data = copy.deepcopy(read_profile_data(preset_path("kpu-16x16")))
    data["memory"][-1]["sustained_fraction"] = 0.5
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(data))
    assert close(load_profile(path).dram_bandwidth, 0.5 * load_profile("kpu-16x16").dram_bandwidth)
    # the KPU's DMA engines move at most what DRAM sustains: a streaming Add slows down with it
    # and stays above its roofline
    from backends.cost import roofline_seconds
    from backends.simulate import simulate
    from frontends.zoo import elementwise_add
    half, full = load_profile(path), load_profile("kpu-16x16")
    add_half, add_full = (simulate(elementwise_add(1 << 20), p).kernels[0] for p in (half, full))
    assert add_half.time_s >= roofline_seconds(add_half, half)
    assert add_half.time_s > 1.5 * add_full.time_s
    data["memory"][-1]["sustained_fraction"] = 1.5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=r"half.yaml.*sustained_fraction"):
        load_profile(path)
