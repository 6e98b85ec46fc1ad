"""Shared test settings."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """Runs that set a CPU thread count change it process-wide; restore it after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_zoo() -> dict:
    """Every built-in model at test size (width 0.25): (graph, input, fp32 CPU reference
    outputs); built once for the whole run."""
    from codl import zoo
    from codl.frontends import from_torch
    from codl.processors import Processor
    from codl.runtime import ReferenceRunner

    sizes = {"fst": (32, 48), "vit": (32, 32), "posenet": (32, 32)}
    out = {}
    for name in zoo.MODELS:
        module, x = zoo.build(name, sizes.get(name, (64, 64)), width=0.25)
        g = from_torch(module, x, name=name)
        out[name] = (g, x, ReferenceRunner(g, Processor.parse("cpu"))(x))
    return out
