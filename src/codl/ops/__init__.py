"""The operator registry: one family per file, listed here once.

To add an operator family, write ``ops/<family>.py`` with an :class:`OpFamily` subclass
and add one line to ``_FAMILIES``.
"""

from __future__ import annotations

from ..errors import GraphError
from ..ir.graph import OpKind
from .backend import LIBRARY, Backend
from .base import Imported, OnnxNodeView, OpFamily
from .binary import Binary
from .conv import Conv, ConvTranspose
from .layout import Layout
from .linear import Linear
from .norm import Norm
from .pool import Pool
from .reduce import Reduce
from .resize import Resize
from .tensor import Concat, Gather, Pad, Slice, Split
from .unary import Unary

_FAMILIES: tuple[OpFamily, ...] = (
    Conv(), ConvTranspose(), Norm(), Unary(), Binary(), Pool(), Concat(), Split(), Slice(),
    Pad(), Gather(), Resize(), Layout(), Linear(), Reduce(),
)

REGISTRY: dict[OpKind, OpFamily] = {k: f for f in _FAMILIES for k in f.kinds}
ONNX_TYPES: dict[str, OpFamily] = {t: f for f in _FAMILIES for t in f.onnx_types}


def family(kind: OpKind) -> OpFamily:
    """The implementation of an op kind; fails naming the supported kinds."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise GraphError(f"no implementation registered for {kind}; "
                         f"supported: {sorted(k.value for k in REGISTRY)}") from None


__all__ = ["REGISTRY", "ONNX_TYPES", "family", "OpFamily", "OnnxNodeView", "Imported", "Backend", "LIBRARY"]
