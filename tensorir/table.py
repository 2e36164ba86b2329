"""Plain-text tables and human-readable numbers for the CLI and reports."""

from __future__ import annotations

from typing import Any, Sequence


def si(x: float, unit: str = "", digits: int = 3) -> str:
    """``3.79e9 -> '3.79 G'``: SI prefixes, ``digits`` significant digits."""
    if x == 0:
        return f"0 {unit}".rstrip()
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.{digits}g} {prefix}{unit}".rstrip()
    return f"{x:.{digits}g} {unit}".rstrip()


def binary_bytes(n: float) -> str:
    """Byte counts with binary prefixes: ``9.6 MiB``."""
    for factor, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}"
    return f"{int(n)} B"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 align: str | None = None, markdown: bool = False) -> str:
    """A fixed-width table; ``align`` has one of 'l'/'r' per column (numbers right by default).
    ``markdown``: a pipe table with alignment markers."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l"
                        for i in range(len(headers)))

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(row, widths, align)).rstrip()

    if markdown:
        def md(row: Sequence[str]) -> str:
            return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w)
                                     for c, w, a in zip(row, widths, align)) + " |"
        rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                              for w, a in zip(widths, align)) + "|"
        return "\n".join([md(headers), rule] + [md(row) for row in cells])
    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in cells]
    return "\n".join(lines)
