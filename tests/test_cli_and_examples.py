import subprocess
import sys
from pathlib import Path

import pytest

from tensorir import structural_diff
from tensorir.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_inspect_default_model_prints_table_and_totals(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "stem/conv" in out and "head/fc/add" in out
    assert "model mlp_mixer_s_16: " in out
    assert "18.5 M parameters" in out
    assert "3.78 G multiply-adds" in out


def test_print_then_inspect_the_text_file(tmp_path, capsys):
    path = tmp_path / "mixer.tir"
    assert main(["print", "mlp-mixer-s32"]) == 0
    path.write_text(capsys.readouterr().out)
    assert main(["verify", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["inspect", str(path), "--by-type"]) == 0
    assert "MatMul" in capsys.readouterr().out


def test_cli_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.tir"
    bad.write_text("graph g(%x: f32[2]) -> (%y: f32[2]) {\n  %y = Relu(%x) : f32[3]\n  return %y\n}\n")
    assert main(["verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tensorir: error: {bad}:2:3: %y is declared f32[3] but Relu gives f32[2]")
    assert main(["inspect", "no-such-model"]) == 2
    assert "neither a file nor a built-in model" in capsys.readouterr().err


def test_export_writes_onnx_that_loads_back(tmp_path, capsys):
    import onnx
    from frontends.onnx import load
    from frontends.zoo import mlp_mixer
    out = tmp_path / "mixer.onnx"
    assert main(["export", "mlp-mixer-s32", "--batch", "2", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 135 ops, 104 constants (")
    back = load(out)
    assert back.inputs[0].type.shape == (2, 3, 224, 224)
    assert [op.name for op in back.ops] == [op.name for op in mlp_mixer("S/32", batch=2).ops]
    light = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    assert main(["export", str(light), "-o", str(tmp_path / "squeezenet.onnx")]) == 0
    assert structural_diff(load(tmp_path / "squeezenet.onnx"), load(light)) is None
    assert main(["export", "no-such-model", "-o", str(out)]) == 2


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(script):
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_readme_figures_are_what_inspect_prints(capsys):
    import re
    readme = (ROOT / "README.md").read_text()
    params, macs = re.search(r"\((\S+ M) parameters, (\S+ G) multiply-adds\)", readme).groups()
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert f"{params} parameters" in out and f"{macs} multiply-adds" in out
