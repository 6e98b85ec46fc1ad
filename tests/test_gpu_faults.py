"""GPU faults: out of memory during a call and at compile time, a device error on the
stream, a missing GPU. Each ends with a one-line codl error, and the session is either
right on the next call or says it cannot be used. Skipped without a GPU; on the GPU
machine:

    PYTHONPATH=src python -m pytest -q tests/test_gpu_faults.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from codl import zoo
from codl.bench import compare
from codl.errors import CodlError, ExecutionError
from codl.frontends import from_torch
from codl.plan import random_plan
from codl.processors import Processor
from codl.runtime.session import compile

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def yolo() -> tuple:
    """YOLOv2 at 416x416 (activations of megabytes: every one needs a fresh block once
    the GPU is full) and its reference output."""
    module, x = zoo.build("yolov2", (416, 416), width=0.5)
    graph = from_torch(module, x, name="yolov2")
    with torch.no_grad():
        expected = [module(x)]
    return graph, x, expected


def fill_gpu() -> list[torch.Tensor]:
    """Take every free byte of the GPU (to 2 MiB), after returning the allocator's cache."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    hog, size = [], 1 << 32
    while size >= 2 << 20:
        try:
            hog.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
        except torch.OutOfMemoryError:
            size //= 2
    return hog


def pair() -> tuple[Processor, Processor]:
    return Processor.parse("cpu"), Processor.parse("cuda")


@pytest.mark.parametrize("sync", ["events", "flags"])
def test_out_of_memory_during_a_call_fails_it_and_the_next_call_is_right(yolo: tuple, sync: str) -> None:
    graph, x, expected = yolo
    session = compile(graph, random_plan(graph, 3, whole_share=0.0), pair(), sync=sync, cuda_graph=False)
    assert compare(session(x), expected)["rel_l2_error"] < 1e-2
    hog = fill_gpu()
    try:
        with pytest.raises(ExecutionError, match="out of memory") as info:
            session(x)
        assert "\n" not in str(info.value).strip()
    finally:
        del hog
        torch.cuda.empty_cache()
    for _ in range(2):
        assert compare(session(x), expected)["rel_l2_error"] < 1e-2


def test_a_replayed_cuda_graph_allocates_nothing_so_a_full_gpu_does_not_fail_it(yolo: tuple) -> None:
    graph, x, expected = yolo
    session = compile(graph, random_plan(graph, 3, whole_share=0.0), pair(), sync="flags")
    assert session.gpu is not None and session.gpu.graph is not None
    hog = fill_gpu()
    try:
        assert compare(session(x), expected)["rel_l2_error"] < 1e-2
    finally:
        del hog
        torch.cuda.empty_cache()


def test_compiling_on_a_full_gpu_is_a_one_line_error(yolo: tuple) -> None:
    graph, x, expected = yolo
    hog = fill_gpu()
    try:
        with pytest.raises(CodlError, match=r"not enough memory on cuda:0 to compile this plan \(.*GiB free") as info:
            compile(graph, random_plan(graph, 4, whole_share=0.0), pair())
        assert "\n" not in str(info.value)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert compare(compile(graph, random_plan(graph, 4, whole_share=0.0), pair())(x), expected)["rel_l2_error"] < 1e-2


DEVICE_ERROR = """
import json, sys, time
import torch
from codl import zoo
from codl.errors import ExecutionError
from codl.frontends import from_torch
from codl.plan import random_plan
from codl.processors import Processor
from codl.runtime.session import compile
from codl.runtime.steps import Run

module, x = zoo.build("yolov2", (128, 128), width=0.25)
graph = from_torch(module, x, name="yolov2")
session = compile(graph, random_plan(graph, 3, whole_share=0.0), (Processor.parse("cpu"), Processor.parse("cuda")),
                  sync=sys.argv[1], timeout_s=30)
session(x)
runs = []
def hook(proc, step):
    if proc == 1 and type(step) is Run:
        runs.append(step)
        if len(runs) == 3:  # an index out of bounds: a device-side assert, on the compute stream
            torch.zeros(4, device="cuda")[torch.tensor([10], device="cuda")]
session.fault_hook = hook
out = {}
for key in ("first", "second"):
    t0 = time.perf_counter()
    try:
        session(x)
        out[key] = "no error"
    except ExecutionError as e:
        out[key] = str(e)
    out[key + "_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


@pytest.mark.parametrize("sync", ["events", "flags"])
def test_a_device_error_ends_the_call_quickly_and_the_session_says_it_cannot_be_used(sync: str) -> None:
    """In a child process: CUDA keeps a device error, so the process's GPU is lost."""
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-c", DEVICE_ERROR, sync], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "device" in out["first"] and "\n" not in out["first"], out
    assert out["first_s"] < 10, out  # found by probing the streams, not at the 30 s deadline
    assert "cannot be used" in out["second"] and out["second_s"] < 1, out


def test_a_missing_gpu_is_a_one_line_error_before_any_work() -> None:
    with pytest.raises(CodlError, match="not available"):
        Processor.parse(f"cuda:{torch.cuda.device_count()}")
    env = dict(os.environ, PYTHONPATH=SRC, CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "codl.cli", "bench", "yolov2", "-d", "cpu,cuda", "-n", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cuda" in lines[0] and "not available" in lines[0], done.stderr
    assert time.perf_counter() - t0 < 60
