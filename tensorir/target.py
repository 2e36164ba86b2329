"""Targets: the memory hierarchy that tiling and allocation plan for.

A target lists its memory levels from the innermost (next to the compute units) to the
outermost (main memory). Each level has a capacity and a line size, and is either a
*scratchpad*, managed explicitly by the program (tiles are copied in and out, and double
buffering halves the usable space), or a *cache*, managed implicitly by hardware.

Targets are data (Timeloop's architecture files, SCALE-Sim's configs): the ``memory`` section
of a YAML or JSON profile. The simulators read the same file and add bandwidths, latencies,
energies and compute units to it; this module reads only what passes need and ignores the rest.

.. code-block:: yaml

    name: kpu-16x16
    memory:                       # innermost first
      - {name: L1, capacity_bytes: 65536, line_bytes: 64, managed: scratchpad, double_buffered: true}
      - {name: L2, capacity_bytes: 1048576, line_bytes: 64, managed: scratchpad, double_buffered: true}
      - {name: DRAM, capacity_bytes: 8589934592, line_bytes: 64, managed: cache}
"""

from __future__ import annotations

import enum
import json
import os
from typing import Any, Mapping

import attrs

from .errors import ProfileError


class Managed(enum.Enum):
    SCRATCHPAD = "scratchpad"
    CACHE = "cache"


@attrs.frozen
class MemoryLevel:
    name: str
    capacity_bytes: int
    line_bytes: int = 64
    managed: Managed = Managed.CACHE
    double_buffered: bool = False

    @property
    def usable_bytes(self) -> int:
        """Bytes a tiling may fill: half the capacity when double buffered."""
        return self.capacity_bytes // 2 if self.double_buffered else self.capacity_bytes


@attrs.frozen
class Target:
    name: str
    levels: tuple[MemoryLevel, ...]
    source: str = ""

    @property
    def main_memory(self) -> MemoryLevel:
        return self.levels[-1]

    @property
    def on_chip(self) -> tuple[MemoryLevel, ...]:
        """Every level but main memory, innermost first."""
        return self.levels[:-1]

    def level(self, name: str) -> MemoryLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise ProfileError(f"target {self.name!r} has no memory level {name!r} (levels: "
                           f"{', '.join(lv.name for lv in self.levels)})")


def _field(entry: Mapping[str, Any], key: str, where: str, kind: type, default: Any = None,
           required: bool = True) -> Any:
    if key not in entry:
        if required:
            raise ProfileError(f"{where}.{key}: missing")
        return default
    value = entry[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ProfileError(f"{where}.{key}: expected a positive integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ProfileError(f"{where}.{key}: expected true or false, got {value!r}")
    if kind is str and (not isinstance(value, str) or not value):
        raise ProfileError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def target_from_dict(data: Any, where: str = "target") -> Target:
    """A Target from a profile's parsed content; every problem names the field."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping with 'name' and 'memory', got "
                           f"{type(data).__name__}")
    name = _field(data, "name", where, str)
    memory = data.get("memory")
    if not isinstance(memory, list) or not memory:
        raise ProfileError(f"{where}.memory: expected a non-empty list of levels, innermost "
                           f"first, got {memory!r}")
    levels: list[MemoryLevel] = []
    for i, entry in enumerate(memory):
        at = f"{where}.memory[{i}]"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{at}: expected a mapping, got {entry!r}")
        level_name = _field(entry, "name", at, str)
        capacity = _field(entry, "capacity_bytes", at, int)
        line = _field(entry, "line_bytes", at, int, 64, required=False)
        if line & (line - 1):
            raise ProfileError(f"{at}.line_bytes: expected a power of two, got {line}")
        managed_text = entry.get("managed", "cache")
        try:
            managed = Managed(managed_text)
        except ValueError:
            raise ProfileError(f"{at}.managed: expected 'scratchpad' or 'cache', got "
                               f"{managed_text!r}") from None
        double = _field(entry, "double_buffered", at, bool, False, required=False)
        if any(lv.name == level_name for lv in levels):
            raise ProfileError(f"{at}.name: level {level_name!r} appears twice")
        if levels and capacity < levels[-1].capacity_bytes:
            raise ProfileError(f"{at}.capacity_bytes: {capacity} is smaller than the inner "
                               f"level {levels[-1].name!r} ({levels[-1].capacity_bytes}); levels "
                               f"go innermost first")
        levels.append(MemoryLevel(level_name, capacity, line, managed, double))
    return Target(name, tuple(levels), str(data.get("source", "")))


def load_target(path: str | os.PathLike) -> Target:
    """Read the memory hierarchy of a YAML or JSON profile."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                           f"{exc}") from None
    return target_from_dict(data, where=path)
