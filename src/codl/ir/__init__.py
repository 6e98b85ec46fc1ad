"""The graph IR: see :mod:`codl.ir.graph` for its definition."""

from .graph import DType, Graph, Node, OpKind, TensorSpec
from .summary import format_graph, op_rows, total_flops
from .verify import infer_node, verify_graph

__all__ = ["DType", "Graph", "Node", "OpKind", "TensorSpec", "verify_graph", "infer_node",
           "format_graph", "op_rows", "total_flops"]
