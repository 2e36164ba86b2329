import os

import attrs
import numpy as np
import pytest

from frontends.python import GraphBuilder
from frontends.zoo import mlp_mixer
from passes import (Pass, PassInstrument, PassManager, PassResult, function_pass, parse_pipeline)
from tensorir import PassError, interpret, parse, parse_file, structurally_equal
from tensorir.cli import main as cli_main


def small_graph():
    b = GraphBuilder("small", seed=0)
    x = b.input("x", [2, 8])
    y = b.relu(b.identity(b.linear(x, 8, 8, "fc")))
    b.neg(x)  # dead
    return b.build(y)


# A custom pass in a few lines: drop Identity ops.
@function_pass("drop-identity", "forward Identity's operand to its users and remove it")
def drop_identity(graph, options):
    removed = 0
    for op in graph.ops:
        if op.type == "Identity" and op.results[0] not in graph.outputs:
            graph.replace_all_uses_with(op.results[0], op.operands[0])
            graph.remove_op(op)
            removed += 1
    return {"removed": removed}


def test_custom_pass_runs_in_pipeline_and_shows_in_dumps_and_timing(tmp_path):
    g = small_graph()
    result = PassManager("drop-identity,dce", dump_ir=str(tmp_path)).run(g)
    assert [op.type for op in result.graph.ops] == ["MatMul", "Add", "Relu"]
    assert sorted(os.listdir(tmp_path)) == ["00-input.tir", "01-drop-identity.tir", "02-dce.tir"]
    assert "Identity" in (tmp_path / "00-input.tir").read_text()
    assert "Identity" not in (tmp_path / "01-drop-identity.tir").read_text()
    table = result.table()
    assert "drop-identity" in table and "removed=1" in table and "ops_removed=1" in table
    for name in os.listdir(tmp_path):  # every dump parses back
        parse_file(str(tmp_path / name))


def test_pipeline_strings_with_options_and_presets():
    passes = parse_pipeline("shape-inference{bind=batch:2},dce{keep-constants=true}")
    assert [p.spec() for p in passes] == ["shape-inference{bind=batch:2}",
                                          "dce{keep-constants=true}"]
    assert [p.name for p in parse_pipeline("default")][-1] == "dce"
    with pytest.raises(PassError, match="unknown pass 'nope'; known passes: "):
        parse_pipeline("dce,nope")
    with pytest.raises(PassError, match="pass 'dce' has no option 'max-ops'; options: "
                                        "keep-constants"):
        parse_pipeline("dce{max-ops=3}")
    with pytest.raises(PassError, match="option 'keep-constants' expects a bool, got 'maybe'"):
        parse_pipeline("dce{keep-constants=maybe}")


def test_dump_options_changed_only_chosen_passes_and_diffs(tmp_path):
    g = small_graph()
    PassManager("shape-inference,drop-identity,dce", dump_ir=str(tmp_path),
                dump_only_changed=True, dump_diff=True).run(g)
    files = sorted(os.listdir(tmp_path))
    assert files == ["00-input.tir", "02-drop-identity.diff", "02-drop-identity.tir",
                     "03-dce.diff", "03-dce.tir"]  # shape-inference changed nothing
    diff = (tmp_path / "02-drop-identity.diff").read_text()
    assert diff.startswith("--- before drop-identity\n+++ after drop-identity\n")
    assert any(line.startswith("-") and "Identity(" in line for line in diff.splitlines())
    only = tmp_path / "only"
    PassManager("drop-identity,dce", dump_ir=str(only), dump_passes=["dce"]).run(small_graph())
    assert sorted(os.listdir(only)) == ["00-input.tir", "02-dce.tir"]


def test_the_contract_is_enforced_by_the_base_class():
    class Liar(Pass):
        name = "liar"
        in_place = True

        def run(self, graph):
            return PassResult(graph.copy(), True)

    with pytest.raises(PassError, match="'liar' is declared in place but returned a new graph"):
        Liar()(small_graph())

    class NeedsStatic(Pass):
        name = "needs-static"

        def requires(self, graph):
            if graph.symbols:
                raise PassError(f"{self.name}: bind {sorted(graph.symbols)} first", self.name)

        def run(self, graph):
            return PassResult(graph, False)

    with pytest.raises(PassError, match=r"needs-static: bind \['batch'\] first"):
        NeedsStatic()(mlp_mixer("S/32", batch="batch", layers=1))

    class Options(Pass):
        name = "opts"

        @attrs.frozen
        class Options:
            limit: int = 4

        def run(self, graph):
            return PassResult(graph, False)

    with pytest.raises(PassError, match="bad options"):
        Options(limti=3)


@function_pass("corrupt-types", "a broken pass: claims a wrong result type")
def corrupt_types(graph, options):
    from tensorir import TensorType
    op = graph.ops[0]
    op.results[0].type = TensorType((99,), op.results[0].dtype)
    return True


def test_a_failing_pass_names_itself_and_writes_a_replayable_reproducer(tmp_path, capsys):
    g = small_graph()
    manager = PassManager("drop-identity,corrupt-types,dce", reproducer_dir=str(tmp_path))
    with pytest.raises(PassError) as info:
        manager.run(g)
    err = info.value
    assert err.pass_name == "corrupt-types" and err.ran_before == ("drop-identity",)
    assert "pass 'corrupt-types' failed (after drop-identity): VerificationError" in str(err)
    repro = err.reproducer
    text = open(repro).read()
    assert "# replay: tensorir compile" in text and '--pipeline "corrupt-types,dce"' in text
    given = parse_file(repro)
    assert "Identity" not in text and len(given) == 4  # what corrupt-types was given
    # the command in the reproducer replays the failure
    weights = repro[:-4] + ".npz"
    assert cli_main(["compile", repro, "--weights", weights, "--pipeline", "corrupt-types,dce",
                     "-o", str(tmp_path / "never.tir")]) == 2
    assert "pass 'corrupt-types' failed" in capsys.readouterr().err


def test_instrument_hooks_run_in_order():
    calls = []

    class Recorder(PassInstrument):
        def enter_pipeline(self, graph, passes):
            calls.append(("enter", len(passes)))

        def before_pass(self, index, p, graph):
            calls.append(("before", index, p.name))

        def after_pass(self, index, p, result, record):
            calls.append(("after", index, p.name, record.ops_before, record.ops_after))

        def exit_pipeline(self, result):
            calls.append(("exit", len(result.records)))

    PassManager("drop-identity,dce", instruments=[Recorder()]).run(small_graph())
    assert calls == [("enter", 2), ("before", 1, "drop-identity"),
                     ("after", 1, "drop-identity", 5, 4), ("before", 2, "dce"),
                     ("after", 2, "dce", 4, 3), ("exit", 2)]


def test_shape_inference_binds_and_dce_keeps_results():
    g = mlp_mixer("S/32", batch="batch", layers=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    before = interpret(g, {"image": x})
    result = PassManager("shape-inference{bind=batch:2},dce").run(g)
    assert not result.graph.symbols
    after = interpret(result.graph, {"image": x})
    np.testing.assert_array_equal(list(before.values())[0], list(after.values())[0])
    assert structurally_equal(parse(str(result.graph)), result.graph)
