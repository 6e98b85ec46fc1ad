"""Import an ONNX model (opset 13 and newer) into a codl :class:`~codl.ir.Graph`.

The importer walks the ONNX nodes in order. Nodes whose inputs are all constants (shape
arithmetic, constant weights) are evaluated once, here, with ONNX's reference
evaluator; ``Shape`` of a run-time tensor becomes a constant because all shapes are
static. Every other node is handed to the operator family registered for its op type,
which turns it into a codl node; its output shapes are then inferred. Unsupported
operators are collected over the whole model and reported together.

Example::

    graph = load_onnx("model.onnx")                      # static input shapes
    graph = load_onnx("model.onnx", {"input": (1, 3, 224, 224)})  # fix symbolic dims
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import (
    CodlError,
    GraphError,
    ModelLoadError,
    UnsupportedOperatorError,
    first_line,
)
from ..ir.graph import DType, Graph, Node, TensorSpec
from ..ir.passes import simplify
from ..ir.verify import infer_node, verify_graph
from ..ops import ONNX_TYPES, OnnxNodeView

MIN_OPSET = 13
# Op types accepted only when all their inputs are constants (evaluated at import).
FOLD_ONLY = frozenset({
    "Constant", "Shape", "Size", "Cast", "CastLike", "ConstantOfShape", "Range", "Expand",
    "Equal", "Less", "Greater", "Where", "Not", "And", "Or", "Floor", "Ceil", "Min", "Max",
    "Mod", "ReduceProd", "Tile", "ScatterND", "Sign", "Reciprocal",
})


def load_onnx(path: str | os.PathLike, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Read an ``.onnx`` file. Raises :class:`ModelLoadError` with a one-line reason for a
    missing, truncated, non-ONNX or inconsistent file."""
    import onnx

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise ModelLoadError(f"{path}: file is empty, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError, or RuntimeWarning-like errors
        raise ModelLoadError(f"{path}: not a valid ONNX model (protobuf decode failed: "
                             f"{first_line(e)}); truncated or another format?") from None
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no graph inside); truncated or another format?")
    name = os.path.splitext(os.path.basename(path))[0]
    return from_onnx_model(model, name=name, input_shapes=input_shapes, source=path)


