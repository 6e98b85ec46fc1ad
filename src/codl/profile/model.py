"""A model profile: the model's own nodes measured on the machine, whole and at a grid of
shares on each processor, and the two processors' real exchanges; the measured source
of a :class:`codl.plan.cost.CostModel`.

Each node runs on each processor (in the session's settings: types, layouts, threads, SM
limit) on inputs from a reference run: whole, then for every dimension it splits on, the
partial kernel a session runs for a share of that dimension (split points aligned as the
session aligns them), timed back to back (:func:`codl.timing.time_back_to_back`: on
CUDA one captured graph replayed, the device's time). Exchanges: between a CPU and a
CUDA GPU, the session's own channel at 64 KB-16 MB each way
(:func:`codl.profile.exchange.measure_exchange`) and the CPU's copy into pinned memory;
between CPU groups, the hand-off of a posted piece between two threads and a copy.

Profiles are cached under the codl cache, keyed by the graph's structure, the
processors' settings and the machine's fingerprint; a second call loads them.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..atomic import write_atomic
from ..fingerprint import fingerprint
from ..ir.graph import Graph, Node
from ..ir.regions import Box, Dim, full_box, is_empty, relative
from ..ops import family
from ..plan.cost import GRID, CostModel, CostModelError, Link, NodeCost
from ..plan.random import split_dims
from ..processors import Processor, ProcessorKind
from ..processors.base import cpu_cache_bytes
from ..runtime.reference import ReferenceRunner, random_inputs, to_processor
from ..runtime.schedule import share_boxes, split_axis
from ..settings import cache_dir
from ..timing import time_back_to_back
from .exchange import measure_exchange

SHARES = GRID
PROFILE_VERSION = 3  # part of the cache key: bump when what a profile holds changes
SOURCE = "measured (model profile)"
# How exchanges are measured: a profile whose links are older has them measured again on
# load (seconds), its node costs kept. 1: GPU waits by cuStreamWaitValue32; 2: by a
# spinning kernel (codl.runtime.sync).
LINKS_VERSION = 2


def profile_key(graph: Graph, processors: tuple[Processor, Processor], shares: tuple[float, ...]) -> str:
    """A digest of what the profile depends on."""
    fp = {k: v for k, v in fingerprint().items() if k != "torch_threads"}
    text = json.dumps([PROFILE_VERSION, graph.to_json(), [p.describe() for p in processors], list(shares), fp],
                      sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def profile_path(graph: Graph, processors: tuple[Processor, Processor], shares: tuple[float, ...] = SHARES,
                 root: Path | None = None) -> Path:
    return (root or cache_dir() / "model-profiles") / f"{graph.name}-{profile_key(graph, processors, shares)}.json"


def load_or_profile(graph: Graph, processors: tuple[Processor, Processor], shares: tuple[float, ...] = SHARES,
                    root: Path | None = None, progress: bool = True, refresh: bool = False, **kw) -> CostModel:
    """The cached profile of ``graph`` on ``processors``, measured and saved first if absent."""
    path = profile_path(graph, processors, shares, root)
    if path.exists() and not refresh:
        try:
            cost = CostModel.from_json(json.loads(path.read_text()))
            cost.check(graph)
            if cost.links_version != LINKS_VERSION:
                if progress:
                    print(f"codl: the exchange costs in {path.name} were measured by an older codl; "
                          "measuring them again", flush=True)
                from ..runtime.session import pair_defaults

                cost.links, cost.links_version = measure_links(pair_defaults(processors)), LINKS_VERSION
                write_atomic(path, json.dumps(cost.to_json()))
            return cost
        except (OSError, ValueError, CostModelError) as e:
            if progress:
                print(f"codl: ignoring unreadable model profile {path} ({e}); measuring again", flush=True)
    cost = profile_model(graph, processors, shares, progress=progress, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(cost.to_json()))
    return cost


def _median_ms(fn: Callable[[], object], proc: Processor, repeats: int, warmup: int) -> float:
    """On a GPU: back to back (its time for the op's kernels). On a CPU: one call at a time
    after the caches are flushed, since in a session an op's input arrives from memory
    (another op or the other processor wrote it) while back-to-back calls find input and
    output in the cache: on the H200 machine's CPU the decoder ops of FST ran 2-5x slower
    in sessions than back to back (docs/results/planners.md)."""
    with proc.work_context():
        if proc.kind is not ProcessorKind.CPU:
            return statistics.median(time_back_to_back(fn, proc, repeats, warmup)[0])
        with torch.inference_mode():
            for _ in range(max(1, warmup)):
                fn()
            samples = []
            for _ in range(max(1, min(repeats, 3))):  # cold calls vary little; a flush costs ~10 ms
                _flush_caches()
                t = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t) * 1e3)
        return statistics.median(samples)


_FLUSH: list[torch.Tensor] = []


def _flush_caches() -> None:
    """Write a buffer of twice the L3 (32-256 MB) so the next call starts cold."""
    if not _FLUSH:
        l3 = cpu_cache_bytes().get("l3_bytes", 32 << 20)
        _FLUSH.append(torch.zeros(min(256 << 20, max(32 << 20, 2 * l3)) // 4, dtype=torch.float32))
    _FLUSH[0].add_(1.0)


def profile_model(graph: Graph, processors: tuple[Processor, Processor], shares: tuple[float, ...] = SHARES,
                  repeats: int = 5, warmup: int = 2, progress: bool = True,
                  inputs: list[torch.Tensor] | None = None, budget_s: float | None = None) -> CostModel:
    """Measure every node of ``graph`` on both processors, whole and at ``shares``. With
    ``budget_s``, shares are measured heaviest node first until the budget is spent; the
    rest stay whole-only (planners then do not split them; the source says how many)."""
    from ..runtime.session import pair_defaults

    processors = pair_defaults(processors)
    torch.set_grad_enabled(False)
    threads_before = torch.get_num_threads()
    inputs = inputs if inputs is not None else random_inputs(graph)
    values = ReferenceRunner(graph, Processor.parse("cpu")).run_all(*inputs)
    steps = sum(1 + len(shares) * len(split_dims(graph, n.name)) for n in graph.nodes) * 2
    bar = _bar(steps, f"profiling {graph.name}", progress)
    nodes: dict[str, NodeCost] = {}
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    skipped = 0
    try:
        # whole times first: every node gets those
        whole = whole_times(graph, processors, graph.nodes, values, repeats, warmup, bar)
        # then shares, the heaviest nodes first, while the budget lasts
        order = sorted(graph.nodes, key=lambda n: -max(whole[0][n.name], whole[1][n.name]))
        points: dict[str, list[dict]] = {}
        for node in order:
            if deadline is not None and time.monotonic() > deadline:
                skipped += 1
                bar.update(2 * len(shares) * len(split_dims(graph, node.name)))
                continue
            points[node.name] = []
            for q, proc in enumerate(processors):
                proc.activate()
                points[node.name].append(_shares(graph, node, proc, q, values, shares, repeats, warmup, bar))
        for node in graph.nodes:
            s0, s1 = points.get(node.name, [{}, {}])
            # a dimension no share of which is partial (8 channels on an 8-channel grid) is left out
            nodes[node.name] = NodeCost((whole[0][node.name], whole[1][node.name]),
                                        {d: (sorted(s0[d]), sorted(s1[d])) for d in s0 if s0[d] and s1[d]})
        links, copy = exchange_costs(processors)
    finally:
        torch.set_num_threads(threads_before)
        bar.close()
    itemsize = processors[0].dtype.itemsize
    source = SOURCE if not skipped else f"{SOURCE}; {skipped} lightest nodes whole only (profile budget)"
    return CostModel(graph.name, nodes, links, source, [p.describe() for p in processors], itemsize, copy,
                     LINKS_VERSION)


def whole_times(graph: Graph, processors: tuple[Processor, Processor], nodes: Sequence[Node], values: dict,
                repeats: int, warmup: int, bar=None, reuse_same: bool = False) -> list[dict[str, float]]:
    """ms of each of ``nodes`` whole on each processor (``values``: every tensor of a
    reference run). With ``reuse_same``, a processor described exactly as processor 0
    (two CPU groups alike) takes processor 0's times rather than being measured again."""
    whole: list[dict[str, float]] = [{}, {}]
    for q, proc in enumerate(processors):
        if q == 1 and reuse_same and proc.describe() == processors[0].describe():
            whole[1] = dict(whole[0])
            if bar is not None:
                bar.update(len(nodes))
            continue
        proc.activate()
        for node in nodes:
            whole[q][node.name] = _whole(graph, node, proc, values, repeats, warmup)
            if bar is not None:
                bar.update(1)
    return whole


def exchange_costs(processors: tuple[Processor, Processor]) -> tuple[tuple[Link, Link], tuple[float, float]]:
    """The two links (:func:`measure_links`) and each processor's copy in ms per MB."""
    return measure_links(processors), (_copy_ms_per_mb(processors[0]), _copy_ms_per_mb(processors[1]))


def _inputs(graph: Graph, node, values: dict) -> list[torch.Tensor]:
    return [torch.from_numpy(graph.constants[i].copy()) if graph.is_constant(i) else values[i] for i in node.inputs]


def _whole(graph: Graph, node, proc: Processor, values: dict, repeats: int, warmup: int) -> float:
    args = [to_processor(t, proc) for t in _inputs(graph, node, values)]
    kernel = family(node.op).kernel(node, proc.backend)
    return _median_ms(lambda: kernel(*args), proc, repeats, warmup)


def _shares(graph: Graph, node, proc: Processor, q: int, values: dict, shares: tuple[float, ...],
            repeats: int, warmup: int, bar) -> dict:
    """(share, ms) points of ``node`` on processor ``q`` for each dimension it splits on."""
    fam, out = family(node.op), graph.spec(node.outputs[0])
    ins = [graph.spec(i) for i in node.inputs]
    whole_inputs = _inputs(graph, node, values)
    points: dict = {}
    for dim in split_dims(graph, node.name):
        points[dim] = []
        bar.update(len(shares))
        for frac, box in partial_boxes(graph, node, dim, q, shares):
            sliced = [to_processor(t[relative(b, full_box(t.shape))].contiguous(), proc)
                      for t, b in zip(whole_inputs, fam.input_boxes(node, ins, out, box))]
            part = fam.partial_kernel(node, ins, out, box, proc.backend)
            points[dim].append((frac, _median_ms(lambda: part(*sliced), proc, repeats, warmup)))
    return points


def partial_boxes(graph: Graph, node, dim: Dim, q: int, shares: tuple[float, ...] = SHARES) -> list[tuple[float, Box]]:
    """Processor ``q``'s part of ``node`` at each of ``shares`` of ``dim``, cut as a session
    cuts it (split points aligned): (fraction of the split axis, output box). Shares whose
    part is empty or whole, or the same as an earlier share's (alignment), are left out.
    What a profile measures and what the predicted cost model predicts."""
    out = graph.spec(node.outputs[0])
    axis, align = split_axis(graph, node, dim)
    whole = full_box(out.shape)
    got: list[tuple[float, Box]] = []
    for share in shares:
        rho = share if q == 1 else 1.0 - share
        box = share_boxes(whole, axis, align, rho)[q]  # as own_box cuts a node placed at (dim, rho)
        if is_empty(box) or box == whole:
            continue
        frac = (box[axis][1] - box[axis][0]) / out.shape[axis]
        if not any(abs(frac - f) < 1e-9 for f, _ in got):
            got.append((frac, box))
    return got


def measure_links(processors: tuple[Processor, Processor], rounds: int = 10) -> tuple[Link, Link]:
    """The two directions of exchange between ``processors``, measured."""
    p0, p1 = processors
    copy_ms_per_mb = _cpu_copy_ms_per_mb(p0, pinned=p1.kind is ProcessorKind.CUDA)
    if p1.kind is ProcessorKind.CUDA:
        conversion = ("none" if p0.dtype == p1.dtype and p0.channels_last == p1.channels_last else
                      "dtype" if p0.channels_last == p1.channels_last else "dtype+layout")
        rows = measure_exchange(rounds, p1.sm_limit, sizes=(64 << 10, 1 << 20, 4 << 20, 16 << 20),
                                conversions=(conversion,), device=p1.index, progress=False)
        pts = {w: [(r["bytes"], r["latency_ms"]["median_ms"]) for r in rows if r["default"] and r["what"] == w]
               for w in ("cpu->gpu", "gpu->cpu")}
        return Link.fit(pts["cpu->gpu"], copy_ms_per_mb), Link.fit(pts["gpu->cpu"])
    handoff = _handoff_ms(rounds * 20)
    return Link(handoff, copy_ms_per_mb), Link(handoff, copy_ms_per_mb)


def _cpu_copy_ms_per_mb(cpu: Processor, pinned: bool, nbytes: int = 4 << 20) -> float:
    cpu.activate()
    src = torch.empty(nbytes, dtype=torch.uint8)
    dst = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned and torch.cuda.is_available())
    samples = []
    for _ in range(12):
        t = time.perf_counter()
        dst.copy_(src)
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples[2:]) / (nbytes / 1e6)


def _copy_ms_per_mb(proc: Processor, nbytes: int = 16 << 20) -> float:
    """A copy of 16 MB in the processor's type on the processor (how inputs are assembled)."""
    proc.activate()
    src = torch.empty(nbytes // 2, dtype=torch.float16, device=proc.device)
    dst = torch.empty_like(src)
    return _median_ms(lambda: dst.copy_(src), proc, 5, 2) / (nbytes / 1e6)


def _handoff_ms(rounds: int) -> float:
    """Half a round trip of two threads posting to each other through a CallState."""
    from ..runtime.call import CallState

    state = CallState(2 * rounds, 10.0, ("a", "b"))

    def echo() -> None:
        for i in range(rounds):
            state.wait_posted(2 * i, 0, "ping")
            state.post(2 * i + 1)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        state.post(2 * i)
        state.wait_posted(2 * i + 1, 1, "pong")
        samples.append((time.perf_counter() - start) * 1e3 / 2)
    t.join()
    return statistics.median(samples)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, what: str, progress: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # a machine without it (pip install tqdm): no bar
        return _NoBar()
    if not progress:
        return _NoBar()

    return tqdm(total=total, desc=f"codl: {what}", unit="op", leave=False)
