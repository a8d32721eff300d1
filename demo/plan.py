"""What the demo runs: the task, the teacher's shape and training, the students, and their recipes.

Sizes are chosen so that the whole demo fits in about 15 minutes on 2 CPU cores (measured in
docs/demo.md); the quick plans are the shortened paths the tests run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from demo.table import Metrics
from demo.teacher import DEMO_SHAPE, QUICK_SHAPE, TeacherShape, build_teacher, build_translation_teacher


@dataclass(frozen=True)
class DemoTask:
    """What differs between the summarization and the translation demo."""

    name: str  # the recipe's task
    files: tuple[str, str]  # the bundled sample's train and validation files
    fields: tuple[str, str]  # source and target fields of the records
    metrics: Metrics  # the scores the table shows
    build: Callable[[Path, TeacherShape], Path]  # the untrained teacher: tokenizer and random weights
    data: str  # the prefix of its uploads' names
    benchmark_data: str  # the folder of `python -m bench.teacher --task NAME` (demo.cache)
    languages: tuple[str, str] | None = None  # mBART's src_lang and tgt_lang


SUMMARIZATION = DemoTask(
    "summarization", ("train.jsonl.gz", "validation.jsonl.gz"), ("document", "summary"),
    (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeLsum", "ROUGE-Lsum")), build_teacher,
    "debian-desc", "debian",
)
TRANSLATION = DemoTask(
    "translation", ("en-de-train.jsonl.gz", "en-de-validation.jsonl.gz"), ("source", "target"),
    (("bleu", "BLEU"), ("chrf", "chrF")), build_translation_teacher,
    "debian-desc-en-de", "en-de", ("en_XX", "de_DE"),
)


@dataclass(frozen=True)
class StudentPlan:
    name: str
    weight_bits: int
    embedding_bits: int
    activation_bits: int
    encoder_layers: int
    decoder_layers: int


@dataclass(frozen=True)
class DemoPlan:
    teacher_shape: TeacherShape
    teacher_training: dict[str, Any]
    student_training: dict[str, Any]
    evaluation: dict[str, Any]
    students: tuple[StudentPlan, ...]
    task: DemoTask = SUMMARIZATION
    max_source_length: int = 128
    max_target_length: int = 32
    max_validation_samples: int = 100
    train_rows: int | None = None  # None = the whole bundled train split
    shown_documents: int = 3
    # Use the stronger teacher of `python -m bench.teacher` once it has been built.
    use_benchmark_teacher: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def teacher_spec(self) -> dict[str, Any]:
        """Everything that decides the trained teacher (the cache key)."""
        return {"shape": asdict(self.teacher_shape), "training": self.teacher_training,
                "max_source_length": self.max_source_length, "max_target_length": self.max_target_length,
                "train_rows": self.train_rows}

    def _task_fields(self) -> dict[str, Any]:
        if self.task.languages is None:
            return {"task": self.task.name}
        source, target = self.task.languages
        return {"task": self.task.name, "src_lang": source, "tgt_lang": target}

    def _dataset(self, dataset_ids: dict[str, str]) -> dict[str, Any]:
        source, target = self.task.fields
        return {"dataset": dataset_ids["train"], "validation": dataset_ids["validation"],
                "source_field": source, "target_field": target,
                "max_validation_samples": self.max_validation_samples}

    def _lengths(self, training: dict[str, Any]) -> dict[str, Any]:
        return {**training, "max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length}

    def teacher_recipe(self, initial_model_id: str, dataset_ids: dict[str, str]) -> dict[str, Any]:
        return {**self._task_fields(), "method": "finetune", "teacher": {"model": initial_model_id},
                "dataset": self._dataset(dataset_ids),
                "teacher_training": self._lengths(self.teacher_training), "evaluation": self.evaluation}

    def student_recipe(self, student: StudentPlan, teacher_id: str,
                       dataset_ids: dict[str, str]) -> dict[str, Any]:
        return {
            **self._task_fields(),
            "method": "dq",
            "teacher": {"model": teacher_id},
            "dataset": self._dataset(dataset_ids),
            "student": {"encoder_layers": student.encoder_layers, "decoder_layers": student.decoder_layers},
            "quantization": {"weight_bits": student.weight_bits, "embedding_bits": student.embedding_bits,
                             "activation_bits": student.activation_bits, "granularity": "per_row"},
            "distillation": {"task": 1.0, "logits": 1.0, "hidden": 1.0, "mask_padding": True},
            "training": self._lengths(self.student_training),
            "evaluation": self.evaluation,
        }


STUDENTS = (StudentPlan("dq 8-8-8 6-3", 8, 8, 8, 6, 3), StudentPlan("dq 2-2-8 6-3", 2, 2, 8, 6, 3))

DEMO_PLAN = DemoPlan(
    teacher_shape=DEMO_SHAPE,
    # Evaluations cost a beam search over the validation sample each: few of them.
    # lr 5e-4 with the shape's init_std 0.05: at higher rates a from-scratch encoder collapses
    # (docs/results/quality-v2, -v3). At this rate the teacher starts to read its input after a
    # few hundred steps; 1 200 keep the first run near 10 minutes.
    teacher_training={"max_steps": 1200, "lr": 5.0e-4, "batch_size": 32, "warmup_ratio": 0.05,
                      "weight_decay": 0.01, "eval_every": 600, "checkpoint_every": 300, "log_every": 10},
    student_training={"max_steps": 150, "lr": 5.0e-4, "batch_size": 32, "warmup_ratio": 0.05,
                      "eval_every": 150, "checkpoint_every": 75, "log_every": 10},
    evaluation={"num_beams": 2, "max_length": 32, "batch_size": 50},
    students=STUDENTS,
    use_benchmark_teacher=True,
)

QUICK_PLAN = DemoPlan(
    teacher_shape=QUICK_SHAPE,
    teacher_training={"max_steps": 4, "lr": 1.0e-3, "batch_size": 8, "checkpoint_every": 4, "log_every": 1},
    student_training={"max_steps": 3, "lr": 1.0e-3, "batch_size": 8, "checkpoint_every": 3, "log_every": 1},
    evaluation={"num_beams": 1, "max_length": 8, "batch_size": 8},
    students=STUDENTS,
    max_source_length=64,
    max_target_length=16,
    max_validation_samples=8,
    train_rows=64,
    shown_documents=2,
)

# Translation: the same teacher and students on the en-de pairs. Sources are a sentence or a short
# paragraph: 64 tokens hold 94% of the validation pairs, sources and German targets alike; a
# from-scratch teacher on 2 000 pairs is weak: the demo shows the path, not quality.
TRANSLATION_PLAN = replace(DEMO_PLAN, task=TRANSLATION, max_source_length=64, max_target_length=64,
                           evaluation={**DEMO_PLAN.evaluation, "max_length": 64})
QUICK_TRANSLATION_PLAN = replace(QUICK_PLAN, task=TRANSLATION)

PLANS = {"summarization": (DEMO_PLAN, QUICK_PLAN), "translation": (TRANSLATION_PLAN, QUICK_TRANSLATION_PLAN)}


def plan_for(task: str, quick: bool) -> DemoPlan:
    full, short = PLANS[task]
    return short if quick else full
