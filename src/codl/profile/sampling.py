"""Op configurations to measure: the convs and linears of the evaluation models,
perturbed, and random draws over CoDL's ranges; each whole and as partial ops over a
grid of ratios along each partition dimension.

A :class:`Sample` is a concrete single op (a conv or a linear) that can be built and
run; partial ops are samples too (the share a processor computes, with its halo rows),
so the profile covers exactly what co-execution runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .. import zoo
from ..ir.graph import DType, Graph, Node, OpKind, TensorSpec
from ..ir.regions import conv_rows
from ..ir.verify import infer_node
from ..settings import cache_dir

if TYPE_CHECKING:
    from ..predict.features import OpConfig

RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)
# Channel shares are whole multiples of this many channels, as in real networks: GPU
# tensor-core kernels (fp16: 8 channels) and CPU blocked layouts (8 or 16 channels) run
# unaligned channel counts on slower code paths, so a planner splits on this grid and the
# profile samples it (CoDL splits GPU channels in multiples of 4 for the same reason).
CHANNEL_GRID = 8


@dataclass(frozen=True)
class Sample:
    """One op to time. conv: input (1, ic, h, w), oc filters of k x k, stride s, padding
    (top, bottom) rows and p columns, groups g. linear: (rows, fin) -> (rows, fout)."""

    family: str
    ic: int = 0
    oc: int = 0
    h: int = 0
    w: int = 0
    k: int = 1
    s: int = 1
    pad_top: int = 0
    pad_bottom: int = 0
    pad: int = 0
    g: int = 1
    rows: int = 0
    fin: int = 0
    fout: int = 0

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.h + self.pad_top + self.pad_bottom - self.k) // self.s + 1,
                (self.w + 2 * self.pad - self.k) // self.s + 1)

    @property
    def macs(self) -> int:
        if self.family == "conv":
            oh, ow = self.out_hw
            return self.ic // self.g * self.oc * self.k * self.k * oh * ow
        return self.rows * self.fin * self.fout

    @property
    def weights(self) -> int:
        return self.ic // self.g * self.oc * self.k * self.k if self.family == "conv" else self.fin * self.fout

    @property
    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def graph(self, seed: int | None = 0) -> Graph:
        """A one-node graph running this op, with seeded random weights; with
        ``seed=None`` the weights are zero-stride placeholders (shapes only, no memory),
        enough for shape inference and features."""
        rng = np.random.default_rng(seed)

        def weight(*shape: int) -> np.ndarray:
            if seed is None:
                return np.broadcast_to(np.float32(0), shape)
            return rng.standard_normal(shape, dtype=np.float32)

        if self.family == "conv":
            g = Graph("sample", [TensorSpec("x", (1, self.ic, self.h, self.w), DType.FLOAT32)])
            g.constants["w"] = weight(self.oc, self.ic // self.g, self.k, self.k)
            g.constants["b"] = weight(self.oc)
            attrs = {"kernel": [self.k, self.k], "strides": [self.s, self.s], "dilations": [1, 1], "group": self.g,
                     "pads": [self.pad_top, self.pad, self.pad_bottom, self.pad]}
            node = Node("op", OpKind.CONV, ["x", "w", "b"], ["y"], attrs)
        else:
            g = Graph("sample", [TensorSpec("x", (self.rows, self.fin), DType.FLOAT32)])
            g.constants["w"] = weight(self.fout, self.fin)
            g.constants["b"] = weight(self.fout)
            node = Node("op", OpKind.LINEAR, ["x", "w", "b"], ["y"], {})
        g.add_node(node, infer_node(g, node))
        g.outputs = ["y"]
        return g

    def config(self) -> "OpConfig":
        """The predictor's view of this op (:func:`codl.predict.profiles.sample_config`)."""
        # predict/ comes after profile/, so it is imported when called: a convenience for
        # callers holding a Sample (tests, scripts); the library goes through predict/
        from ..predict.profiles import sample_config

        return sample_config(self)


