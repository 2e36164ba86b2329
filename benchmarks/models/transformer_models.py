"""BERT-base and GPT-2 small exported from PyTorch, cached outside the repository.

    python benchmarks/models/transformer_models.py [bert-base gpt2]

Models are instantiated from their ``transformers`` config classes (no download) with
``torch.manual_seed(0)``, and exported with ``torch.onnx.export`` (the TorchScript exporter,
opset 18) with symbolic ``batch`` and ``seq`` dims, the way most published ONNX transformers
were made: full of Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains that the ONNX
frontend folds away once batch and seq are bound. Files go to ``$TENSORIR_CACHE`` (default
``~/.cache/tensorir/models``) and are reused while the export settings are unchanged.

torch and transformers are optional (``pip install -e '.[models]'``); :func:`available` says
whether they are installed.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

EXPORT_VERSION = 1  # bump to invalidate cached exports when the settings below change
OPSET = 18
MODELS = ("bert-base", "gpt2")


def cache_dir() -> Path:
    path = Path(os.environ.get("TENSORIR_CACHE", Path.home() / ".cache" / "tensorir")) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def available() -> tuple[bool, str]:
    """(True, "") when torch and transformers import, else (False, why)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return False, f"{exc.name} is not installed (pip install -e '.[models]')"
    return True, ""


def _build(name: str):
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    torch.manual_seed(0)
    if name == "bert-base":
        model, is_gpt = BertModel(BertConfig()), False
    elif name == "gpt2":
        model, is_gpt = GPT2Model(GPT2Config()), True
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")

    class LastHiddenState(torch.nn.Module):
        """Calls the model with keywords and returns one tensor (what the exporter wants)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if is_gpt:
                kwargs["use_cache"] = False
            return self.model(**kwargs).last_hidden_state

    return LastHiddenState().eval()


def export(name: str) -> Path:
    """The path of the exported model, exporting it first if it is not cached."""
    path = cache_dir() / f"{name}-v{EXPORT_VERSION}-opset{OPSET}.onnx"
    if path.exists():
        return path
    import torch

    module = _build(name)
    ids = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 16, dtype=torch.int64)
    tmp = path.with_suffix(".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"}},
                          opset_version=OPSET, dynamo=False)
    tmp.replace(path)  # atomic: a killed export never leaves a half-written cache entry
    return path


if __name__ == "__main__":
    ok, why = available()
    if not ok:
        sys.exit(f"cannot export: {why}")
    for model_name in sys.argv[1:] or MODELS:
        print(model_name, export(model_name))
