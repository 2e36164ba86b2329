"""Pipelines as text: ``"shape-inference,fold-constants,cse,fuse{max-ops=8}"``.

Items are separated by commas; options go in braces as ``key=value`` pairs (keys in kebab or
snake case), typed by the pass's options class. A name in :data:`PRESETS` expands in place.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import attrs

from tensorir.errors import PassError

from .base import Pass, get_pass

# Named pipelines; "default" is what `tensorir compile` and the simulators run.
PRESETS: dict[str, str] = {
    # clean up first (so patterns see canonical graphs), then fuse what is left
    "default": "simplify,fold-batchnorm,fold-constants,cse,dce,fuse,dce",
}

_ITEM = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def _convert(cls: type[Pass], key: str, text: str) -> Any:
    fields = {f.name: f for f in attrs.fields(cls.Options)}
    name = key.strip().replace("-", "_")
    if name not in fields:
        raise PassError(f"pass {cls.name!r} has no option {key.strip()!r}; options: "
                        f"{', '.join(f.replace('_', '-') for f in fields) or 'none'}", cls.name)
    default = fields[name].default
    text = text.strip()
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        return text
    except ValueError:
        raise PassError(f"pass {cls.name!r}: option {key.strip()!r} expects a "
                        f"{type(default).__name__}, got {text!r}", cls.name) from None


def parse_pipeline(text: str) -> list[Pass]:
    """Pass instances for a pipeline string (presets expanded)."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"cannot read the pipeline {text!r} at character {pos + 1}: expected "
                            f"name or name{{key=value,...}}")
        name, body = m.group(1), m.group(2)
        pos = m.end()
        if name in PRESETS:
            if body:
                raise PassError(f"preset {name!r} takes no options")
            passes.extend(parse_pipeline(PRESETS[name]))
            continue
        cls = get_pass(name)
        options = {}
        for pair in filter(None, (p.strip() for p in (body or "").split(","))):
            key, eq, value = pair.partition("=")
            if not eq:
                raise PassError(f"pass {name!r}: option {pair!r} needs the form key=value", name)
            options[key.strip().replace("-", "_")] = _convert(cls, key, value)
        passes.append(cls(**options))
    return passes


def resolve(pipeline: str | Sequence[Pass | str]) -> list[Pass]:
    """Pass instances from a string, or a list of passes and pipeline strings."""
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    out: list[Pass] = []
    for item in pipeline:
        if isinstance(item, Pass):
            out.append(item)
        elif isinstance(item, type) and issubclass(item, Pass):
            out.append(item())
        elif isinstance(item, str):
            out.extend(parse_pipeline(item))
        else:
            raise PassError(f"a pipeline holds passes or strings, not {type(item).__name__}")
    return out


def format_pipeline(passes: Sequence[Pass]) -> str:
    return ",".join(p.spec() for p in passes)
