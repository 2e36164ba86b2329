"""Passes that rewrite tensorir graphs (pass manager, shape inference, fusion, tiling ...)."""
