"""Shared fixtures: a real sample of debian-desc and tiny BART teachers built offline."""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from tests.tiny import SAMPLE_DIR, make_tiny_teacher

# Tiny models gain nothing from a second thread, and on busy 2-core machines it costs ~10x.
torch.set_num_threads(1)

# The library's user cache (teacher outputs and scores) of this test run, and of every server
# and worker process it starts: never the user's own ~/.cache/dqbart.
_CACHE = tempfile.mkdtemp(prefix="dqbart-test-cache-")
os.environ["DQB_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_records() -> list[dict[str, str]]:
    """Real (document, summary) records: the bundled sample."""
    with gzip.open(SAMPLE_DIR / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(400), f, strict=False)]


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-2 layer BART (d_model 32) with a tokenizer trained on the sample."""
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher"), encoder_layers=2, decoder_layers=2)


@pytest.fixture(scope="session")
def tiny_teacher_6x6_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 6-6 layer BART (d_model 32), the paper's teacher depth."""
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher66"), encoder_layers=6, decoder_layers=6)
