"""Example counts for property tests, scaled up by ``HYPOTHESIS_PROFILE=long`` (10x)."""

import os

SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1


def examples(n: int) -> int:
    return n * SCALE
