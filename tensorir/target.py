"""Targets: the memory hierarchy that tiling and allocation plan for.

A target lists its memory levels from the innermost (next to the compute units) to the
outermost (main memory). Each level has a capacity and a line size, and is either a
*scratchpad*, managed explicitly by the program (tiles are copied in and out, and double
buffering halves the usable space), or a *cache*, managed implicitly by hardware.

Targets are data (Timeloop's architecture files, SCALE-Sim's configs): the ``memory`` section
of a YAML or JSON profile. The simulators read the same file and add bandwidths, latencies,
energies and compute units to it; this module reads only what passes need and ignores the rest.
The shipped presets are ``tensorir/profiles/*.yaml``: ``resolve_target("kpu-16x16")`` gives a
preset's Target, ``backends.profile.load_profile`` the whole validated profile.

.. code-block:: yaml

    name: kpu-16x16
    memory:                       # innermost first
      - {name: L1, capacity_bytes: 65536, line_bytes: 64, managed: scratchpad, double_buffered: true}
      - {name: L2, capacity_bytes: 1048576, line_bytes: 64, managed: scratchpad, double_buffered: true}
      - {name: DRAM, capacity_bytes: 8589934592, line_bytes: 64, managed: cache}
"""

from __future__ import annotations

import enum
import functools
import json
import os
import re
from pathlib import Path
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


@attrs.frozen(cache_hash=True)   # immutable, and a key of the lowering's memos
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


def memory_levels(memory: Any, where: str) -> tuple[MemoryLevel, ...]:
    """The ``memory`` list of a profile as levels, innermost first; every problem names the field.

    ``where`` prefixes the messages (``"target.memory"``, ``"kpu.yaml: memory"``); hardware
    profiles (``backends.profile``) read their levels through this function and add the fields
    the simulators need.
    """
    if not isinstance(memory, list) or not memory:
        raise ProfileError(f"{where}: expected a non-empty list of levels, innermost "
                           f"first, got {memory!r}")
    levels: list[MemoryLevel] = []
    for i, entry in enumerate(memory):
        at = f"{where}[{i}]"
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
        except (ValueError, TypeError):
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
    return tuple(levels)


def target_from_dict(data: Any, where: str = "target") -> Target:
    """A Target from a profile's parsed content; every problem names the field."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping with 'name' and 'memory', got "
                           f"{type(data).__name__}")
    name = _field(data, "name", where, str)
    levels = memory_levels(data.get("memory"), f"{where}.memory")
    return Target(name, levels, source_text(data.get("source", "")))


def source_text(source: Any) -> str:
    """A profile's ``source`` as one string: a list of source ids joins with commas."""
    if isinstance(source, (list, tuple)):
        return ", ".join(str(s) for s in source)
    return str(source)


@functools.lru_cache(maxsize=None)
def _yaml_loader():
    """PyYAML's safe loader, also reading ``3.35e12`` and ``64e9`` as floats (YAML 1.2 does;
    PyYAML's YAML 1.1 rules want a dot and a signed exponent, and would give strings)."""
    import yaml

    # libyaml's parser where PyYAML has it (10x the pure-Python one); the resolvers are the
    # same Python ones either way
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return Loader


def read_profile_data(path: str | os.PathLike) -> Any:
    """The parsed content of a YAML or JSON profile; unreadable or malformed files raise
    ProfileError naming the file."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text) if path.endswith(".json") else yaml.load(text, _yaml_loader())
    except (ValueError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                           f"{exc}") from None


def load_target(path: str | os.PathLike) -> Target:
    """Read the memory hierarchy of a YAML or JSON profile."""
    return target_from_dict(read_profile_data(path), where=os.fspath(path))


#: The shipped hardware profiles, ``tensorir/profiles/<name>.yaml`` (package data).
PRESET_DIR = Path(__file__).resolve().parent / "profiles"


def preset_names() -> list[str]:
    """Names of the shipped hardware profiles, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of a shipped profile; an unknown name raises ProfileError listing them all."""
    path = PRESET_DIR / f"{name}.yaml"
    if "/" in name or os.sep in name or not path.is_file():
        import difflib

        names = preset_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProfileError(f"{name!r} is neither a profile file nor a preset{hint}; presets: "
                           f"{', '.join(names)}")
    return path


def is_profile_path(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a file rather than a preset: an existing path, or a name ending
    in .yaml, .yml or .json."""
    text = os.fspath(spec)
    return (not isinstance(spec, str) or text.endswith((".yaml", ".yml", ".json"))
            or os.path.sep in text or os.path.exists(text))


def resolve_target(spec: "Target | str | os.PathLike") -> Target:
    """A Target from a Target, a preset name (``"kpu-16x16"``) or a YAML/JSON file path."""
    if isinstance(spec, Target):
        return spec
    if is_profile_path(spec):
        return load_target(spec)
    return target_from_dict(read_profile_data(preset_path(spec)), where=f"{spec}.yaml")
