"""Hypothesis strategies for schedules: random legal tilings of a kernel domain."""

from hypothesis import strategies as st

from tensorir.schedule import LevelTiling


@st.composite
def random_tilings(draw, kd, levels):
    """One LevelTiling per level (outermost first), each inside the one above: any tile sizes,
    whole dims whole, any loop order with the split reductions innermost."""
    split = set(kd.split_reductions())
    parent = list(kd.extents)
    out = []
    for lv in levels:
        tile = [parent[d] if d in kd.whole else draw(st.integers(1, parent[d]))
                for d in range(len(parent))]
        par = [d for d in range(len(parent)) if d not in split]
        order = draw(st.permutations(par)) + draw(st.permutations(sorted(split)))
        out.append(LevelTiling(lv.name, tuple(tile), tuple(order)))
        parent = tile
    return out
