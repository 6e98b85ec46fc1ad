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
