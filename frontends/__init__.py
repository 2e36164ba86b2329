"""Frontends: ways into a tensorir graph (a Python builder; ONNX import arrives with it)."""
