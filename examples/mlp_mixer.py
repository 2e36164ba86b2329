"""Build MLP-Mixer-S/16 with the Python builder, print a summary, check it, and run it.

    python examples/mlp_mixer.py [--variant S/16] [--batch 1]

The model itself is written in frontends/zoo.py (`mlp_mixer`), which is also the `tensorir`
command's built-in default; this script shows the steps a user takes with any graph.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tensorir
from frontends.zoo import MIXER_CONFIGS, mlp_mixer
from tensorir.analysis import graph_stats
from tensorir.table import si


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="S/16", choices=sorted(MIXER_CONFIGS))
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    g = mlp_mixer(args.variant, batch=args.batch)
    tensorir.verify(g)
    stats = graph_stats(g)
    print(f"{g.name}: {len(g)} ops, {si(stats.params)} parameters, "
          f"{si(stats.contraction_macs)} multiply-adds")

    text = tensorir.print_graph(g)
    assert tensorir.structurally_equal(tensorir.parse(text), g)
    print("text form:", len(text.splitlines()), "lines; first op:", text.splitlines()[1 + len(g.constants)].strip())

    image = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    start = time.perf_counter()
    (logits,) = tensorir.interpret(g, {"image": image}).values()
    print(f"interpreted in {time.perf_counter() - start:.2f} s: logits {logits.shape}, "
          f"top class {int(logits[0].argmax())}")


if __name__ == "__main__":
    main()