def conv_parts(base: Sample) -> list[Sample]:
    """The sample whole, and each processor's share of it for every ratio along output
    channels and output rows (rows with their halo and the padding of their slice)."""
    out = [base]
    oh = base.out_hw[0]
    step = base.g * CHANNEL_GRID // math.gcd(base.g, CHANNEL_GRID)  # whole groups, on the grid
    for r in RATIOS:
        oc = max(step, int(round(base.oc * r / step)) * step)
        if oc < base.oc and Sample(**{**asdict(base), "oc": oc}) not in out:
            out.append(Sample(**{**asdict(base), "oc": oc}))
        rows = max(1, int(round(oh * r)))
        if rows < oh:  # the first `rows` output rows (the second processor's part is like it)
            lo, hi, top, bottom = conv_rows(0, rows, base.k, base.s, base.pad_top, 1, base.h)
            part = Sample(**{**asdict(base), "h": hi - lo, "pad_top": top, "pad_bottom": bottom})
            if part not in out:
                out.append(part)
    return out


def linear_parts(base: Sample) -> list[Sample]:
    out = [base]
    for r in RATIOS:
        fout, rows = max(CHANNEL_GRID, int(round(base.fout * r / CHANNEL_GRID)) * CHANNEL_GRID), max(1, int(round(base.rows * r)))
        for part in (Sample(**{**asdict(base), "fout": fout}), Sample(**{**asdict(base), "rows": rows})):
            if part.macs < base.macs and part not in out:
                out.append(part)
    return out


def model_samples(graph: Graph) -> list[Sample]:
    """The convs (groups 1, square kernels) and linears of a graph, as samples."""
    samples = []
    for node in graph.nodes:
        if node.op is OpKind.CONV and node.attrs["kernel"][0] == node.attrs["kernel"][1] and node.attrs["dilations"] == [1, 1]:
            x = graph.spec(node.inputs[0]).shape
            w = graph.spec(node.inputs[1]).shape
            pt, pl, pb, _ = node.attrs["pads"]
            samples.append(Sample("conv", x[1], w[0], x[2], x[3], w[2], node.attrs["strides"][0], pt, pb, pl, node.attrs["group"]))
        elif node.op is OpKind.LINEAR:
            x = graph.spec(node.inputs[0]).shape
            w = graph.spec(node.inputs[1]).shape
            rows = int(np.prod(x[:-1]))
            samples.append(Sample("linear", rows=rows, fin=w[1], fout=w[0]))
    return samples


def _affordable(sample: Sample) -> bool:
    """At most ~2 GMACs and 32 M weights, so a profile stays affordable."""
    return sample.macs <= 2e9 and sample.weights <= 2 ** 25


def perturbed_samples(bases: list[Sample], per_op: int, seed: int) -> list[Sample]:
    """``per_op`` variants of each op in ``bases`` (a model's ops), near it: the
    spatial size scaled by up to 2x either way, channel counts by up to 1.4x on the
    channel grid (first-layer 3 or 4 input channels, depthwise and grouped convs keep
    their channels), token rows by up to 4x; kernel, stride and padding kept. They
    fill the space around real networks' ops more densely than random draws do."""
    rng = random.Random(seed)

    def scale(v: int, spread: float) -> int:
        return max(CHANNEL_GRID, int(round(v * 2 ** rng.uniform(-spread, spread) / CHANNEL_GRID)) * CHANNEL_GRID)

    out: list[Sample] = []
    for base in bases:
        for _ in range(per_op):
            if base.family == "conv":
                f = 2 ** rng.uniform(-1, 1)
                h, w = (max(base.k, int(round(v * f))) for v in (base.h, base.w))
                if base.g > 1:
                    ic, oc = base.ic, base.oc
                else:
                    ic = base.ic if base.ic < CHANNEL_GRID else scale(base.ic, 0.5)
                    oc = scale(base.oc, 0.5)
                sample = Sample("conv", ic, oc, h, w, base.k, base.s, base.pad_top, base.pad_bottom, base.pad, base.g)
            else:
                rows = max(1, int(round(base.rows * 2 ** rng.uniform(-2, 2))))
                sample = Sample("linear", rows=rows, fin=scale(base.fin, 0.5), fout=scale(base.fout, 0.5))
            if _affordable(sample) and (sample.family == "linear" or min(sample.out_hw) > 0):
                out.append(sample)
    return out