def from_onnx_model(model: Any, name: str = "model", input_shapes: Mapping[str, Sequence[int]] | None = None,
                    source: str = "<onnx model>") -> Graph:
    """Convert an in-memory ``onnx.ModelProto``."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelLoadError(f"{source}: inconsistent ONNX model: {first_line(e)}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise ModelLoadError(f"{source}: ONNX opset {opset} is not supported; codl reads opset {MIN_OPSET} and newer "
                             "(re-export the model, or convert it with onnx.version_converter)")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ModelLoadError(f"{source}: ONNX opset {opset} is newer than the newest this onnx package knows "
                             f"({newest}, onnx {onnx.__version__}); codl reads opset {MIN_OPSET} to {newest}")
    graph = _Importer(model.graph, name, dict(input_shapes or {}), source).run()
    try:  # what codl's own checks let through: inputs of mixed types, kernel sizes that disagree ...
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise ModelLoadError(f"{source}: inconsistent ONNX model: {first_line(e)}") from None
    return graph


MAX_TENSOR_BYTES = 16 << 30  # one tensor over this is refused at import, before any allocation


def onnx_type_name(elem_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"#{elem_type}"


def _attr_value(attr: Any) -> Any:
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "data_type"):  # TensorProto
        try:
            return numpy_helper.to_array(value)
        except Exception as e:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError ...
            raise CodlError(f"attribute {attr.name!r}: its tensor cannot be read: {e}") from None
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def _node_name(raw: str, op_type: str, index: int, taken: set[str]) -> str:
    """A unique, readable node name. PyTorch's exporter names nodes by scope, repeating
    each parent in its child (``/ssh.2/b5a/b5a.0/Conv``): collapse that to
    ``ssh.2.b5a.0.Conv``."""
    parts: list[str] = []
    for part in (p for p in raw.split("/") if p):
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    base = ".".join(parts) or f"{op_type}_{index}"
    candidate, k = base, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


class _Importer:
    def __init__(self, onnx_graph: Any, name: str, input_shapes: dict[str, Sequence[int]], source: str) -> None:
        self.og, self.source = onnx_graph, source
        self.input_shapes = input_shapes
        self.graph = Graph(name=name, inputs=[])
        self.unknown: set[str] = set()  # outputs of unsupported nodes (and their users)
        self.unsupported: list[str] = []
        self.names: set[str] = set()
        self.consumed = {i for n in onnx_graph.node for i in n.input} | {o.name for o in onnx_graph.output}

    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name)

    def run(self) -> Graph:
        from onnx import numpy_helper

        for init in self.og.initializer:
            try:
                self.graph.constants[init.name] = numpy_helper.to_array(init)
            except Exception as e:  # noqa: BLE001 - onnx raises ValueError, TypeError, KeyError ...
                raise CodlError(f"initializer {init.name!r} (dims {list(init.dims)}, type "
                                f"{onnx_type_name(init.data_type)}) cannot be read: {e}") from None
        self._read_inputs()
        for index, onode in enumerate(self.og.node):
            try:
                self._import_node(index, onode)
            except CodlError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
                raise GraphError(f"{self.source}: node {onode.name or '#' + str(index)!r} ({onode.op_type}): "
                                 f"attribute or input out of range ({type(e).__name__}: {e})") from None
        if self.unsupported:
            supported = sorted(ONNX_TYPES)
            raise UnsupportedOperatorError(
                f"{self.source}: {len(self.unsupported)} unsupported node(s): {'; '.join(self.unsupported)}. "
                f"Supported op types: {', '.join(supported)} (plus constant-only: {', '.join(sorted(FOLD_ONLY))})")
        g = self.graph
        g.outputs = [o.name for o in self.og.output]
        for out in g.outputs:
            if g.is_constant(out):
                raise GraphError(f"{self.source}: output {out!r} is a constant; nothing to run")
        big = next((sp for sp in g.specs.values() if sp.nbytes > MAX_TENSOR_BYTES), None)
        if big is not None:
            raise GraphError(f"{self.source}: tensor {big.name!r} of shape {list(big.shape)} "
                             f"({big.nbytes / 2**30:.1f} GiB) is over codl's limit of {MAX_TENSOR_BYTES >> 30} GiB "
                             f"per tensor")
        simplify(g)
        verify_graph(g)
        return g

    def _read_inputs(self) -> None:
        from onnx import helper

        runtime = [vi for vi in self.og.input if vi.name not in self.graph.constants]  # old exporters list initializers too
        unknown = set(self.input_shapes) - {vi.name for vi in runtime}
        if unknown:
            raise GraphError(f"{self.source}: input_shapes names {sorted(unknown)}, but the model's inputs are "
                             f"{[vi.name for vi in runtime]}")
        for vi in runtime:
            t = vi.type.tensor_type
            try:
                dtype = DType.from_numpy(helper.tensor_dtype_to_np_dtype(t.elem_type))
            except (ValueError, KeyError, TypeError):
                raise GraphError(f"{self.source}: input {vi.name!r} has element type "
                                 f"{onnx_type_name(t.elem_type)}; supported: {[d.value for d in DType]}") from None
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            if vi.name in self.input_shapes:
                shape = tuple(int(d) for d in self.input_shapes[vi.name])
                static = [d for d in dims if d]
                if len(shape) != len(dims) or any(d and d != v for d, v in zip(dims, shape)):
                    raise GraphError(f"{self.source}: input {vi.name!r} has shape "
                                     f"{[d or '?' for d in dims]} in the file; the shape given, {list(shape)}, "
                                     f"must keep its rank and its {len(static)} static dimension(s)")
            else:
                if any(d is None or d <= 0 for d in dims):
                    raise GraphError(f"{self.source}: input {vi.name!r} has a symbolic or unknown shape "
                                     f"{[d.dim_param or '?' if d.dim_param or not d.dim_value else d.dim_value for d in t.shape.dim]}; "
                                     "give a static shape (input_shapes={name: shape}, or --input-shape on the CLI)")
                shape = tuple(int(d) for d in dims)
            spec = TensorSpec(vi.name, shape, dtype)
            if min(shape, default=1) < 1 or spec.nbytes > MAX_TENSOR_BYTES:
                raise GraphError(f"{self.source}: input {vi.name!r} of shape {list(shape)} "
                                 f"({spec.nbytes / 2**30:.1f} GiB) is empty or over codl's limit of "
                                 f"{MAX_TENSOR_BYTES >> 30} GiB per tensor")
            self.graph.inputs.append(spec)
            self.graph.specs[vi.name] = spec

    def _import_node(self, index: int, onode: Any) -> None:
        g = self.graph
        op_type, inputs, outputs = onode.op_type, list(onode.input), list(onode.output)
        if any(i in self.unknown for i in inputs if i):
            self.unknown.update(outputs)
            return
        label = f"{onode.name or '#' + str(index)} ({op_type})"
        if onode.domain not in ("", "ai.onnx"):
            self._unsupported(label + f" in domain {onode.domain!r}", outputs)
            return
        attrs = {a.name: _attr_value(a) for a in onode.attribute}
        present = [i for i in inputs if i]
        if op_type == "Shape" and present and not g.is_constant(present[0]):
            shape = np.array(g.spec(present[0]).shape, dtype=np.int64)
            g.constants[outputs[0]] = shape[attrs.get("start", 0):attrs.get("end", len(shape))]
            return
        if all(g.is_constant(i) for i in present):
            self._fold(onode, present, outputs, label)
            return
        if op_type == "Cast" and self._same_type_cast(present[0], int(attrs["to"])):
            op_type = "Identity"
        impl = ONNX_TYPES.get(op_type)
        if impl is None:
            why = " on run-time data (only constant inputs are supported)" if op_type in FOLD_ONLY else ""
            self._unsupported(label + why, outputs)
            return
        name = _node_name(onode.name, op_type, index, self.names)
        view = OnnxNodeView(name, op_type, attrs, inputs, self.const, g.spec, n_outputs=len(outputs))
        imported = impl.from_onnx(view)
        g.constants.update(imported.constants)
        extra = [o for o in outputs[imported.n_outputs:] if o in self.consumed]
        if extra:  # e.g. MaxPool indices or LayerNorm statistics actually used downstream
            self._unsupported(label + f" with outputs {extra} in use (only the first {imported.n_outputs} are supported)", outputs)
            return
        node = Node(name, imported.op, imported.inputs, outputs[:imported.n_outputs], imported.attrs)
        g.add_node(node, infer_node(g, node))

    def _same_type_cast(self, name: str, to: int) -> bool:
        from onnx import helper

        return DType.from_numpy(helper.tensor_dtype_to_np_dtype(to)) == self.graph.spec(name).dtype

    def _fold(self, onode: Any, present: list[str], outputs: list[str], label: str) -> None:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.graph.constants[i] for i in present}
        try:
            values = ReferenceEvaluator(onode).run(None, feeds)
        except Exception as e:
            raise GraphError(f"{self.source}: cannot evaluate constant node {label}: {e}") from None
        for out, value in zip(outputs, values):
            if out:
                self.graph.constants[out] = np.asarray(value)

    def _unsupported(self, label: str, outputs: list[str]) -> None:
        self.unsupported.append(label)
        self.unknown.update(outputs)
