"""Non-negative least squares on relative error: how every linear latency model here is
fitted (the accuracy that matters is +-10% of the measured time, and a unit cost is
never negative)."""

from __future__ import annotations

import numpy as np


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative w minimising sum(((x @ w) - y) / y)^2: non-negative least squares on
    the rows scaled by 1/y, by Lawson and Hanson's active-set method (the problem is
    convex, so this is its optimum)."""
    scale = 1.0 / np.maximum(y, 1e-12)
    return nnls(x * scale[:, None], y * scale)


def nnls(a: np.ndarray, b: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Non-negative w minimising |a @ w - b|^2 (Lawson-Hanson active set): features join
    the free set by the steepest gradient; where an unconstrained solve on the free set
    turns a weight negative, the step stops at the first zero and that feature leaves."""
    n = a.shape[1]
    w, free = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(3 * n + 3):
        grad = a.T @ (b - a @ w)
        join = ~free & (grad > tol * max(1.0, float(np.abs(grad).max())))
        if not join.any():
            break
        free[int(np.argmax(np.where(join, grad, -np.inf)))] = True
        while True:
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
            if np.all(z[free] > 0):
                w = z
                break
            neg = free & (z <= 0)
            gap = w[neg] - z[neg]  # >= 0; 0 only for a weight at zero staying there
            w = w + float(np.min(np.divide(w[neg], gap, out=np.zeros_like(gap), where=gap > 0))) * (z - w)
            free &= w > tol
            w[~free] = 0.0
    return w
