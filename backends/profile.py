"""Hardware profiles: a CPU, a KPU or a GPU described as a validated YAML or JSON file.

A profile is data (Timeloop's architecture files, SCALE-Sim's configs). Its ``memory`` section,
innermost level first, is the :class:`tensorir.target.Target` that tiling plans for (read by
:mod:`tensorir.target`, whose checks it reuses); the rest is what the simulators add: a clock,
compute units per kind, per-level bandwidth, latency, associativity and energy, and the KPU's
data movers. Loading validates everything and names the file and the field of the first problem:
``gpu-h100-sxm.yaml: compute.sm_count: expected a positive integer, got -1``.

Presets ship as package data in ``tensorir/profiles/``; ``load_profile("kpu-16x16")`` reads
one, ``load_profile("my.yaml")`` a file, ``list_presets()`` names them. The schema is in
``docs/profiles.md``.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from typing import Any, Iterable, Mapping, Union

import attrs

from tensorir.dtypes import DType
from tensorir.errors import ProfileError
from tensorir.table import format_table, si
from tensorir.target import (Managed, MemoryLevel, Target, _field, is_profile_path, memory_levels,
                             preset_names, preset_path, read_profile_data, source_text)

KINDS = ("cpu", "kpu", "gpu")

#: Element types a profile may rate, with their widths in bits: tensorir's own short names plus
#: ``tf32`` (tensor-core TF32, stored as 32 bits) and ``f8`` (FP8, E4M3 or E5M2).
DTYPE_BITS = {"f64": 64, "f32": 32, "tf32": 32, "f16": 16, "bf16": 16, "f8": 8,
              "i32": 32, "i16": 16, "i8": 8, "i4": 4, "u8": 8}
_FLOAT = ("f64", "f32", "tf32", "f16", "bf16", "f8")
_ALIASES = {"fp8": "f8", "float8": "f8", "tensorfloat32": "tf32"}

DATAFLOWS = ("output-stationary", "weight-stationary", "input-stationary")
MOVER_KINDS = ("dma", "block_mover", "streamer")
UNIT_KINDS = ("vector", "matrix")

# --- default energies: M. Horowitz, ISSCC 2014, 45 nm, 0.9 V --------------------------------

HOROWITZ_2014_ID = "horowitz-2014"
HOROWITZ_2014_TITLE = ("M. Horowitz, Computing's energy problem (and what we can do about it), "
                       "ISSCC 2014: 45 nm energies per operation and per 64-bit memory access")
HOROWITZ_2014_URL = "https://doi.org/10.1109/ISSCC.2014.6757323"

#: pJ per add and per multiply (Horowitz 2014, 45 nm).
HOROWITZ_OP_PJ = {"i8": (0.03, 0.2), "i32": (0.1, 3.1), "f16": (0.4, 1.1), "f32": (0.9, 3.7)}
#: pJ per 64-bit read of an SRAM of this many bytes (8 KB, 32 KB, 1 MB; Horowitz 2014).
HOROWITZ_SRAM_PJ_PER_64BIT = ((8 << 10, 10.0), (32 << 10, 20.0), (1 << 20, 100.0))
#: pJ per 64-bit DRAM access: the low end of Horowitz's 1.3-2.6 nJ.
HOROWITZ_DRAM_PJ_PER_64BIT = 1300.0


def sram_pj_per_byte(capacity_bytes: int) -> float:
    """Energy per byte read from an SRAM of this capacity: Horowitz's three sizes, interpolated
    linearly in log(capacity) and log(energy) between them and clamped outside 8 KB..1 MB."""
    points = HOROWITZ_SRAM_PJ_PER_64BIT
    if capacity_bytes <= points[0][0]:
        return points[0][1] / 8
    for (c0, e0), (c1, e1) in zip(points, points[1:]):
        if capacity_bytes <= c1:
            t = math.log(capacity_bytes / c0) / math.log(c1 / c0)
            return e0 * (e1 / e0) ** t / 8
    return points[-1][1] / 8


def dram_pj_per_byte() -> float:
    return HOROWITZ_DRAM_PJ_PER_64BIT / 8


def dtype_name(dtype: DType | str) -> str:
    """A profile's name for an element type: ``DType.float16``, ``"float16"`` and ``"f16"``
    give ``"f16"``; ``"tf32"`` and ``"f8"`` (or ``"fp8"``) exist only in profiles."""
    if isinstance(dtype, DType):
        return dtype.short
    text = str(dtype)
    if text in DTYPE_BITS:
        return text
    if text.lower() in _ALIASES:
        return _ALIASES[text.lower()]
    return DType.parse(text).short


# --- the profile's parts -----------------------------------------------------------------------


@attrs.frozen
class Source:
    """One cited document: ``id`` is how sections refer to it (``source: h100-whitepaper``)."""

    id: str
    title: str
    url: str = ""


@attrs.frozen
class Level:
    """A memory level: what tiling reads (``memory_level``) plus what simulators need.

    ``bandwidth_bytes_per_s`` is the peak read bandwidth from this level toward the next inner
    level (from the innermost level, into the compute units): per instance for a private level
    (one per core or SM), in total for a ``shared`` one. ``associativity`` is None for
    scratchpads and for caches whose ways the profile does not give.
    """

    name: str
    capacity_bytes: int
    line_bytes: int
    managed: Managed
    double_buffered: bool
    bandwidth_bytes_per_s: float
    latency_cycles: float
    associativity: int | None = None
    shared: bool = False
    read_pj_per_byte: float = 0.0
    write_pj_per_byte: float = 0.0
    sources: tuple[str, ...] = ()
    sustained_fraction: float = 1.0
    """The share of the peak bandwidth the level can sustain at all (DRAM refresh and
    read/write turnarounds take the rest); :meth:`HardwareProfile.bandwidth` applies it."""

    @property
    def memory_level(self) -> MemoryLevel:
        return MemoryLevel(self.name, self.capacity_bytes, self.line_bytes, self.managed,
                           self.double_buffered)

    @property
    def is_cache(self) -> bool:
        return self.managed is Managed.CACHE

    @property
    def sets(self) -> int | None:
        """Sets of a set-associative cache (capacity / (line x ways)); None without ways."""
        if self.associativity is None:
            return None
        return self.capacity_bytes // (self.line_bytes * self.associativity)


def _pairs(mapping: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(mapping.items())


@attrs.frozen
class ComputeUnit:
    """``count`` identical units (cores, SMs, arrays) at ``clock_hz``, each doing
    ``flops_per_cycle[dtype]`` FLOPs (or integer ops) per cycle."""

    name: str
    kind: str
    count: int
    clock_hz: float
    flops_per_cycle: tuple[tuple[str, float], ...] = attrs.field(converter=_pairs)
    sources: tuple[str, ...] = ()

    @property
    def rates(self) -> dict[str, float]:
        return dict(self.flops_per_cycle)

    def supports(self, dtype: DType | str) -> bool:
        return dtype_name(dtype) in self.rates

    def peak_flops(self, dtype: DType | str) -> float:
        rate = self.rates.get(dtype_name(dtype))
        if rate is None:
            raise ProfileError(f"compute unit {self.name!r} does not run {dtype_name(dtype)} "
                               f"(it runs {', '.join(self.rates)})")
        return self.count * rate * self.clock_hz


@attrs.frozen
class CpuCompute:
    """``cores`` x ``fma_units`` SIMD FMA units of ``vector_bits`` each; a dtype in
    ``fma_dtypes`` does ``fma_units x vector_bits / bits x 2`` FLOPs per core per cycle."""

    cores: int
    vector_bits: int
    fma_units: int
    fma_dtypes: tuple[str, ...]
    clock_hz: float
    sources: tuple[str, ...] = ()

    def lanes(self, dtype: DType | str) -> int:
        return self.vector_bits // DTYPE_BITS[dtype_name(dtype)]

    @property
    def units(self) -> tuple[ComputeUnit, ...]:
        rates = {d: self.fma_units * self.lanes(d) * 2 for d in self.fma_dtypes}
        return (ComputeUnit("simd", "vector", self.cores, self.clock_hz, rates, self.sources),)


@attrs.frozen
class KpuCompute:
    """A ``rows x cols`` systolic array, ``ops_per_pe_per_cycle`` per PE for every dtype in
    ``dtypes``; ``dataflow`` is the default of ``dataflows``."""

    rows: int
    cols: int
    ops_per_pe_per_cycle: int
    dataflow: str
    dataflows: tuple[str, ...]
    dtypes: tuple[str, ...]
    clock_hz: float
    sources: tuple[str, ...] = ()

    @property
    def pe_count(self) -> int:
        return self.rows * self.cols

    @property
    def units(self) -> tuple[ComputeUnit, ...]:
        rate = self.pe_count * self.ops_per_pe_per_cycle
        return (ComputeUnit("array", "matrix", 1, self.clock_hz, {d: rate for d in self.dtypes},
                            self.sources),)


@attrs.frozen
class GpuCompute:
    """SMs, their occupancy limits and their compute units (``units``: tensor cores, CUDA cores,
    each with FLOPs per cycle per SM by dtype and its own clock)."""

    sm_count: int
    warp_size: int
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    max_threads_per_block: int
    registers_per_sm: int
    max_registers_per_thread: int
    max_shared_memory_per_block_bytes: int
    launch_overhead_s: float
    units: tuple[ComputeUnit, ...]
    sources: tuple[str, ...] = ()


Compute = Union[CpuCompute, KpuCompute, GpuCompute]


@attrs.frozen
class DataMover:
    """``count`` engines of one kind moving data between adjacent levels ``outer`` and
    ``inner``, each at ``bandwidth_bytes_per_s``."""

    kind: str
    count: int
    outer: str
    inner: str
    bandwidth_bytes_per_s: float

    @property
    def total_bandwidth_bytes_per_s(self) -> float:
        return self.count * self.bandwidth_bytes_per_s


@attrs.frozen
class EnergyTable:
    """pJ per add and per multiply by dtype: Horowitz 2014 unless the profile overrides."""

    pj_per_op: tuple[tuple[str, float, float], ...]
    sources: tuple[str, ...] = (HOROWITZ_2014_ID,)

    def _entry(self, dtype: DType | str) -> tuple[float, float]:
        """The dtype's (add, mul) energies; a dtype the table lacks takes the narrowest listed
        dtype of its family (float or integer) at least as wide, else the widest listed."""
        name = dtype_name(dtype)
        table = {d: (a, m) for d, a, m in self.pj_per_op}
        if name in table:
            return table[name]
        family = [d for d in table if (d in _FLOAT) == (name in _FLOAT)] or list(table)
        # a dtype without a width of its own (bool) counts as the narrowest
        wider = [d for d in family if DTYPE_BITS[d] >= DTYPE_BITS.get(name, 1)]
        pick = (min(wider, key=lambda d: DTYPE_BITS[d]) if wider
                else max(family, key=lambda d: DTYPE_BITS[d]))
        return table[pick]

    def op_pj(self, dtype: DType | str, op: str) -> float:
        """Energy of one ``"add"`` or ``"mul"`` in this dtype, in pJ."""
        add, mul = self._entry(dtype)
        if op not in ("add", "mul"):
            raise ProfileError(f"energy: op must be 'add' or 'mul', got {op!r}")
        return add if op == "add" else mul

    def mac_pj(self, dtype: DType | str) -> float:
        """One multiply-accumulate (two FLOPs): a multiply and an add, in pJ."""
        add, mul = self._entry(dtype)
        return add + mul


def default_energy() -> EnergyTable:
    return EnergyTable(tuple((d, a, m) for d, (a, m) in HOROWITZ_OP_PJ.items()))


@attrs.frozen(cache_hash=True)   # immutable, and a key of every per-profile memo
class HardwareProfile:
    """A validated hardware profile; see ``docs/profiles.md``."""

    name: str
    kind: str
    clock_hz: float
    levels: tuple[Level, ...]
    compute: Compute
    target: Target
    energy: EnergyTable = attrs.field(factory=default_energy)
    movers: tuple[DataMover, ...] = ()
    sources: tuple[Source, ...] = ()
    description: str = ""
    path: str = attrs.field(default="", eq=False)

    @property
    def units(self) -> tuple[ComputeUnit, ...]:
        return self.compute.units

    @property
    def parallel_units(self) -> int:
        """Copies of each private level: cores (cpu), SMs (gpu), 1 (kpu)."""
        if isinstance(self.compute, CpuCompute):
            return self.compute.cores
        if isinstance(self.compute, GpuCompute):
            return self.compute.sm_count
        return 1

    @property
    def dtypes(self) -> tuple[str, ...]:
        """Every dtype some compute unit runs, widest first."""
        names = {d for u in self.units for d in u.rates}
        return tuple(d for d in DTYPE_BITS if d in names)

    def supports(self, dtype: DType | str) -> bool:
        return any(u.supports(dtype) for u in self.units)

    def peak_flops(self, dtype: DType | str = "f32", unit: str | None = None) -> float:
        """Peak FLOPs (integer ops for integer dtypes) per second in ``dtype``: the fastest unit
        that runs it, or the named ``unit``."""
        name = dtype_name(dtype)
        units = [u for u in self.units if unit is None or u.name == unit]
        if unit is not None and not units:
            raise ProfileError(f"{self.name}: no compute unit {unit!r} (units: "
                               f"{', '.join(u.name for u in self.units)})")
        rates = [u.peak_flops(name) for u in units if u.supports(name)]
        if not rates:
            raise ProfileError(f"{self.name}: no compute unit runs {name} (it runs "
                               f"{', '.join(self.dtypes)})")
        return max(rates)

    # memory

    @property
    def main_memory(self) -> Level:
        return self.levels[-1]

    @property
    def on_chip(self) -> tuple[Level, ...]:
        return self.levels[:-1]

    def level_index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        raise ProfileError(f"{self.name}: no memory level {name!r} (levels: "
                           f"{', '.join(lv.name for lv in self.levels)})")

    def level(self, name: str) -> Level:
        return self.levels[self.level_index(name)]

    def instances(self, level: str | Level) -> int:
        """How many copies of the level there are: ``parallel_units`` if private, else 1."""
        lv = self.level(level) if isinstance(level, str) else level
        return 1 if lv.shared else self.parallel_units

    def bandwidth(self, a: str, b: str | None = None) -> float:
        """Bytes per second, all instances together, between adjacent levels ``a`` and ``b``
        (either order), or from level ``a`` toward the next inner one (from the innermost, into
        the compute units) when ``b`` is None."""
        i = self.level_index(a)
        if b is not None:
            j = self.level_index(b)
            if abs(i - j) != 1:
                raise ProfileError(f"{self.name}: levels {a!r} and {b!r} are not adjacent "
                                   f"(levels, innermost first: "
                                   f"{', '.join(lv.name for lv in self.levels)})")
            i = max(i, j)
        lv = self.levels[i]
        return lv.bandwidth_bytes_per_s * lv.sustained_fraction * self.instances(lv)

    @property
    def dram_bandwidth(self) -> float:
        """Main memory's bandwidth into the chip, bytes per second."""
        return self.bandwidth(self.main_memory.name)

    def mover(self, outer: str, inner: str) -> DataMover | None:
        for m in self.movers:
            if m.outer == outer and m.inner == inner:
                return m
        return None

    def source(self, source_id: str) -> Source:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise ProfileError(f"{self.name}: no source {source_id!r}")

    def seconds(self, cycles: float) -> float:
        return cycles / self.clock_hz

    def describe(self) -> str:
        """Every fact of the profile as text (``tensorir profiles NAME``)."""
        return _describe(self)


