"""The graph IR every stage of codl works on.

A :class:`Graph` is a static, fully shaped dataflow graph:

- ``inputs``: the runtime inputs, as :class:`TensorSpec` (name, shape, dtype);
- ``constants``: named numpy arrays (weights, biases, constant operands), fixed at import;
- ``nodes``: :class:`Node` objects in topological order; each names its input tensors
  (graph inputs, constants or outputs of earlier nodes) and its output tensors;
- ``outputs``: the names of the tensors the model returns;
- ``specs``: the :class:`TensorSpec` of every runtime tensor (inputs and node outputs),
  filled in by shape inference at import.

Shapes are static tuples of ints; there are no symbolic dimensions. Node attributes are
plain JSON values (ints, floats, strings, lists of them), so the structure serialises to
JSON; constants are saved beside it in an ``.npz`` file when wanted.

Example::

    g = Graph(name="tiny", inputs=[TensorSpec("x", (1, 3, 8, 8), DType.FLOAT32)])
    g.constants["w"] = np.zeros((4, 3, 3, 3), np.float32)
    g.add_node(Node("conv", OpKind.CONV, ["x", "w"], ["y"], {"strides": [1, 1], ...}))
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


class DType(enum.Enum):
    """Element types a tensor of the IR may have."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT64 = "float64"
    INT64 = "int64"
    INT32 = "int32"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT64)

    @staticmethod
    def from_numpy(dtype: np.dtype) -> "DType":
        try:
            return DType(np.dtype(dtype).name)
        except ValueError:
            raise ValueError(f"numpy dtype {np.dtype(dtype).name} has no codl DType; "
                             f"supported: {[d.value for d in DType]}") from None


_ITEMSIZE = {DType.FLOAT32: 4, DType.FLOAT16: 2, DType.BFLOAT16: 2, DType.FLOAT64: 8,
             DType.INT64: 8, DType.INT32: 4, DType.INT8: 1, DType.UINT8: 1, DType.BOOL: 1}


class OpKind(enum.Enum):
    """Every operator kind the IR knows. The registry in :mod:`codl.ops` maps each to its
    implementation (shape inference, kernel, FLOPs)."""

    CONV = "Conv"
    CONV_TRANSPOSE = "ConvTranspose"
    BATCH_NORM = "BatchNorm"
    INSTANCE_NORM = "InstanceNorm"
    LAYER_NORM = "LayerNorm"
    # unary element-wise
    RELU = "Relu"
    CLIP = "Clip"
    LEAKY_RELU = "LeakyRelu"
    SIGMOID = "Sigmoid"
    SILU = "Silu"
    GELU = "Gelu"
    TANH = "Tanh"
    HARD_SIGMOID = "HardSigmoid"
    HARD_SWISH = "HardSwish"
    ERF = "Erf"
    SQRT = "Sqrt"
    EXP = "Exp"
    NEG = "Neg"
    ABS = "Abs"
    # binary element-wise (numpy broadcasting)
    ADD = "Add"
    SUB = "Sub"
    MUL = "Mul"
    DIV = "Div"
    POW = "Pow"
    # pooling
    MAX_POOL = "MaxPool"
    AVG_POOL = "AveragePool"
    GLOBAL_AVG_POOL = "GlobalAveragePool"
    # data movement
    CONCAT = "Concat"
    SPLIT = "Split"
    SLICE = "Slice"
    PAD = "Pad"
    RESIZE = "Resize"
    GATHER = "Gather"
    # layout
    IDENTITY = "Identity"
    FLATTEN = "Flatten"
    RESHAPE = "Reshape"
    TRANSPOSE = "Transpose"
    SQUEEZE = "Squeeze"
    UNSQUEEZE = "Unsqueeze"
    # linear algebra and reductions
    LINEAR = "Linear"
    MATMUL = "MatMul"
    SOFTMAX = "Softmax"
    REDUCE_MEAN = "ReduceMean"
    REDUCE_SUM = "ReduceSum"
    REDUCE_MAX = "ReduceMax"


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and element type of one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: DType = DType.FLOAT32

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.value}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "TensorSpec":
        return TensorSpec(d["name"], tuple(int(s) for s in d["shape"]), DType(d["dtype"]))

    def __str__(self) -> str:
        return f"{self.dtype.value}[{'x'.join(map(str, self.shape))}]"