def random_samples(family: str, n: int, seed: int) -> list[Sample]:
    """Draws over CoDL's ranges (H/W up to 640, IC 3-4096, OC 32-4096, kernel 1-9,
    stride 1-2), kept to at most ~2 GMACs so a profile stays affordable; transformer-like
    linear shapes. Channel counts are on the channel grid, as in real networks, except
    the 3 or 4 input channels of a first layer (one conv in eight)."""
    rng = random.Random(seed)
    out: list[Sample] = []

    def channels(lo: float, hi: float) -> int:
        return max(CHANNEL_GRID, int(round(2 ** rng.uniform(lo, hi) / CHANNEL_GRID)) * CHANNEL_GRID)

    while len(out) < n:
        if family == "conv":
            k = rng.choice([1, 1, 3, 3, 3, 5, 7, 9])
            s = rng.choice([1, 1, 2])
            h = int(2 ** rng.uniform(2, np.log2(640)))
            ic = rng.choice([3, 4]) if rng.random() < 0.125 else channels(3, 12)
            oc = channels(5, 12)
            sample = Sample("conv", ic, oc, h, h, k, s, k // 2, k // 2, k // 2)
        else:
            rows = int(2 ** rng.uniform(0, 12))
            sample = Sample("linear", rows=rows, fin=channels(6, 13), fout=channels(6, 13))
        if _affordable(sample):
            out.append(sample)
    return out


def profile_samples(families: Sequence[str], models: bool = True, random_ops: int = 150, perturbed: int = 2,
                    seed: int = 0, progress: bool = True) -> tuple[list[tuple[Sample, Sample]], int]:
    """What ``codl profile`` measures: with ``models``, the built-in models' ops of
    ``families`` ("conv", "linear") and ``perturbed`` variants of each; ``random_ops``
    random draws per family; each op whole and as its partial shares. Returns the
    (base, sample) pairs, shuffled with ``seed`` so that a run cut short by its budget
    covers the space evenly, and the number of distinct ops."""
    bases: list[Sample] = []
    if models:
        for name in zoo.MODELS:
            _say(f"collecting the ops of {name}", progress)
            bases += [b for b in model_samples(zoo.graph(name)) if b.family in families]
        bases += perturbed_samples(list({b.key: b for b in bases}.values()), perturbed, seed)
    for family in families:
        bases += random_samples(family, random_ops, seed)
    bases = list({b.key: b for b in bases}.values())
    pairs = [(b, part) for b in bases for part in (conv_parts(b) if b.family == "conv" else linear_parts(b))]
    random.Random(seed).shuffle(pairs)
    return pairs, len(bases)


def model_op_keys(progress: bool = True) -> frozenset[str]:
    """Sample keys of the built-in models' convs and linears (the ops a predictor is
    scored on separately), cached under the codl cache, since building the models takes
    half a minute, and keyed by the zoo's source."""
    sources = sorted(Path(zoo.__file__).parent.glob("*.py"))
    digest = hashlib.sha1(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    path = cache_dir() / f"model-ops-{digest}.json"
    try:
        return frozenset(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    _say("collecting the built-in models' ops (once; cached)", progress)
    keys = sorted({b.key for name in zoo.MODELS for b in model_samples(zoo.graph(name))})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys))
    return frozenset(keys)


def _say(text: str, progress: bool) -> None:
    if progress:
        print(f"codl: {text}", file=sys.stderr, flush=True)
