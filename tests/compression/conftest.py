"""Fixtures for the compression tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run each test on one intra-op thread.

    The models here have d_model 32: their ops are too small to gain from a second thread, and
    when the two shared cores are busy, two threads make a step about ten times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
