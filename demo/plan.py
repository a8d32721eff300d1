"""What the demo runs: the teacher's shape and training, the students, and their recipes.

Sizes are chosen so that the whole demo fits in about 15 minutes on 2 CPU cores (measured in
docs/demo.md); `QUICK_PLAN` is the shortened path the test runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from demo.teacher import DEMO_SHAPE, QUICK_SHAPE, TeacherShape


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

    def _dataset(self, dataset_ids: dict[str, str]) -> dict[str, Any]:
        return {"dataset": dataset_ids["train"], "validation": dataset_ids["validation"],
                "source_field": "document", "target_field": "summary",
                "max_validation_samples": self.max_validation_samples}

    def _lengths(self, training: dict[str, Any]) -> dict[str, Any]:
        return {**training, "max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length}

    def teacher_recipe(self, initial_model_id: str, dataset_ids: dict[str, str]) -> dict[str, Any]:
        return {"task": "summarization", "method": "finetune", "teacher": {"model": initial_model_id},
                "dataset": self._dataset(dataset_ids),
                "teacher_training": self._lengths(self.teacher_training), "evaluation": self.evaluation}

    def student_recipe(self, student: StudentPlan, teacher_id: str,
                       dataset_ids: dict[str, str]) -> dict[str, Any]:
        return {
            "task": "summarization",
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
