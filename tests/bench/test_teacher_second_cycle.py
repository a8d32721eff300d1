"""bench/teacher_second_cycle.py: the second cycle's curve comes from bench.quality's log."""

from __future__ import annotations

from pathlib import Path

from bench.teacher_second_cycle import curve_from_log


def test_the_curve_keeps_the_evaluations_of_the_log_and_skips_its_loss_lines(tmp_path: Path) -> None:
    log = tmp_path / "teacher.log"
    log.write_text(
        "      1 s  [finetuning_teacher] step 0/1500 training the teacher for 1500 steps\n"
        "    600 s  [finetuning_teacher] step 500/1500 loss/task 3.9 lr 0.0004\n"
        "  650 s  [finetuning_teacher] step 500/1500 eval/rouge1 31.89 eval/rougeLsum 28.67 eval/gap 1.359\n"
        "  [finetuning_teacher] step 1000/1500  {'eval/rougeLsum': 31.55, 'eval/gap': 1.54}\n",
        encoding="utf-8",
    )
    assert curve_from_log(log) == [
        {"step": 500, "rouge1": 31.89, "rougeLsum": 28.67, "gap": 1.359},
        {"step": 1000, "rougeLsum": 31.55, "gap": 1.54},
    ]