# --- loading -----------------------------------------------------------------------------------


def list_presets() -> list[str]:
    """Names of the shipped profiles, sorted (``tensorir/profiles/*.yaml``)."""
    return preset_names()


def load_profile(spec: "HardwareProfile | str | os.PathLike") -> HardwareProfile:
    """A preset name (``"gpu-h100-sxm"``) or a path to a ``.yaml``/``.json`` profile, validated;
    every problem raises ProfileError naming the file and the field."""
    if isinstance(spec, HardwareProfile):
        return spec
    if is_profile_path(spec):
        path = os.fspath(spec)
        return profile_from_dict(read_profile_data(path), where=path, path=path)
    return _load_preset(str(spec))


@functools.lru_cache(maxsize=None)
def _load_preset(name: str) -> HardwareProfile:
    path = preset_path(name)
    profile = profile_from_dict(read_profile_data(path), where=path.name, path=str(path))
    if profile.name != name:
        raise ProfileError(f"{path.name}: name: a preset's name must be its file's stem "
                           f"{name!r}, got {profile.name!r}")
    return profile


def profile_from_dict(data: Any, where: str = "profile", path: str = "") -> HardwareProfile:
    """A HardwareProfile from parsed YAML/JSON content; ``where`` names it in messages."""
    return _Reader(where).profile(data, path)


