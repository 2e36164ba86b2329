"""The ONNX frontend: ``load`` a model file into a tensorir Graph, ``save`` one back."""

from .exporter import save, to_model_proto
from .importer import TARGET_OPSET, load
from .reader import read_model

__all__ = ["TARGET_OPSET", "load", "read_model", "save", "to_model_proto"]
