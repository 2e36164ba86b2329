"""Conventions the ONNX importer and exporter share: the opset, the domains, how tensorir's
own op types are named in a file, and tensor value infos."""

from __future__ import annotations

import re
from typing import Any

import onnx
from onnx import helper

from tensorir.dtypes import dtype_to_onnx
from tensorir.types import TensorType

TARGET_OPSET = 21
ONNX_DOMAINS = ("", "ai.onnx")
TENSORIR_DOMAIN = "tensorir"
TENSORIR_DOMAIN_VERSION = 1
_ONNX_DOMAINS = ONNX_DOMAINS


# ----------------------------------------------------------------------------- naming
def onnx_op_type(op_type: str) -> tuple[str, str]:
    """(domain, op_type) of a tensorir op type in an ONNX file.

    ONNX ops keep the default domain; the project's own ops (a "." in the type) go to the
    ``tensorir`` domain, ``tensorir.view`` as ``view`` and ``fused.x`` as ``fused.x``.
    """
    if "." not in op_type:
        return "", op_type
    return TENSORIR_DOMAIN, op_type.removeprefix(f"{TENSORIR_DOMAIN}.")


def tensorir_op_type(domain: str, op_type: str) -> str:
    """The tensorir op type of an ONNX node: the inverse of :func:`onnx_op_type`."""
    if domain in _ONNX_DOMAINS:
        return op_type
    if domain == TENSORIR_DOMAIN:
        op_type = re.sub(r"__\d+\Z", "", op_type)   # one of several bodies of a fused op type
        return op_type if "." in op_type else f"{TENSORIR_DOMAIN}.{op_type}"
    return f"{domain}.{op_type}"


# ----------------------------------------------------------------------------- types
def _dim_proto_value(dim: Any) -> int | str:
    return dim if isinstance(dim, int) else str(dim)


def value_info(name: str, type: TensorType) -> onnx.ValueInfoProto:
    """A tensor ValueInfoProto: symbolic dims (``batch``, ``196*batch``) become dim_params."""
    return helper.make_tensor_value_info(name, dtype_to_onnx(type.dtype),
                                         [_dim_proto_value(d) for d in type.shape])


