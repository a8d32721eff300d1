"""Checkpoint format: safetensors + JSON, atomic, exact restore of every piece of state."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from transformers import BartForConditionalGeneration

from compression.checkpoint import (
    Checkpointer,
    TrainingState,
    latest_checkpoint,
    read_metadata,
    restore_checkpoint,
    save_checkpoint,
    snapshot,
)
from compression.data import LoaderPosition
from compression.recipe import TrainingSpec
from compression.train import build_optimizer, build_scheduler
from tests.tiny import tiny_bart_config


def _setup(seed: int) -> tuple[BartForConditionalGeneration, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(tiny_bart_config(50, encoder_layers=1, decoder_layers=1))
    optimizer = build_optimizer(model, TrainingSpec(lr=1e-3))
    return model, optimizer, build_scheduler(optimizer, TrainingSpec(), total_steps=20)


def _one_step(
    model: BartForConditionalGeneration, optimizer: torch.optim.Optimizer, scheduler: object
) -> None:
    batch = {"input_ids": torch.tensor([[0, 5, 6, 2]]), "labels": torch.tensor([[0, 7, 2]])}
    model(**batch).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def _save(
    path: Path,
    model: BartForConditionalGeneration,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    **kwargs: object,
) -> Path:
    state = TrainingState(step=4, loader=LoaderPosition(1, 2, 9), best_metric=3.5, best_metrics={"bleu": 3.5})
    return save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        best_model=kwargs.get("best_model"),
        metadata={"recipe": {"task": "translation"}},
    )


def test_restore_gives_back_weights_optimizer_scheduler_and_loop_state(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _one_step(model, optimizer, scheduler)
    _save(tmp_path / "ckpt", model, optimizer, scheduler, best_model=snapshot(model))
    fresh, fresh_opt, fresh_sched = _setup(1)
    state, best = restore_checkpoint(
        tmp_path / "ckpt", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched
    )
    torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(
        fresh_opt.state_dict()["state"], optimizer.state_dict()["state"], rtol=0, atol=0
    )
    assert fresh_sched.state_dict() == scheduler.state_dict()
    assert state == TrainingState(4, LoaderPosition(1, 2, 9), 3.5, {"bleu": 3.5})
    assert best is not None and best.keys() == model.state_dict().keys()


def test_tied_embeddings_stay_tied_after_restore(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _save(tmp_path / "ckpt", model, optimizer, scheduler)
    fresh, fresh_opt, fresh_sched = _setup(1)
    restore_checkpoint(tmp_path / "ckpt", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert fresh.lm_head.weight.data_ptr() == fresh.model.shared.weight.data_ptr()
    torch.testing.assert_close(fresh.lm_head.weight, model.model.shared.weight, rtol=0, atol=0)


def test_random_generators_continue_where_they_were(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _save(tmp_path / "ckpt", model, optimizer, scheduler)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    restore_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler)
    torch.testing.assert_close(torch.rand(3), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]


def test_only_safetensors_and_json_are_written(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _one_step(model, optimizer, scheduler)
    path = _save(tmp_path / "ckpt", model, optimizer, scheduler, best_model=snapshot(model))
    assert {p.suffix for p in path.iterdir()} == {".safetensors", ".json"}
    assert json.loads((path / "state.json").read_text())["metadata"] == read_metadata(path)


def test_saving_over_an_existing_checkpoint_leaves_no_temporary_files(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _save(tmp_path / "ckpt", model, optimizer, scheduler)
    _save(tmp_path / "ckpt", model, optimizer, scheduler)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_checkpointer_keeps_the_newest_and_latest_finds_it(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    checkpointer = Checkpointer(tmp_path, "distilling", {}, keep=2)
    for step in (3, 6, 9):
        checkpointer.save(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            state=TrainingState(step=step),
            best_model=None,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distilling-step-000006", "distilling-step-000009"]
    assert latest_checkpoint(tmp_path) == tmp_path / "distilling-step-000009"
