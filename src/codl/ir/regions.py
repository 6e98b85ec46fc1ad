"""Regions of tensors and the arithmetic of splitting them.

A :data:`Box` is a region of a tensor: one ``(start, end)`` pair per axis, half-open.
Partitioning an operator cuts its output box along one axis (:class:`Dim` picks which);
each operator family says which input boxes a given output box needs (halos included).

Example: a 3x3 conv with stride 1 and padding 1 whose output rows [4, 8) are wanted needs
input rows ``conv_rows(4, 8, k=3, s=1, p=1, d=1, size=H) == (3, 9)``.
"""

from __future__ import annotations

import enum
from typing import Sequence

Box = tuple[tuple[int, int], ...]


class Dim(enum.Enum):
    """Partition dimension of an operator's output."""

    OC = "oc"  # output channels (conv, pooling) or output features (linear)
    H = "h"  # output rows (conv, pooling) or rows / tokens (linear)


def full_box(shape: Sequence[int]) -> Box:
    return tuple((0, int(d)) for d in shape)


def box_shape(box: Box) -> tuple[int, ...]:
    return tuple(e - s for s, e in box)


def is_empty(box: Box | None) -> bool:
    """True for ``None`` (no region at all) and for boxes with an empty axis."""
    if box is None:
        return True
    for s, e in box:  # a plain loop: the planners call this ~10^5 times per plan
        if e <= s:
            return True
    return False


def with_axis(box: Box, axis: int, start: int, end: int) -> Box:
    return box[:axis] + ((start, end),) + box[axis + 1:]


def intersect(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return None
    return tuple((max(s1, s2), min(e1, e2)) for (s1, e1), (s2, e2) in zip(a, b))


def contains(outer: Box | None, inner: Box | None) -> bool:
    if is_empty(inner):
        return True
    return outer is not None and all(so <= si and ei <= eo for (so, eo), (si, ei) in zip(outer, inner))  # type: ignore[union-attr]


def hull(a: Box | None, b: Box | None) -> Box | None:
    """Smallest box holding both (an empty box adds nothing)."""
    if is_empty(a):
        return b
    if is_empty(b):
        return a
    return tuple((min(s1, s2), max(e1, e2)) for (s1, e1), (s2, e2) in zip(a, b))


def relative(box: Box, origin: Box) -> tuple[slice, ...]:
    """Slices selecting ``box`` inside a tensor that holds region ``origin``."""
    return tuple(slice(s - o, e - o) for (s, e), (o, _) in zip(box, origin))


def split_point(size: int, rho: float, align: int = 1) -> int:
    """Where the second processor's share starts along an axis of ``size``.

    The first processor (the CPU) gets ``[0, point)``, the second (the GPU) gets
    ``[point, size)``, about ``rho`` of the axis, rounded so the second share is a
    multiple of ``align`` (unless it is the whole axis).
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    share = int(round(rho * size / align)) * align
    return size - min(max(share, 0), size)


def conv_rows(start: int, end: int, k: int, s: int, p: int, d: int, size: int) -> tuple[int, int, int, int]:
    """Input rows needed for output rows ``[start, end)`` of a window op (kernel ``k``,
    stride ``s``, leading padding ``p``, dilation ``d``) over an input of ``size`` rows.

    Returns ``(lo, hi, pad_lo, pad_hi)``: the clipped input rows ``[lo, hi)`` and how many
    padding rows the partial op must add before and after them.
    """
    if end <= start:
        return 0, 0, 0, 0
    want_lo = start * s - p
    want_hi = (end - 1) * s - p + (k - 1) * d + 1
    lo = min(max(want_lo, 0), size)
    hi = max(min(want_hi, size), lo)
    before = max(0, min(want_hi, 0) - want_lo)  # window rows above row 0
    after = max(0, want_hi - max(want_lo, size))  # window rows below the last row
    return lo, hi, before, after


def default_axis(rank: int, dim: Dim) -> int | None:
    """The axis a dimension means for an activation of this rank: NCHW -> C, H;
    (batch, tokens, features) -> features, tokens; (rows, features) -> features, rows."""
    table = {4: {Dim.OC: 1, Dim.H: 2}, 3: {Dim.OC: 2, Dim.H: 1}, 2: {Dim.OC: 1, Dim.H: 0}}
    return table.get(rank, {}).get(dim)
