"""Constants beside the text form: the text keeps a digest of each large constant, an ``.npz``
file keeps the data, and loading checks every digest.

    save_constants(graph, "model.npz")          # every constant that has data
    g = parse_file("model.tir"); load_constants(g, "model.npz")
"""

from __future__ import annotations

import zipfile

import numpy as np

from .errors import TensorIRError
from .ir import Graph


def save_constants(graph: Graph, path: str) -> int:
    """Write every constant that has data to ``path`` (.npz); returns how many were written."""
    arrays = {f"c{i}": np.ascontiguousarray(v.data)
              for i, v in enumerate(graph.constants) if v.data is not None}
    names = np.array([v.name for v in graph.constants if v.data is not None], dtype=object)
    np.savez(path, __names__=names, **arrays)
    return len(arrays)


def load_constants(graph: Graph, path: str) -> int:
    """Give data to the constants of ``graph`` that have none, checking each digest."""
    try:
        with np.load(path, allow_pickle=True) as f:
            names = list(f["__names__"])
            data = {name: f[f"c{i}"] for i, name in enumerate(names)}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise TensorIRError(f"{path}: not a constants file written by save_constants ({exc})") \
            from None
    filled = 0
    for v in graph.constants:
        if v.data is not None or v.name not in data:
            continue
        array = data[v.name]
        digest = v.digest
        v.data = array
        if digest is not None and v.content_digest() != digest:
            v.data = None
            raise TensorIRError(f"{path}: constant %{v.name} does not match the digest "
                                f"sha1:{digest} in the graph")
        filled += 1
    return filled
