"""A session shared by threads, interrupted at random points, timed out, traced and closed
(CPU pair): every call that returns is right, none hangs, and outputs stay the caller's."""

from __future__ import annotations

import ctypes
import json
import os
import random
import threading
import time

import pytest
import torch

from codl import zoo
from codl.errors import ExecutionError
from codl.frontends import from_torch
from codl.ir.regions import Dim
from codl.plan import Placement, Plan, random_plan
from codl.processors import Processor
from codl.runtime import ReferenceRunner
from codl.runtime.session import compile
from codl.runtime.steps import Recv, Run, Send, Step

PAIR = (Processor.parse("cpu", threads=1), Processor.parse("cpu", threads=1))
RTOL = 1e-4


def close_to(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    return all(float((g - e).abs().max() / e.abs().max()) < RTOL for g, e in zip(got, expected))


def pinned_pair() -> tuple[Processor, Processor]:
    cores = sorted(os.sched_getaffinity(0))
    first, second = (cores[:1], cores[1:2]) if len(cores) > 1 else (cores, cores)
    return Processor.parse("cpu", cores=tuple(first)), Processor.parse("cpu", cores=tuple(second))


@pytest.fixture(scope="module")
def yolo() -> tuple:
    module, x = zoo.build("yolov2", (64, 64), width=0.25)
    graph = from_torch(module, x, name="yolov2")
    inputs = [torch.randn(x.shape, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    ref = ReferenceRunner(graph, Processor.parse("cpu"))
    return graph, inputs, [ref(i) for i in inputs]


def in_thread(fn, timeout: float = 60.0):  # noqa: ANN001, ANN201 - a helper: run fn, fail if it hangs
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"call did not return within {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("kind", ["split", "pinned-all-on-0"])
def test_concurrent_calls_from_four_threads_are_all_right(yolo: tuple, kind: str) -> None:
    graph, inputs, expected = yolo
    if kind == "split":
        session = compile(graph, random_plan(graph, 4, whole_share=0.0), PAIR)
    else:
        session = compile(graph, Plan.uniform(graph, Placement(Dim.OC, 0.0)), pinned_pair())
    wrong: list[str] = []

    def worker(k: int) -> None:
        for i in range(8):
            got = session(inputs[k])
            if not close_to(got, expected[k]):
                wrong.append(f"thread {k} call {i}")
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not wrong, f"wrong outputs: {wrong}"
    session.close()


def fail_at(session, proc: int, nth: int) -> Run:  # noqa: ANN001 - a Session
    """Make the session's ``nth`` run step on ``proc`` raise (through the fault hook)."""
    target = [s for s in session.programs[proc] if isinstance(s, Run)][nth]

    def hook(p: int, step: Step) -> None:
        if step is target:
            raise RuntimeError("injected failure")
    session.fault_hook = hook
    return target


def interrupted_call(session, x: torch.Tensor, delay_s: float) -> bool:  # noqa: ANN001 - a Session
    """Call the session in a thread that gets KeyboardInterrupt after ``delay_s``; True
    if the interrupt landed inside the call. Fails if the thread hangs."""
    box: dict = {}
    stop = threading.Event()

    def caller() -> None:
        try:
            box["out"] = session(x)
            while not stop.is_set():  # a late interrupt lands here, outside the call
                time.sleep(0.001)
        except KeyboardInterrupt:
            pass
    t = threading.Thread(target=caller, daemon=True)
    t.start()
    time.sleep(delay_s)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(KeyboardInterrupt))
    stop.set()
    t.join(60)
    assert not t.is_alive(), "the interrupted call hung"
    return "out" not in box


def test_interrupts_at_random_points_never_leave_a_wrong_or_hung_next_call(yolo: tuple) -> None:
    graph, inputs, expected = yolo
    session = compile(graph, random_plan(graph, 3, whole_share=0.0), PAIR, timeout_s=30)
    start = time.perf_counter()
    session(inputs[0])
    call_s = time.perf_counter() - start
    rng = random.Random(0)
    inside = 0
    for trial in range(30):
        inside += interrupted_call(session, inputs[trial % 4], rng.uniform(0.0, 1.5 * call_s))
        k = (trial + 1) % 4
        assert close_to(in_thread(lambda: session(inputs[k])), expected[k]), f"trial {trial}: wrong next call"
    assert inside >= 5, f"only {inside} of 30 interrupts landed inside a call"


def test_a_side_that_does_not_answer_times_out_naming_it(yolo: tuple) -> None:
    graph, inputs, expected = yolo
    session = compile(graph, random_plan(graph, 5, whole_share=0.0), PAIR, timeout_s=0.5)
    first_send = next(s for s in session.programs[1] if isinstance(s, Send))

    def stall(proc: int, step: Step) -> None:
        if step is first_send:
            time.sleep(1.5)
    session.fault_hook = stall
    with pytest.raises(ExecutionError, match=r"processor 1 \(cpu\) did not deliver .* within 0.5 s"):
        in_thread(lambda: session(inputs[0]))
    session.fault_hook = None
    assert close_to(in_thread(lambda: session(inputs[1])), expected[1])


def test_outputs_are_not_changed_by_the_next_call(yolo: tuple) -> None:
    graph, inputs, _ = yolo
    for plan in (random_plan(graph, 6), Plan.uniform(graph, Placement(Dim.OC, 1.0))):
        session = compile(graph, plan, PAIR)
        first = session(inputs[0])
        kept = [t.clone() for t in first]
        session(inputs[1])
        assert all(torch.equal(a, b) for a, b in zip(first, kept))


def test_trace_is_trace_event_json_with_one_slice_per_step(tmp_path, yolo: tuple) -> None:  # noqa: ANN001
    graph, inputs, expected = yolo
    session = compile(graph, random_plan(graph, 8, whole_share=0.0), PAIR)
    assert close_to(session(inputs[0], trace=True), expected[0])
    session.save_trace(tmp_path / "run.json")
    data = json.loads((tmp_path / "run.json").read_text())
    events = data["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(session.programs[0]) + len(session.programs[1])
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == set(session._tracks) and all("threads" in n for n in names)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in slices)
    assert {e["cat"] for e in slices} == {"run", "copy", "wait"}
    starts = {e["id"] for e in events if e["ph"] == "s"}
    ends = {e["id"] for e in events if e["ph"] == "f"}
    assert starts == ends == set(range(len(session.channels)))
    kinds = {type(s) for p in session.programs for s in p}
    assert kinds == {Run, Send, Recv}
    summary = data["otherData"]["summary"]
    assert set(summary) == set(session._tracks)
    assert all(v["busy_ms"] > 0 and v["span_ms"] >= v["busy_ms"] for v in summary.values())


def test_close_joins_its_threads(yolo: tuple) -> None:
    graph, inputs, _ = yolo
    session = compile(graph, random_plan(graph, 1, whole_share=0.0), PAIR)
    session(inputs[0])
    threads = list(session._threads)
    assert len(threads) == 2 and all(t.is_alive() for t in threads)
    session.close()
    assert not any(t.is_alive() for t in threads)
