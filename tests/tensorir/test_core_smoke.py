import numpy as np

from op_harness import onnx_reference, run_op


def test_add_matches_onnx_reference():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    (ours,) = run_op("Add", [a, b])
    (ref,) = onnx_reference("Add", [a, b])
    np.testing.assert_allclose(ours, ref)
