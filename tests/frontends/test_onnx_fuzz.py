"""Fuzz: mutated and truncated model files only ever raise tensorir's typed errors.

A few hundred cases run in CI; ``HYPOTHESIS_PROFILE=long`` runs ten times as many.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from frontends.onnx import load
from hypothesis_budget import examples
from onnx_models import light_model_with_weights, light_path
from tensorir import TensorIRError

SEEDS = {name: light_path(name).read_bytes() for name in ("bvlc_alexnet", "squeezenet")}
# with weights, so that the loader's wire scan for large initializers meets corrupt bytes too
SEEDS["squeezenet+weights"] = light_model_with_weights("squeezenet").SerializeToString()


@st.composite
def corrupted_models(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if not data:
            break
        if action == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[i] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:]
    return bytes(data)


@settings(max_examples=examples(300))
@given(corrupted_models())
def test_load_never_raises_anything_but_typed_errors(data):
    try:
        load(data)
    except TensorIRError:
        pass


def test_invalid_utf8_in_a_header_string_is_a_typed_error():
    """Protobuf parses a string of invalid UTF-8 and fails only when it is read: the opset
    upgrade's copy of the model header must report it (found by the fuzz above)."""
    import pytest

    from tensorir.errors import ModelLoadError
    data = SEEDS["bvlc_alexnet"]
    assert b"onnx-caffe2" in data
    with pytest.raises(ModelLoadError, match="producer_name"):
        load(data.replace(b"onnx-caffe2", b"\x80nnx-caffe2", 1))
