"""codl's own CPU conv: an im2col copy in blocks of output rows, one GEMM per block.

Why: on a CPU PyTorch sends a conv to oneDNN's JIT kernels or to its own im2col+GEMM
path by a rule of the shape, and oneDNN then picks a blocking inside; with all of that
hidden, codl's latency model reached 75% of convs within +-10% on the development CPU
(docs/results/predictor.md), while it predicted GEMMs of 32 rows or more to 97%. Here
every ungrouped conv is a known sequence of library calls, which the predictor's
features follow one for one (:func:`codl.predict.features.cpu_features`):

1. a padded copy of the input, where the conv pads (a row share's own padding, uneven
   or not);
2. for 1x1 convs of stride 1: per image, one GEMM on the input as it lies
   (channels-last: pixels x channels);
3. otherwise, per image and per block of :func:`block_rows` output rows: the block's
   im2col columns (pixels x taps x channels) copied into a reused buffer of at most
   ``BLOCK_BYTES``, then one GEMM into the block's rows of the output.

Each GEMM is ``columns @ weights.T`` with the output channels on the side the vector
registers run along (MKL's SGEMM for float32), as a linear's output features are.
Activations and weights are channels-last (a processor running this path is
channels-last); the output is a channels-last (N, OC, OH, OW) tensor. Activating a
processor that runs this path (``Processor.activate``) also makes glibc keep freed
memory (:func:`keep_freed_memory`), so large outputs do not fault in fresh pages on
every call. Grouped convs stay on the
library (oneDNN), where the predictor models oneDNN's grouped kernel.
"""

from __future__ import annotations

import ctypes
import functools
import threading

import torch
import torch.nn.functional as F

# the im2col buffer of one block: small enough to stay in the L3 (and under glibc's mmap
# threshold: it is allocated once per thread and reused), large enough that a block's
# GEMM has hundreds of rows
BLOCK_BYTES = 4 << 20

_buffers = threading.local()  # each thread's im2col buffers by dtype (two CPU groups run convs at once)


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process: no mmap for large blocks, no
    trimming of the heap. Otherwise every output over 32 MB (glibc's largest mmap
    threshold), or over the free space its heap happens to keep, is mapped afresh on
    each call and its pages faulted in: on the development CPU a 100 MB output took 55
    ms to write fresh against 20 ms into memory already mapped, and which outputs were
    fresh depended on the allocation history, which no latency model can follow.
    Process-wide and for the process's life (PyTorch recommends other allocators for
    the same reason); returns whether it applied (glibc only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's mallopt parameters
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def supports(x: torch.Tensor, groups: int) -> bool:
    """Whether :func:`conv2d` runs this conv: a floating-point 4-D CPU input, groups 1."""
    return x.device.type == "cpu" and x.is_floating_point() and x.dim() == 4 and groups == 1


def block_rows(out_rows: int, out_cols: int, k: int, elem_bytes: int) -> int:
    """Output rows one GEMM computes: as many as fit their im2col columns (``k`` =
    taps x channels per pixel) in ``BLOCK_BYTES``, at least one."""
    return max(1, min(out_rows, BLOCK_BYTES // max(1, out_cols * k * elem_bytes)))


def _workspace(elems: int, dtype: torch.dtype) -> torch.Tensor:
    buf = getattr(_buffers, "by_dtype", None)
    if buf is None:
        buf = _buffers.by_dtype = {}
    ws = buf.get(dtype)
    if ws is None or ws.numel() < elems:
        ws = buf[dtype] = torch.empty(elems, dtype=dtype)
    return ws[:elems]


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: tuple[int, int],
           pads: tuple[int, int, int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """Conv of ``x`` (N, C, H, W) by ``w`` (OC, C, KH, KW), groups 1, padded by ``pads`` =
    (top, left, bottom, right), into an (N, OC, OH, OW) channels-last tensor."""
    oc, c, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xs = x.permute(0, 2, 3, 1)  # NHWC: a view of a channels-last input
    if not xs.is_contiguous():
        xs = xs.contiguous()
    if any(pads):
        xs = F.pad(xs, (0, 0, pl, pr, pt, pb))
    n, h, wd, _ = xs.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    y = torch.empty((n, oh, ow, oc), dtype=x.dtype)
    if n == 0 or oh <= 0 or ow <= 0 or oc == 0:
        return y.permute(0, 3, 1, 2)
    k = kh * kw * c
    wt = w.permute(0, 2, 3, 1).reshape(oc, k).t()  # (taps x channels, OC); a view of channels-last weights

    def gemm(a: torch.Tensor, out: torch.Tensor) -> None:
        if b is None:
            torch.mm(a, wt, out=out)
        else:
            torch.addmm(b, a, wt, out=out)

    if kh == kw == sh == sw == 1:
        for i in range(n):
            gemm(xs[i].reshape(h * wd, c), y[i].view(oh * ow, oc))
        return y.permute(0, 3, 1, 2)
    rows = block_rows(oh, ow, k, x.element_size())
    cols = _workspace(rows * ow * k, x.dtype)
    s_n, s_h, s_w, s_c = xs.stride()
    for i in range(n):
        for r0 in range(0, oh, rows):
            r = min(rows, oh - r0)
            window = xs.as_strided((r, ow, kh, kw, c), (s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
                                   xs.storage_offset() + i * s_n + r0 * sh * s_h)
            block = cols[:r * ow * k]
            block.view(r, ow, kh, kw, c).copy_(window)
            gemm(block.view(r * ow, k), y[i, r0:r0 + r].view(r * ow, oc))
    return y.permute(0, 3, 1, 2)
