"""A small classification tree (CART, Gini impurity, grown best-first to a number of
leaves), fitted and evaluated with numpy alone: the analytic model's kernel gate. Nodes
are lists: ``[feature, threshold, left, right]`` for a split (go left when the value is
<= the threshold), ``[-1, label]`` for a leaf; node 0 is the root.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _gini(counts: np.ndarray) -> float:
    n = counts.sum()
    return float(n - (counts ** 2).sum() / n) if n else 0.0  # n times the impurity


def _best_split(x: np.ndarray, y: np.ndarray, classes: int, min_leaf: int) -> tuple[float, int, float]:
    """(gain, feature, threshold) of the best split of these samples, gain 0 if none."""
    parent = _gini(np.bincount(y, minlength=classes))
    best = (0.0, -1, 0.0)
    for f in range(x.shape[1]):
        order = np.argsort(x[:, f], kind="stable")
        xs, ys = x[order, f], y[order]
        left = np.cumsum(np.eye(classes, dtype=np.int64)[ys], axis=0)  # class counts left of each cut
        total = left[-1]
        for i in np.unique(np.linspace(min_leaf, len(ys) - min_leaf, 33).astype(int)):
            if i < min_leaf or len(ys) - i < min_leaf or xs[i - 1] == xs[i]:
                continue
            gain = parent - _gini(left[i - 1]) - _gini(total - left[i - 1])
            if gain > best[0] + 1e-12:
                best = (gain, f, float((xs[i - 1] + xs[i]) / 2))
    return best


def fit_tree(x: np.ndarray, y: Sequence[int], max_leaves: int = 8, min_leaf: int = 5) -> list[list[float]]:
    """Grow the tree, always splitting the leaf whose split helps most."""
    y = np.asarray(y, dtype=np.int64)
    classes = int(y.max()) + 1 if len(y) else 1
    nodes: list[list[float]] = [[-1, float(np.bincount(y, minlength=classes).argmax()) if len(y) else 0.0]]
    leaves = {0: np.arange(len(y))}
    splits = {0: _best_split(x, y, classes, min_leaf)}
    while len(leaves) < max_leaves:
        node = max(splits, key=lambda k: splits[k][0], default=None)
        if node is None or splits[node][0] <= 0:
            break
        _, feature, threshold = splits.pop(node)
        idx = leaves.pop(node)
        for side in (x[idx, feature] <= threshold, x[idx, feature] > threshold):
            part = idx[side]
            leaves[len(nodes)] = part
            splits[len(nodes)] = _best_split(x[part], y[part], classes, min_leaf)
            nodes.append([-1, float(np.bincount(y[part], minlength=classes).argmax())])
        nodes[node] = [feature, threshold, len(nodes) - 2, len(nodes) - 1]
    return nodes


def tree_predict(nodes: list[list[float]], row: Sequence[float]) -> int:
    """The leaf label for ``row``; a tree whose walk does not move down (a corrupted
    file: a child at or before its parent, or outside the tree) raises ``CodlError``."""
    i = 0
    while nodes[i][0] >= 0:
        feature, threshold, left, right = nodes[i]
        nxt = int(left) if row[int(feature)] <= threshold else int(right)
        if not i < nxt < len(nodes):
            from ..errors import CodlError

            raise CodlError(f"malformed gate tree: node {i} points to {nxt} (children come after their parent, "
                            f"within {len(nodes)} nodes)")
        i = nxt
    return int(nodes[i][1])
