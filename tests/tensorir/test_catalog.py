from pathlib import Path

from tensorir.ops import get_op_def, registered_ops
from tensorir.ops.catalog import page

DOC = Path(__file__).resolve().parents[2] / "docs" / "ops.md"

# the list: every one of these must be in the registry
REQUIRED_OPS = """Add Sub Mul Div Pow Neg Abs Exp Log Sqrt Reciprocal Erf Tanh Sigmoid Relu LeakyRelu
Elu Selu Gelu HardSigmoid HardSwish Mish Softplus Clip Where Equal Greater Less Not And Cast
Identity MatMul Gemm Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool
Softmax LogSoftmax ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ArgMax ArgMin
BatchNormalization LayerNormalization RMSNormalization InstanceNormalization Transpose Reshape
Flatten Squeeze Unsqueeze Concat Split Slice Gather Expand Pad Tile Shape Constant
ConstantOfShape Range""".split()


def test_registry_covers_the_required_ops():
    missing = [op for op in REQUIRED_OPS if op not in registered_ops()]
    assert not missing


def test_every_op_has_a_domain_unless_it_only_computes_shapes():
    for name in registered_ops():
        d = get_op_def(name)
        if d.category.value != "shape":
            assert d.domain.__name__ != "_no_domain", f"{name} has no iteration domain"


def test_docs_ops_page_matches_the_registry():
    assert DOC.read_text() == page(), "regenerate: python -m tensorir.ops.catalog > docs/ops.md"


def test_special_function_counts_live_in_the_registry():
    """What a GPU's special-function units run comes from the registry, per result element."""
    from tensorir.ops import get_op_def
    counts = {name: get_op_def(name).special_functions
              for name in ("Exp", "Erf", "Softmax", "Softplus", "Mish", "Relu", "Add", "MatMul")}
    assert counts == {"Exp": 1, "Erf": 1, "Softmax": 1, "Softplus": 2, "Mish": 3, "Relu": 0,
                      "Add": 0, "MatMul": 0}
