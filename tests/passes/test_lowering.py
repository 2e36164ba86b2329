"""Tiling, lowering and allocation of whole models: the lowered program verifies, prints and
parses back, and the ScheduleInterpreter running every kernel's loop nest gives the model's
outputs."""

import json

import numpy as np
import pytest

from onnx_models import LIGHT_MODELS, light_model_with_weights, light_path
from frontends.onnx import load
from frontends.zoo import mlp_mixer
from passes import PassManager
from passes.allocation import AllocatePass, occupancy_csv, occupancy_json
from passes.lowering import LowerPass, lower
from tensorir.errors import PassError
from tensorir.interpreter import Interpreter
from tensorir.parser import parse
from tensorir.printer import print_graph
from tensorir.schedule_exec import ScheduleInterpreter
from tensorir.target import Managed, MemoryLevel, Target, preset_names
from tensorir.verifier import check

# few, large tiles: whole models run through the loop nests in seconds
BIG_TILES = Target("big", (MemoryLevel("L1", 1 << 22, managed=Managed.SCRATCHPAD),
                           MemoryLevel("L2", 1 << 25, managed=Managed.SCRATCHPAD,
                                       double_buffered=True),
                           MemoryLevel("DRAM", 1 << 34)))

_CACHE = {}


def fused_model(name, weights=True):
    """The model after the default pipeline; without weights (the architecture-only file,
    faster to load) when only the structure matters."""
    if (name, weights) not in _CACHE:
        g = mlp_mixer("S/16", batch=1) if name == "mlp-mixer" else load(
            light_model_with_weights(name) if weights else light_path(name))
        PassManager("default", verify=False).run(g)
        _CACHE[name, weights] = g
    return _CACHE[name, weights].copy()


def feed_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.dtype.numpy) for v in g.inputs}


@pytest.mark.parametrize("model", LIGHT_MODELS)
def test_every_light_model_lowers_and_allocates_cleanly(model):
    for target in ("kpu-16x16", "cpu-avx512", "gpu-h100-sxm"):
        g = fused_model(model, weights=False)
        result = LowerPass(target=target)(g)
        AllocatePass()(g)
        assert check(g) == []
        assert result.stats["tiled"] > 0
        arena = g.schedule.arena
        assert arena.peak <= arena.greedy_by_size
    back = parse(print_graph(g))
    assert back.structurally_equal(g)
    assert back.schedule.kernels == g.schedule.kernels


@pytest.mark.parametrize("model", ["squeezenet", "resnet50", "mlp-mixer"])
def test_scheduled_model_equals_interpreter(model):
    g = fused_model(model)
    lowered = lower(g, BIG_TILES)
    feed = feed_for(g)
    want = Interpreter(g).run(feed)
    got = ScheduleInterpreter(lowered).run(feed)
    tiled = [k for k in lowered.schedule.kernels if not k.untiled]
    assert len(tiled) >= len(lowered.schedule.kernels) - 12
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_squeezenet_on_the_kpu_preset_equals_interpreter():
    """The real preset's tiles (L1 64 KiB): thousands of tiles per kernel."""
    g = fused_model("squeezenet")
    lowered = lower(g, "kpu-16x16")
    feed = feed_for(g, 1)
    want = Interpreter(g).run(feed)
    got = ScheduleInterpreter(lowered).run(feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_occupancy_exports():
    g = fused_model("resnet50", weights=False)
    LowerPass(target="kpu-16x16")(g)
    AllocatePass()(g)
    lines = occupancy_csv(g.schedule).splitlines()
    assert lines[0] == "step,kernel,level,bytes,capacity"
    # one row per kernel and level (L1, L2, L3 and DRAM)
    assert len(lines) - 1 == 4 * len(g.schedule.kernels)
    data = json.loads(occupancy_json(g.schedule))
    assert data["peak_bytes"]["DRAM"] == max(int(x) for x in
                                             g.schedule.arena.occupancy().bytes_live)
    for level in g.schedule.target.on_chip:
        assert 0 < data["peak_bytes"][level.name] <= level.capacity_bytes


def test_memory_order_never_raises_the_arena():
    g = fused_model("inception_v1", weights=False)
    LowerPass(target="kpu-16x16")(g)
    graph_order = AllocatePass()(g.copy()).graph.schedule.arena.peak
    h = g.copy()
    AllocatePass(order="memory")(h)
    assert h.schedule.arena.peak <= graph_order
    assert check(h) == []


def test_allocate_needs_lowering():
    with pytest.raises(PassError, match="run the lower pass first"):
        AllocatePass()(fused_model("squeezenet", weights=False))


def test_presets_are_targets():
    for name in ("kpu-16x16", "cpu-avx512", "gpu-h100-sxm"):
        assert name in preset_names()


def test_pipeline_string_lowers():
    g = fused_model("squeezenet")
    PassManager("lower{target=kpu-16x16},allocate").run(g)
    assert g.schedule is not None and g.schedule.arena is not None


def test_bert_scheduled_equals_interpreter():
    """Attention kernels tile over query positions and heads with the scores' reduction
    accumulated. The FFN's whole weights (9 MiB) do not fit the 4 MiB L1: it is unfused."""
    import transformer_models
    ok, why = transformer_models.available()
    if not ok:
        pytest.skip(why)
    g = load(transformer_models.export("bert-base"), bind={"batch": 1, "seq": 128})
    PassManager("default", verify=False).run(g)
    lowered = lower(g, BIG_TILES)
    kinds = {k.op_type for k in lowered.schedule.kernels if not k.untiled}
    assert {"fused.attention", "fused.matmul"} <= kinds and "fused.ffn" not in kinds
    rng = np.random.default_rng(0)
    feed = {v.name: (rng.integers(0, 1000, v.type.shape) if not v.dtype.is_float else
                     rng.standard_normal(v.type.shape)).astype(v.dtype.numpy) for v in g.inputs}
    want = Interpreter(g).run(feed)
    got = ScheduleInterpreter(lowered).run(feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