@dataclass
class Node:
    """One operator application.

    ``inputs`` and ``outputs`` are tensor names; an input may be a graph input, a
    constant or an earlier node's output. ``attrs`` holds JSON-able values whose
    meaning the op's implementation documents (e.g. ``strides`` for a conv).
    """

    name: str
    op: OpKind
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op.value, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": self.attrs}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Node":
        return Node(d["name"], OpKind(d["op"]), list(d["inputs"]), list(d["outputs"]),
                    dict(d["attrs"]))


@dataclass
class Graph:
    """A static dataflow graph: see the module docstring."""

    name: str
    inputs: list[TensorSpec]
    nodes: list[Node] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    specs: dict[str, TensorSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.inputs:
            self.specs.setdefault(spec.name, spec)

    # --- queries ---------------------------------------------------------------------
    def spec(self, name: str) -> TensorSpec:
        """The spec of a runtime tensor or a constant."""
        if name in self.specs:
            return self.specs[name]
        if name in self.constants:
            c = self.constants[name]
            cache = self.__dict__.setdefault("_constant_specs", {})  # planners ask often
            hit = cache.get(name)
            if hit is None or hit[0] is not c:
                hit = cache[name] = (c, TensorSpec(name, tuple(c.shape), DType.from_numpy(c.dtype)))
            return hit[1]
        raise KeyError(f"graph {self.name!r} has no tensor named {name!r}")

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def producers(self) -> dict[str, Node]:
        """Map from tensor name to the node that writes it."""
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """Map from tensor name to the nodes that read it (graph outputs not counted)."""
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                users.setdefault(i, []).append(n)
        return users

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"graph {self.name!r} has no node named {name!r}")

    def add_node(self, node: Node, out_specs: Iterable[TensorSpec] = ()) -> Node:
        self.nodes.append(node)
        for s in out_specs:
            self.specs[s.name] = s
        return node

    @property
    def num_parameters(self) -> int:
        return int(sum(c.size for c in self.constants.values()))

    # --- serialisation ---------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The structure (no constant values; their specs are kept)."""
        return {
            "name": self.name,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": list(self.outputs),
            "nodes": [n.to_json() for n in self.nodes],
            "specs": [s.to_json() for k, s in self.specs.items()
                      if k not in {i.name for i in self.inputs}],
            "constants": [self.spec(k).to_json() for k in self.constants],
        }

    @staticmethod
    def from_json(d: dict[str, Any], constants: dict[str, np.ndarray] | None = None) -> "Graph":
        """Rebuild a graph; without ``constants``, constant values are zero-filled from
        their recorded specs (enough for structure-only uses such as planning)."""
        g = Graph(d["name"], [TensorSpec.from_json(s) for s in d["inputs"]],
                  [Node.from_json(n) for n in d["nodes"]], list(d["outputs"]))
        for s in d["specs"]:
            spec = TensorSpec.from_json(s)
            g.specs[spec.name] = spec
        for s in d["constants"]:
            spec = TensorSpec.from_json(s)
            if constants is not None:
                g.constants[spec.name] = constants[spec.name]
            else:
                g.constants[spec.name] = np.zeros(spec.shape, _NUMPY_DTYPES[spec.dtype])
        return g


_NUMPY_DTYPES = {d: np.dtype(d.value) for d in DType if d is not DType.BFLOAT16}
_NUMPY_DTYPES[DType.BFLOAT16] = np.dtype(np.float32)  # numpy has no bf16; structure only
