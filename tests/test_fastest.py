"""The faster-of-two kernel chooser (codl.ops.fastest), with a synthetic timer on the CPU."""

from __future__ import annotations

import pytest
import torch

from codl.errors import CodlError
from codl.ops import fastest
from codl.processors import Processor
from codl.processors.base import default_pair


@pytest.fixture(autouse=True)
def _fresh() -> None:
    fastest.forget()


def _pair(slow_ms: float, fast_ms: float) -> tuple[list[str], object, object, object]:
    """Two kernels that log their calls, and a timer that charges each its cost."""
    log: list[str] = []

    def slow(x: torch.Tensor) -> torch.Tensor:
        log.append("slow")
        return x + 1

    def quick(x: torch.Tensor) -> torch.Tensor:
        log.append("quick")
        return x + 1

    def timer(fn) -> float:  # noqa: ANN001
        before = len(log)
        fn()
        return {"slow": slow_ms, "quick": fast_ms}[log[before]]
    return log, slow, quick, timer


@pytest.mark.parametrize("own_ms, keeps", [(1.0, "quick"), (3.0, "slow")])
def test_the_faster_kernel_is_kept_per_signature(own_ms: float, keeps: str) -> None:
    log, slow, quick, timer = _pair(2.0, own_ms)
    kernel = fastest.faster_of(("op", 1), slow, quick, timer=timer)
    x = torch.zeros(2, 3)
    assert torch.equal(kernel(x), x + 1)
    timed = len(log)
    assert timed == 2 + 2 * fastest.ROUNDS + 1  # one untimed call each, the rounds, then the call itself
    kernel(x)
    kernel(x)
    assert log[timed:] == [keeps, keeps]  # decided once: no more timing
    (choice,) = fastest.choices().values()
    assert (choice.library_ms, choice.own_ms) == (2.0, own_ms)


def test_a_new_shape_or_op_is_timed_again_and_unsupported_calls_stay_on_the_library() -> None:
    log, slow, quick, timer = _pair(2.0, 1.0)
    kernel = fastest.faster_of(("op", 1), slow, quick, applies=lambda x: x.shape[0] > 1, timer=timer)
    kernel(torch.zeros(2, 3))
    kernel(torch.zeros(4, 3))
    fastest.faster_of(("op", 2), slow, quick, timer=timer)(torch.zeros(2, 3))
    assert len(fastest.choices()) == 3
    # a channels-last copy has other strides: its own signature
    assert fastest.signature("k", (torch.zeros(1, 2, 3, 3),)) != fastest.signature(
        "k", (torch.zeros(1, 2, 3, 3).contiguous(memory_format=torch.channels_last),))
    del log[:]
    kernel(torch.zeros(1, 3))
    assert log == ["slow"] and len(fastest.choices()) == 3


def test_fastest_kernels_are_refused_where_there_is_nothing_to_choose() -> None:
    with pytest.raises(CodlError, match="fastest-kernels applies to cuda"):
        Processor.parse("cpu", fastest_kernels=True)
    with pytest.raises(CodlError, match="not to two CPU groups"):
        default_pair("cpu,cpu", fastest_kernels=True)
    with pytest.raises(CodlError, match="not both"):
        Processor(Processor.parse("cpu").kind, own_kernels=True, fastest_kernels=True, channels_last=True)


def test_the_bench_counts_the_shapes_on_each_source() -> None:
    from codl.bench.model import kernel_choices

    log, slow, quick, timer = _pair(2.0, 1.0)
    fastest.faster_of("a", slow, quick, timer=timer)(torch.zeros(2))
    fastest.faster_of("b", quick, slow, timer=timer)(torch.zeros(2))  # here the library kernel is the quick one
    assert kernel_choices() == {"shapes": 2, "own": 1}
