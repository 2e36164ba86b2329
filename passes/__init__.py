"""Passes that rewrite tensorir graphs, and the manager that runs them.

>>> from passes import PassManager, registered_passes
>>> "dce" in registered_passes()
True
"""

from . import (allocation, cse, dce, fold_batchnorm, fold_constants, fusion, lowering,  # noqa: F401
               shape_inference, simplify)
from .base import Pass, PassResult, function_pass, get_pass, register_pass, registered_passes
from .instruments import DumpIRInstrument, PassInstrument, VerifyInstrument
from .manager import PassManager, PassRecord, PipelineResult
from .pipeline import PRESETS, format_pipeline, parse_pipeline

__all__ = [
    "DumpIRInstrument", "PRESETS", "Pass", "PassInstrument", "PassManager", "PassRecord",
    "PassResult", "PipelineResult", "VerifyInstrument", "format_pipeline", "function_pass",
    "get_pass", "parse_pipeline", "register_pass", "registered_passes",
]