_TOP = ("name", "kind", "description", "clock_hz", "source", "sources", "memory", "compute",
        "movers", "energy")
_LEVEL = ("name", "capacity_bytes", "line_bytes", "managed", "double_buffered",
          "bandwidth_bytes_per_s", "bytes_per_cycle", "latency_cycles", "associativity",
          "shared", "energy_pj_per_byte", "sustained_fraction", "source", "note")
_COMPUTE = {
    "cpu": ("cores", "vector_bits", "fma_units", "fma_dtypes", "source"),
    "kpu": ("rows", "cols", "ops_per_pe_per_cycle", "dataflow", "dataflows", "dtypes", "source"),
    "gpu": ("sm_count", "warp_size", "max_threads_per_sm", "max_warps_per_sm",
            "max_blocks_per_sm", "max_threads_per_block", "registers_per_sm",
            "max_registers_per_thread", "max_shared_memory_per_block_bytes",
            "launch_overhead_s", "units", "source"),
}
_UNIT = ("kind", "clock_hz", "flops_per_cycle_per_sm", "source")
_MOVER = ("kind", "count", "outer", "inner", "bandwidth_bytes_per_s")
_ENERGY = ("source", "pj_per_op")


class _Reader:
    """Validation with messages ``<file>: <field path>: <problem>``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.source_ids: set[str] | None = None

    # primitives

    def fail(self, path: str, message: str) -> ProfileError:
        return ProfileError(f"{self.label}: {path}: {message}" if path
                            else f"{self.label}: {message}")

    def at(self, path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def mapping(self, value: Any, path: str, what: str = "a mapping") -> Mapping:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected {what}, got {value!r}")
        return value

    def keys(self, m: Mapping, path: str, allowed: Iterable[str],
             required: Iterable[str] = ()) -> None:
        allowed = tuple(allowed)
        for key in m:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(self.at(path, str(key)),
                                f"unknown field; {hint}(expected one of: {', '.join(allowed)})")
        for key in required:
            if key not in m:
                raise self.fail(self.at(path, key), "missing")

    def get(self, m: Mapping, key: str, path: str, kind: type, default: Any = None,
            required: bool = True) -> Any:
        """tensorir.target's field check (positive int, bool, non-empty str)."""
        try:
            return _field(m, key, "\0", kind, default, required)
        except ProfileError as exc:
            raise self.fail(self.at(path, key), str(exc).split(": ", 1)[1]) from None

    def number(self, m: Mapping, key: str, path: str, default: float | None = None,
               required: bool = True, zero: bool = False) -> float:
        if key not in m:
            if required:
                raise self.fail(self.at(path, key), "missing")
            return default
        value = m[key]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and (value > 0 or (zero and value == 0)))
        if not ok:
            sign = "non-negative" if zero else "positive"
            raise self.fail(self.at(path, key), f"expected a {sign} number, got {value!r}")
        return float(value)

    def choice(self, m: Mapping, key: str, path: str, options: tuple[str, ...],
               default: str | None = None) -> str:
        value = m.get(key, default)
        if value is None:
            raise self.fail(self.at(path, key), "missing")
        if value not in options:
            raise self.fail(self.at(path, key),
                            f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def dtype_list(self, m: Mapping, key: str, path: str, default: Any = None) -> tuple[str, ...]:
        value = m.get(key, default)
        where = self.at(path, key)
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"expected a non-empty list of dtypes, got {value!r}")
        for i, d in enumerate(value):
            self.dtype_key(d, f"{where}[{i}]")
        if len(set(value)) != len(value):
            raise self.fail(where, f"a dtype appears twice in {value!r}")
        return tuple(value)

    def dtype_key(self, d: Any, where: str) -> str:
        if not isinstance(d, str) or d not in DTYPE_BITS:
            raise self.fail(where, f"unknown dtype {d!r}; expected one of "
                                   f"{', '.join(DTYPE_BITS)}")
        return d

    def refs(self, m: Mapping, path: str) -> tuple[str, ...]:
        """A ``source:`` entry: an id or a list of ids of the ``sources`` section (free text
        when the profile has no ``sources`` section)."""
        if "source" not in m:
            return ()
        value = m["source"]
        where = self.at(path, "source")
        ids = value if isinstance(value, list) else [value]
        if not ids or not all(isinstance(s, str) and s for s in ids):
            raise self.fail(where, f"expected a source id or a list of them, got {value!r}")
        if self.source_ids is not None:
            for s in ids:
                if s not in self.source_ids:
                    known = ", ".join(sorted(self.source_ids)) or "none"
                    raise self.fail(where, f"unknown source {s!r} (sources: {known})")
        return tuple(ids)

    # sections

    def profile(self, data: Any, path: str) -> HardwareProfile:
        data = self.mapping(data, "", "a mapping with name, kind, clock_hz, memory and compute")
        self.keys(data, "", _TOP, required=("name", "kind", "clock_hz", "memory", "compute"))
        name = self.get(data, "name", "", str)
        kind = self.choice(data, "kind", "", KINDS)
        description = data.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", f"expected a string, got {description!r}")
        clock = self.number(data, "clock_hz", "")
        sources = self.sources(data.get("sources"))
        top_refs = self.refs(data, "")
        levels = self.memory(data["memory"], clock)
        compute = self.compute(kind, data["compute"], clock, levels)
        movers = self.movers(kind, data.get("movers"), levels)
        energy = self.energy(data.get("energy"))
        target = Target(name, tuple(lv.memory_level for lv in levels), source_text(top_refs))
        return HardwareProfile(name, kind, clock, levels, compute, target, energy, movers,
                               sources, description, path=path)

    def sources(self, value: Any) -> tuple[Source, ...]:
        if value is None:
            return ()
        value = self.mapping(value, "sources", "a mapping from source id to {title, url}")
        out = []
        for sid, entry in value.items():
            where = f"sources.{sid}"
            entry = self.mapping(entry, where, "a mapping with title and url")
            self.keys(entry, where, ("title", "url"), required=("title",))
            title = self.get(entry, "title", where, str)
            url = self.get(entry, "url", where, str, "", required=False)
            out.append(Source(str(sid), title, url))
        self.source_ids = {s.id for s in out}
        return tuple(out)

    def memory(self, memory: Any, clock: float) -> tuple[Level, ...]:
        base = memory_levels(memory, f"{self.label}: memory")   # tensorir.target's checks
        levels: list[Level] = []
        last = len(base) - 1
        for i, (entry, lv) in enumerate(zip(memory, base)):
            where = f"memory[{i}]"
            self.keys(entry, where, _LEVEL, required=("latency_cycles",))
            has_bw = "bandwidth_bytes_per_s" in entry
            if has_bw == ("bytes_per_cycle" in entry):
                raise self.fail(f"{where}.bandwidth_bytes_per_s",
                                "give exactly one of bandwidth_bytes_per_s and bytes_per_cycle"
                                if has_bw else "missing (or bytes_per_cycle)")
            bandwidth = (self.number(entry, "bandwidth_bytes_per_s", where) if has_bw
                         else self.number(entry, "bytes_per_cycle", where) * clock)
            latency = self.number(entry, "latency_cycles", where)
            ways = None
            if "associativity" in entry:
                ways = self.get(entry, "associativity", where, int)
                if lv.managed is not Managed.CACHE or i == last:
                    raise self.fail(f"{where}.associativity",
                                    "only an on-chip cache has ways (this level is "
                                    f"{'main memory' if i == last else 'a scratchpad'})")
                if lv.capacity_bytes % (lv.line_bytes * ways):
                    raise self.fail(f"{where}.associativity",
                                    f"{lv.capacity_bytes} bytes do not divide into {ways}-way "
                                    f"sets of {lv.line_bytes}-byte lines")
            shared = self.get(entry, "shared", where, bool, i == last, required=False)
            if levels and levels[-1].shared and not shared:
                raise self.fail(f"{where}.shared",
                                f"false, but the inner level {levels[-1].name!r} is shared; a "
                                f"private level cannot sit outside a shared one")
            if levels and latency < levels[-1].latency_cycles:
                raise self.fail(f"{where}.latency_cycles",
                                f"{latency:g} is below the inner level {levels[-1].name!r} "
                                f"({levels[-1].latency_cycles:g}); levels go innermost first")
            read, write = self.level_energy(entry, where, lv, i == last)
            sustained = self.number(entry, "sustained_fraction", where, 1.0, required=False)
            if sustained > 1:
                raise self.fail(f"{where}.sustained_fraction",
                                f"expected a share of the peak in (0, 1], got {sustained:g}")
            levels.append(Level(lv.name, lv.capacity_bytes, lv.line_bytes, lv.managed,
                                lv.double_buffered, bandwidth, latency, ways, shared, read,
                                write, self.refs(entry, where), sustained))
        return tuple(levels)

    def level_energy(self, entry: Mapping, where: str, lv: MemoryLevel,
                     main: bool) -> tuple[float, float]:
        default = dram_pj_per_byte() if main else sram_pj_per_byte(lv.capacity_bytes)
        value = entry.get("energy_pj_per_byte")
        if value is None:
            return default, default
        if isinstance(value, Mapping):
            at = f"{where}.energy_pj_per_byte"
            self.keys(value, at, ("read", "write"), required=("read", "write"))
            return self.number(value, "read", at), self.number(value, "write", at)
        e = self.number(entry, "energy_pj_per_byte", where)
        return e, e

    def compute(self, kind: str, value: Any, clock: float,
                levels: tuple[Level, ...]) -> Compute:
        where = "compute"
        c = self.mapping(value, where)
        allowed = _COMPUTE[kind]
        self.keys(c, where, allowed, required=[k for k in allowed
                                               if k not in ("source", "dataflows")])
        refs = self.refs(c, where)
        if kind == "cpu":
            bits = self.get(c, "vector_bits", where, int)
            dtypes = self.dtype_list(c, "fma_dtypes", where)
            for i, d in enumerate(dtypes):
                if bits % DTYPE_BITS[d]:
                    raise self.fail(f"{where}.fma_dtypes[{i}]",
                                    f"{d} does not divide a {bits}-bit vector into lanes")
            return CpuCompute(self.get(c, "cores", where, int), bits,
                              self.get(c, "fma_units", where, int), dtypes, clock, refs)
        if kind == "kpu":
            dataflows = c.get("dataflows", [c.get("dataflow")])
            if not isinstance(dataflows, list) or not dataflows:
                raise self.fail(f"{where}.dataflows",
                                f"expected a non-empty list, got {dataflows!r}")
            for i, flow in enumerate(dataflows):
                if flow not in DATAFLOWS:
                    raise self.fail(f"{where}.dataflows[{i}]",
                                    f"expected one of {', '.join(DATAFLOWS)}, got {flow!r}")
            dataflow = self.choice(c, "dataflow", where, DATAFLOWS)
            if dataflow not in dataflows:
                raise self.fail(f"{where}.dataflow",
                                f"{dataflow!r} is not in dataflows {dataflows!r}")
            return KpuCompute(self.get(c, "rows", where, int), self.get(c, "cols", where, int),
                              self.get(c, "ops_per_pe_per_cycle", where, int), dataflow,
                              tuple(dataflows), self.dtype_list(c, "dtypes", where), clock, refs)
        return self.gpu(c, where, clock, levels, refs)

    def gpu(self, c: Mapping, where: str, clock: float, levels: tuple[Level, ...],
            refs: tuple[str, ...]) -> GpuCompute:
        ints = {k: self.get(c, k, where, int) for k in _COMPUTE["gpu"]
                if k not in ("launch_overhead_s", "units", "source")}
        launch = self.number(c, "launch_overhead_s", where, zero=True)
        if ints["max_warps_per_sm"] * ints["warp_size"] != ints["max_threads_per_sm"]:
            raise self.fail(f"{where}.max_threads_per_sm",
                            f"{ints['max_threads_per_sm']} is not max_warps_per_sm x warp_size "
                            f"= {ints['max_warps_per_sm'] * ints['warp_size']}")
        if ints["max_threads_per_block"] > ints["max_threads_per_sm"]:
            raise self.fail(f"{where}.max_threads_per_block",
                            f"{ints['max_threads_per_block']} exceeds max_threads_per_sm "
                            f"({ints['max_threads_per_sm']})")
        smem = levels[0]
        if smem.managed is not Managed.SCRATCHPAD or smem.shared:
            raise self.fail("memory[0]", f"a gpu's innermost level is the per-SM shared memory: "
                                         f"a scratchpad, not shared; got {smem.name!r}")
        if ints["max_shared_memory_per_block_bytes"] > smem.capacity_bytes:
            raise self.fail(f"{where}.max_shared_memory_per_block_bytes",
                            f"{ints['max_shared_memory_per_block_bytes']} exceeds the shared "
                            f"memory per SM ({smem.name}: {smem.capacity_bytes})")
        at = f"{where}.units"
        units_data = self.mapping(c["units"], at, "a mapping from unit name to its rates")
        if not units_data:
            raise self.fail(at, "expected at least one compute unit")
        units = []
        for uname, u in units_data.items():
            uwhere = f"{at}.{uname}"
            u = self.mapping(u, uwhere)
            self.keys(u, uwhere, _UNIT, required=("kind", "flops_per_cycle_per_sm"))
            ukind = self.choice(u, "kind", uwhere, UNIT_KINDS)
            uclock = self.number(u, "clock_hz", uwhere, clock, required=False)
            rwhere = f"{uwhere}.flops_per_cycle_per_sm"
            rates_data = self.mapping(u["flops_per_cycle_per_sm"], rwhere,
                                      "a mapping from dtype to FLOPs per cycle per SM")
            if not rates_data:
                raise self.fail(rwhere, "expected at least one dtype")
            rates = {self.dtype_key(d, f"{rwhere}.{d}"): self.number(rates_data, d, rwhere)
                     for d in rates_data}
            units.append(ComputeUnit(str(uname), ukind, ints["sm_count"], uclock, rates,
                                     self.refs(u, uwhere)))
        return GpuCompute(units=tuple(units), launch_overhead_s=launch, sources=refs, **ints)

    def movers(self, kind: str, value: Any, levels: tuple[Level, ...]) -> tuple[DataMover, ...]:
        if value is None:
            if kind == "kpu":
                raise self.fail("movers", "missing: a kpu moves data between its levels with "
                                          "DMA engines, block movers and streamers")
            return ()
        if kind != "kpu":
            raise self.fail("movers", f"only a kpu profile has data movers, not a {kind}")
        if not isinstance(value, list):
            raise self.fail("movers", f"expected a list of engines, got {value!r}")
        names = [lv.name for lv in levels]
        out: list[DataMover] = []
        for i, m in enumerate(value):
            where = f"movers[{i}]"
            m = self.mapping(m, where)
            self.keys(m, where, _MOVER, required=_MOVER)
            mkind = self.choice(m, "kind", where, MOVER_KINDS)
            count = self.get(m, "count", where, int)
            outer = self.choice(m, "outer", where, tuple(names))
            inner = self.choice(m, "inner", where, tuple(names))
            if names.index(outer) != names.index(inner) + 1:
                raise self.fail(f"{where}.inner", f"{inner!r} is not the level just inside "
                                                  f"{outer!r} (levels, innermost first: "
                                                  f"{', '.join(names)})")
            bw = self.number(m, "bandwidth_bytes_per_s", where)
            if any(o.outer == outer for o in out):
                raise self.fail(f"{where}.outer", f"a second engine kind between {outer!r} and "
                                                  f"{inner!r}")
            level = levels[names.index(outer)]
            if not math.isclose(count * bw, level.bandwidth_bytes_per_s, rel_tol=1e-9):
                raise self.fail(f"{where}.bandwidth_bytes_per_s",
                                f"{count} x {bw:g} B/s = {count * bw:g} B/s, but "
                                f"memory[{names.index(outer)}] ({outer}) gives "
                                f"{level.bandwidth_bytes_per_s:g} B/s")
            out.append(DataMover(mkind, count, outer, inner, bw))
        for outer, inner in zip(names[1:], names):
            if not any(m.outer == outer for m in out):
                raise self.fail("movers", f"no engine moves data between {outer!r} and "
                                          f"{inner!r}")
        return tuple(out)

    def energy(self, value: Any) -> EnergyTable:
        if value is None:
            return default_energy()
        e = self.mapping(value, "energy")
        self.keys(e, "energy", _ENERGY)
        table = dict(HOROWITZ_OP_PJ)
        if "pj_per_op" in e:
            at = "energy.pj_per_op"
            ops = self.mapping(e["pj_per_op"], at, "a mapping from dtype to {add, mul} in pJ")
            for d, entry in ops.items():
                where = f"{at}.{d}"
                self.dtype_key(d, where)
                entry = self.mapping(entry, where, "a mapping with add and mul in pJ")
                self.keys(entry, where, ("add", "mul"), required=("add", "mul"))
                table[d] = (self.number(entry, "add", where), self.number(entry, "mul", where))
        refs = self.refs(e, "energy") or (HOROWITZ_2014_ID,)
        return EnergyTable(tuple((d, a, m) for d, (a, m) in table.items()), refs)


