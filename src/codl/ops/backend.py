"""Which kernels a node runs on, chosen once, when its kernel function is made.

A session, a reference runner or a profile passes its processor's backend
(``Processor.backend``) to ``family(node.op).kernel(node, backend)``; the function it
gets back calls that backend's kernels and nothing is looked up per call. Families whose
nodes only ever run on PyTorch's kernels accept a backend and ignore it.

Example::

    kernel = family(node.op).kernel(node, Backend(gpu_units=8))  # codl's GPU kernels for 8 SMs
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """``LIBRARY`` (the default): PyTorch's kernels (cuDNN, cuBLAS, oneDNN, MKL).
    ``own_cpu``: ungrouped convs of floating-point CPU tensors on codl's own CPU path
    (:mod:`codl.ops.own_cpu`). ``gpu_units``: convs and linears of half-type CUDA tensors
    on codl's own Triton kernels (:mod:`codl.ops.own_kernels`), tiled for that many SMs;
    with ``fastest`` as well, each such conv and linear runs on whichever of the two
    sources was faster for its shape, timed on its first call (:mod:`codl.ops.fastest`).
    Whatever a backend does not cover runs on the libraries."""

    own_cpu: bool = False
    gpu_units: int | None = None
    fastest: bool = False


LIBRARY = Backend()

__all__ = ["Backend", "LIBRARY"]
