"""The predicted source of a :class:`codl.plan.cost.CostModel`: the fitted predictors'
times for the nodes they cover, measured times for the rest.

For each processor of the pair and each node whose op family has a fitted predictor
(conv, linear: :func:`codl.predict.features.config_of`), the predictor gives the node's
time whole and at every share of every dimension the node splits on, the parts cut as a
model profile cuts them (:func:`codl.profile.model.partial_boxes`). All configs of one
predictor go to it in one ``predict`` call: a model costs a few calls, not thousands.

Nodes no predictor covers (elementwise, pooling, concat, ...) are not given invented
times: each is run whole once on each processor, as a model profile runs it
(:func:`codl.profile.model.whole_times`), and a share of it costs what the cost model
makes of a share below its first point (``whole * (0.5 + 0.5 * share)``: a partial op
keeps a fixed part of its cost). The exchanges and copies are measured as a profile
measures them. ``source`` says which predictor predicted what and how many nodes were
measured.

Predictors are valid for the processor their profile measured (its device, type,
layout, threads, SM limit, kernels): :func:`check_fitted` refuses any other with a line
naming what differs and what to do. A GPU on ``--fastest-kernels`` is predicted by the
smaller of its library and own kernels' predictions (:class:`FasterOf`), so it needs
both fitted.

Example::

    fitted = find_predictors(pair)                   # from the codl cache, or paths=[...]
    cost = cost_from_predictors(graph, pair, fitted)
    cost.source  # 'predicted (cpu#0: conv, linear by analytic; ...; 30 nodes measured whole, ...)'
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import CodlError
from ..fingerprint import fingerprint
from ..ir.graph import Graph
from ..ir.regions import Dim
from ..plan.cost import GRID, CostModel, NodeCost
from ..plan.random import split_dims
from ..processors import Processor
from ..profile.model import LINKS_VERSION, exchange_costs, partial_boxes, whole_times
from ..runtime.prepare import pair_defaults
from ..runtime.reference import ReferenceRunner, random_inputs
from .features import OpConfig, config_of

# the settings a predictor is only valid for, as Processor.describe() records them
MATCHED = ("device", "name", "dtype", "channels_last", "threads", "sm_limit", "autotune", "kernels")
# the machine a predictor's profile was measured on, as fingerprint() records it
MACHINE = ("cpu", "gpu", "gpu_sms", "torch")
# preferred first: CoDL's model of the kernel that runs, then the better-scoring baseline
PREFERENCE = ("analytic", "forest", "flops")
_FILE = re.compile(r"^(?P<stem>.+)\.(?P<kind>analytic|forest|flops)\.(?P<family>[a-z]+)\.json$")


@dataclass
class Fitted:
    """The predictors of one processor: by op family, a fitted model with a ``predict(configs)``
    in ms; ``processor``: the processor their profile measured (as ``Processor.describe()``
    records it); ``names``: by family, what to call the model in ``source``."""

    processor: dict[str, Any]
    models: dict[str, Any]
    names: dict[str, str] = field(default_factory=dict)

    def name(self, family: str) -> str:
        return self.names.get(family, getattr(self.models[family], "kind", type(self.models[family]).__name__))


def differences(fitted_for: dict[str, Any], proc: Processor) -> list[str]:
    """What differs between the processor predictors were fitted for and ``proc``, as
    'key there -> here' texts (the device's index aside)."""
    mine = proc.describe()
    theirs = dict(fitted_for)
    out = []
    for key in MATCHED:
        a, b = theirs.get(key), mine.get(key)
        if key == "device":
            a, b = str(a).partition(":")[0], str(b).partition(":")[0]
        if key == "kernels":
            a, b = a or "library", b or "library"
        if a != b:
            out.append(f"{key} {a} (fitted) vs {b} (here)")
    return out


def profile_flags(proc: Processor) -> str:
    """The ``codl profile`` / ``codl predictor fit`` options that measure ``proc``."""
    d = proc.describe()
    flags = [f"-d {proc.label}"]
    if "threads" in d:
        flags.append(f"--threads {d['threads']}")
    if proc.dtype.value != "float32":
        flags.append("--dtype " + {"float16": "fp16", "bfloat16": "bf16"}.get(proc.dtype.value, proc.dtype.value))
    if proc.channels_last and not (proc.own_kernels and proc.kind.value == "cpu"):
        flags.append("--channels-last")
    if proc.sm_limit:
        flags.append(f"--sm-limit {proc.sm_limit}")
    if proc.own_kernels:
        flags.append("--own-kernels")
    if proc.fastest_kernels:
        flags.append("--fastest-kernels")
    return " ".join(flags)


def advice(fitted_for: dict[str, Any], proc: Processor, what: str) -> str:
    """How the processor ``what`` was fitted for differs from ``proc``,
    and the ways out (plan with its settings, fit for these, or plan on a profile)."""
    diff = differences(fitted_for, proc)
    flags: list[str] = []
    kernels = {"codl": "--own-kernels", "fastest": "--fastest-kernels"}
    theirs, mine = kernels.get(fitted_for.get("kernels") or ""), kernels.get(proc.describe().get("kernels") or "")
    if theirs != mine:
        flags.append(theirs or f"without {mine}")
    if fitted_for.get("dtype") != proc.dtype.value:
        flags.append("--native" if fitted_for.get("dtype") in ("bfloat16", "float16") else "without --native")
    if fitted_for.get("threads") not in (None, (proc.describe()).get("threads")):
        flags.append(f"--threads {fitted_for['threads']} (beside a GPU; two CPU groups get half the cores each)")
    if fitted_for.get("sm_limit") != proc.sm_limit:
        flags.append(f"--sm-limit {fitted_for['sm_limit']}" if fitted_for.get("sm_limit") else "without --sm-limit")
    how = f"plan with {' '.join(flags)}, or " if flags else ""
    mine = profile_flags(proc)
    return (f"{what} fitted for another processor ({'; '.join(diff)}); {how}fit "
            f"predictors for this one (codl profile {mine}, then codl predictor fit {mine}), or use --costs profile")


def check_fitted(fitted: Fitted, proc: Processor, q: int) -> None:
    """Refuse predictors fitted for another processor than ``proc`` (processor ``q`` of a pair)."""
    if differences(fitted.processor, proc):
        raise CodlError(f"processor {q} ({proc.label}): " + advice(fitted.processor, proc, "its predictors were"))


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A predictor file's JSON, the processor it was fitted for and the fingerprint of the
    machine its profile measured (recorded by ``codl predictor fit``; for older files, the
    profile's settings beside it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CodlError(f"{path}: not a readable predictor file ({e})") from None
    on = data.get("fitted_on")
    if not isinstance(on, dict):
        match = _FILE.match(path.name)
        side = path.with_name(f"{match['stem']}.json") if match else None
        try:
            on = json.loads(side.read_text()) if side else None
        except (OSError, json.JSONDecodeError):
            on = None
        if not isinstance(on, dict) or "processor" not in on:
            raise CodlError(f"{path}: the file does not say which processor it was fitted for; fit it again "
                            f"(codl predictor fit)")
    return data, on["processor"], on.get("fingerprint", data.get("fingerprint", {}))


def find_predictors(processors: tuple[Processor, Processor], paths: Sequence[str | Path] | None = None) -> tuple[Fitted, Fitted]:
    """The fitted predictors of each processor among ``paths`` (predictor files, or
    directories holding them; default: the codl cache, where ``codl profile`` and
    ``codl predictor fit`` write): for each op family, the first of ``PREFERENCE`` fitted
    on this machine for a processor matching exactly. Fails on one line when a processor
    has none, naming what the nearest one differs in."""
    from ..settings import cache_dir

    roots = [Path(p) for p in paths] if paths else [cache_dir() / "profiles"]
    files = []
    for root in roots:
        if not paths and not root.exists():
            continue  # nothing profiled yet: said below
        if root.is_dir():
            files += sorted(f for f in root.iterdir() if _FILE.match(f.name))
        elif root.is_file():
            if not _FILE.match(root.name):
                raise CodlError(f"{root}: not a predictor file name (<profile>.<predictor>.<family>.json, "
                                f"as codl predictor fit writes)")
            files.append(root)
        else:
            raise CodlError(f"--predictors {root}: no such file or directory")
    here = fingerprint()
    read = [(f, *_read(f)) for f in files]
    out = []
    for q, proc in enumerate(processors):
        if not proc.fastest_kernels:
            out.append(_fitted_for(q, proc, read, here, roots))
            continue
        # each shape runs on the faster source: the faster of the two sources' predictions
        sources = (dataclasses.replace(proc, fastest_kernels=False),
                   dataclasses.replace(proc, fastest_kernels=False, own_kernels=True))
        try:
            library, own = (_fitted_for(q, p, read, here, roots) for p in sources)
        except CodlError as e:
            raise CodlError(f"--fastest-kernels is predicted from the predictors of both kernel sources: {e}") from None
        out.append(faster_fitted(library, own, proc.describe()))
    return out[0], out[1]


def _fitted_for(q: int, proc: Processor, read: list, here: dict[str, Any], roots: list[Path]) -> Fitted:
    mine = [(f, data, on) for f, data, on, fp in read
            if not differences(on, proc) and all(fp.get(k) == here.get(k) for k in MACHINE)]
    models: dict[str, Any] = {}
    names: dict[str, str] = {}
    for kind in PREFERENCE:
        for f, data, _ in mine:
            m = _FILE.match(f.name)
            assert m is not None
            if m["kind"] == kind and m["family"] not in models:
                models[m["family"]] = _load(f, data)
                names[m["family"]] = f"{kind} of {m['stem']}"
    if not models:
        raise CodlError(_none_found(q, proc, read, here, roots))
    return Fitted(proc.describe(), models, names)


@dataclass(frozen=True)
class FasterOf:
    """A predictor for a processor that runs each shape on the faster of two kernel
    sources (:mod:`codl.ops.fastest`): the smaller of the two sources' predictions, ms."""

    library: Any
    own: Any
    kind = "faster"

    def predict(self, configs: Sequence[OpConfig]) -> np.ndarray:
        return np.minimum(np.asarray(self.library.predict(configs)), np.asarray(self.own.predict(configs)))


def faster_fitted(library: Fitted, own: Fitted, processor: dict[str, Any]) -> Fitted:
    """The predictors of ``processor`` (a GPU on the faster kernel source per shape) from
    those of its library and own kernels: the families both cover (the rest are left to
    measurement)."""
    both = [f for f in library.models if f in own.models]
    return Fitted(processor, {f: FasterOf(library.models[f], own.models[f]) for f in both},
                  {f: f"the faster of {library.name(f)} and {own.name(f)}" for f in both})


def _load(path: Path, data: dict[str, Any]) -> Any:
    from .linear_model import load_predictor

    try:
        return load_predictor(data)
    except CodlError as e:
        raise CodlError(f"{path}: {e}") from None


def _none_found(q: int, proc: Processor, read: list, here: dict[str, Any], roots: list[Path]) -> str:
    where = ", ".join(str(r) for r in roots)
    near = [(f, on) for f, _, on, fp in read
            if all(fp.get(k) == here.get(k) for k in MACHINE) and on.get("device", "").partition(":")[0] == proc.kind.value]
    if near:
        f, on = min(near, key=lambda x: len(differences(x[1], proc)))
        return f"no fitted predictor for processor {q} ({proc.label}) in {where}: " + advice(
            on, proc, f"the nearest, {f.name}, was")
    flags = profile_flags(proc)
    return (f"no fitted predictor for processor {q} ({proc.label}) on this machine in {where}; run `codl profile "
            f"{flags}` then `codl predictor fit {flags}`, or use --costs profile")


@dataclass
class Predicted:
    """What the predictors give for a graph: per processor, whole ms of each covered node
    and its (share, ms) points per dimension; ``calls``: ``predict`` calls made."""

    whole: list[dict[str, float]]
    points: list[dict[str, dict[Dim, list[tuple[float, float]]]]]
    covered: list[dict[str, str]]  # per processor: node -> op family
    calls: int


def predict_nodes(graph: Graph, processors: tuple[Processor, Processor], fitted: tuple[Fitted, Fitted],
                  shares: tuple[float, ...] = GRID) -> Predicted:
    """Every covered node's predicted costs, one ``predict`` call per fitted model."""
    jobs: dict[int, tuple[Any, list[OpConfig], list[tuple]]] = {}  # id(model) -> model, configs, slots
    covered: list[dict[str, str]] = [{}, {}]
    points: list[dict[str, dict[Dim, list[tuple[float, float]]]]] = [{}, {}]
    for node in graph.nodes:
        try:
            whole = config_of(graph, node)
        except (ValueError, KeyError):
            continue  # not a featured family
        dims = split_dims(graph, node.name)
        for q in (0, 1):
            model = fitted[q].models.get(whole.family)
            if model is None:
                continue
            covered[q][node.name] = whole.family
            _, configs, slots = jobs.setdefault(id(model), (model, [], []))
            configs.append(whole)
            slots.append((q, node.name, None, 1.0))
            points[q][node.name] = {}
            for dim in dims:
                points[q][node.name][dim] = []
                for frac, box in partial_boxes(graph, node, dim, q, shares):
                    configs.append(config_of(graph, node, box))
                    slots.append((q, node.name, dim, frac))
    whole_ms: list[dict[str, float]] = [{}, {}]
    for model, configs, slots in jobs.values():
        # each distinct config once: a channel share's part is the same op on either
        # processor, and repeated blocks repeat their ops
        index: dict[OpConfig, int] = {}
        at = [index.setdefault(c, len(index)) for c in configs]
        times = model.predict(list(index))
        for (q, name, dim, frac), i in zip(slots, at):
            ms = max(0.0, float(times[i]))
            if dim is None:
                whole_ms[q][name] = ms
            else:
                points[q][name][dim].append((frac, ms))
    return Predicted(whole_ms, points, covered, len(jobs))


def cost_from_predictors(graph: Graph, processors: tuple[Processor, Processor], fitted: tuple[Fitted, Fitted],
                         inputs: list[torch.Tensor] | None = None, repeats: int = 1, warmup: int = 1,
                         progress: bool = False) -> CostModel:
    """The predicted cost model of ``graph`` on ``processors`` (see the module docstring);
    ``repeats``/``warmup``: of each measurement of a node no predictor covers."""
    processors = pair_defaults(tuple(processors))  # type: ignore[arg-type]
    for q in (0, 1):
        check_fitted(fitted[q], processors[q], q)
    pred = predict_nodes(graph, processors, fitted)
    rest = [n for n in graph.nodes if not (n.name in pred.covered[0] and n.name in pred.covered[1])]
    threads_before = torch.get_num_threads()
    try:
        measured: list[dict[str, float]] = [{}, {}]
        if rest:
            if progress:
                print(f"codl: measuring the {len(rest)} nodes no predictor covers", file=sys.stderr, flush=True)
            with torch.inference_mode():
                values = ReferenceRunner(graph, Processor.parse("cpu")).run_all(
                    *(inputs if inputs is not None else random_inputs(graph)))
                measured = whole_times(graph, processors, rest, values, repeats, warmup, reuse_same=True)
        links, copy = exchange_costs(processors)
    finally:
        torch.set_num_threads(threads_before)
    nodes = {}
    for node in graph.nodes:
        mine = [node.name in pred.covered[q] for q in (0, 1)]
        whole = tuple(pred.whole[q][node.name] if mine[q] else measured[q][node.name] for q in (0, 1))
        shares = {}
        for dim in split_dims(graph, node.name):
            # a processor without predictions for the node has no points: the small-share rule
            pts = [sorted(pred.points[q][node.name][dim]) if mine[q] else [] for q in (0, 1)]
            partial = [bool(pts[q]) if mine[q] else bool(partial_boxes(graph, node, dim, q)) for q in (0, 1)]
            if all(partial):  # else no share of it is partial (8 channels on an 8-channel grid), as a profile leaves it
                shares[dim] = (pts[0], pts[1])
        nodes[node.name] = NodeCost(whole, shares)  # type: ignore[arg-type]
    source = _source(processors, fitted, pred, len(rest))
    return CostModel(graph.name, nodes, links, source, [p.describe() for p in processors],
                     processors[0].dtype.itemsize, copy, LINKS_VERSION)


def _source(processors: tuple[Processor, Processor], fitted: tuple[Fitted, Fitted], pred: Predicted,
            measured: int) -> str:
    """E.g. 'predicted (cpu#0 and cpu#1: conv, linear by analytic of <profile>; 47 other
    nodes measured whole, ...; exchanges measured)'."""
    said: dict[str, list[str]] = {}  # what predicted what -> the processors it did so for
    for q, proc in enumerate(processors):
        by: dict[str, list[str]] = {}
        for family in sorted(set(pred.covered[q].values())):
            by.setdefault(fitted[q].name(family), []).append(family)
        what = "; ".join(f"{', '.join(fams)} by {name}" for name, fams in by.items()) or "no node covered"
        said.setdefault(what, []).append(f"{proc.label}#{q}")
    parts = [f"{' and '.join(procs)}: {what}" for what, procs in said.items()]
    rest = (f"{measured} other nodes measured whole, their shares by the cost model's small-share rule"
            if measured else "no node measured")
    return f"predicted ({'; '.join(parts)}; {rest}; exchanges measured)"