# --- text ------------------------------------------------------------------------------------


def format_rate(x: float, unit: str) -> str:
    """``9.894e14, "FLOP/s" -> '989 TFLOP/s'``: SI prefixes up to peta, 3 significant digits."""
    if x >= 1e15:
        return f"{x / 1e15:.3g} P{unit}"
    return si(x, unit)


def format_bytes(n: float) -> str:
    """``32768 -> '32 KiB'``, ``1441792 -> '1.38 MiB'``: binary prefixes, up to 3 digits."""
    for factor, unit in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def _describe(p: HardwareProfile) -> str:
    lines = [f"{p.name} ({p.kind}): {p.description}".rstrip(": ")]
    if p.path:
        lines.append(f"file: {p.path}")
    c = p.compute
    head = f"clock {si(p.clock_hz, 'Hz')}"
    if isinstance(c, CpuCompute):
        head += (f"; {c.cores} core(s) x {c.fma_units} FMA units x {c.vector_bits}-bit vectors "
                 f"({', '.join(c.fma_dtypes)})")
    elif isinstance(c, KpuCompute):
        head += (f"; {c.rows}x{c.cols} systolic array, {c.ops_per_pe_per_cycle} ops/PE/cycle; "
                 f"dataflow {c.dataflow} (supports {', '.join(c.dataflows)})")
    else:
        head += (f"; {c.sm_count} SMs, warp {c.warp_size}; per SM {c.max_warps_per_sm} warps, "
                 f"{c.max_threads_per_sm} threads, {c.max_blocks_per_sm} blocks, "
                 f"{c.registers_per_sm} registers; per block {c.max_threads_per_block} threads, "
                 f"{format_bytes(c.max_shared_memory_per_block_bytes)} shared memory, "
                 f"{c.max_registers_per_thread} registers/thread; launch overhead "
                 f"{c.launch_overhead_s * 1e6:g} us")
    lines += [head, ""]
    rows = [[u.name, u.kind, u.count, si(u.clock_hz, "Hz"), d, f"{r:g}",
             format_rate(u.peak_flops(d), "FLOP/s")] for u in p.units for d, r in u.flops_per_cycle]
    lines += [format_table(["unit", "kind", "count", "clock", "dtype", "FLOPs/cycle", "peak"],
                           rows, align="llrrlrr"), ""]
    rows = []
    for lv in p.levels:
        n = p.instances(lv)
        rows.append([lv.name, format_bytes(lv.capacity_bytes) + ("" if n == 1 else f" x{n}"),
                     lv.line_bytes,
                     lv.managed.value + (", double-buffered" if lv.double_buffered else ""),
                     lv.associativity or "-", si(p.bandwidth(lv.name), "B/s"),
                     f"{lv.latency_cycles:g}", "yes" if lv.shared else "no",
                     f"{lv.read_pj_per_byte:.3g}/{lv.write_pj_per_byte:.3g}"])
    lines += [format_table(["level", "capacity", "line", "managed", "ways", "bandwidth inward",
                            "latency (cycles)", "shared", "pJ/byte r/w"], rows,
                           align="lrrlrrrlr"), ""]
    if p.movers:
        rows = [[m.kind, m.count, f"{m.outer} -> {m.inner}", si(m.bandwidth_bytes_per_s, "B/s"),
                 si(m.total_bandwidth_bytes_per_s, "B/s")] for m in p.movers]
        lines += [format_table(["mover", "count", "between", "each", "total"], rows,
                               align="lrlrr"), ""]
    lines.append("energy per op (pJ, add/mul): " + ", ".join(
        f"{d} {a:g}/{m:g}" for d, a, m in p.energy.pj_per_op)
        + f"  [{', '.join(p.energy.sources)}]")
    lines.append("")
    lines.append("sources:")
    for s in p.sources:
        lines.append(f"  [{s.id}] {s.title}" + (f" <{s.url}>" if s.url else ""))
    if HOROWITZ_2014_ID in p.energy.sources and not any(s.id == HOROWITZ_2014_ID
                                                        for s in p.sources):
        lines.append(f"  [{HOROWITZ_2014_ID}] {HOROWITZ_2014_TITLE} <{HOROWITZ_2014_URL}> "
                     f"(default energies)")
    return "\n".join(lines)


__all__ = [
    "ComputeUnit", "CpuCompute", "DataMover", "EnergyTable", "GpuCompute", "HardwareProfile",
    "KpuCompute", "Level", "Source", "DTYPE_BITS", "KINDS", "dtype_name", "format_bytes",
    "format_rate",
    "list_presets", "load_profile", "profile_from_dict", "sram_pj_per_byte",
]
