"""The recipe: one validated document per compression job (DESIGN.md §3).

Every default lives here, once. A recipe round-trips through JSON (`to_dict` / `from_dict`)
and loads from YAML or JSON files; relative paths resolve against the file's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from compression.errors import RecipeError

RECIPE_VERSION = 1
ALLOWED_BITS = (2, 4, 8, 32)  # 32 = leave in full precision
# The scores each task reports (compression.evaluate, all on a 0-100 scale); the first one picks the
# best checkpoint and is a quality gate's default.
Metric = Literal["rougeLsum", "rouge1", "rouge2", "rougeL", "bleu", "chrf"]
TASK_METRICS: dict[str, tuple[Metric, ...]] = {
    "summarization": ("rougeLsum", "rouge1", "rouge2", "rougeL"),
    "translation": ("bleu", "chrf"),
}


# Every number in a recipe is bounded, generically (`StrictModel._bounded`), so that no value, new
# fields included, can pass validation and then break the run: an infinite learning rate trained
# NaN weights, a max_steps of 2**70 overflowed the database. Ints fit the database's INTEGER
# (steps and counts are stored in it); floats are finite and of a sane magnitude. A few fields
# have tighter bounds, by name.
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e6
_FIELD_LIMITS: dict[str, tuple[float, float]] = {
    "seed": (0, INT_LIMIT),  # numpy's seed is unsigned
    "lr": (0, 1),  # AdamW; far above any learning rate that trains
    "epochs": (1, 100_000),  # epochs x batches per epoch must still fit INT_LIMIT steps
}


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    limit = INT_LIMIT if isinstance(value, int) else FLOAT_LIMIT
    low, high = _FIELD_LIMITS.get(name, (-limit, limit))
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}, got {value}")


class StrictModel(BaseModel):
    # allow_inf_nan=False: inf and NaN are refused as "not a finite number" (JSON bodies can
    # carry them: Python's parser reads Infinity and NaN), before any bound is compared.
    model_config = ConfigDict(extra="forbid", strict=False, frozen=False, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _bounded(cls, v: Any, info: ValidationInfo) -> Any:
        for item in v if isinstance(v, list) else [v]:
            _check_number(info.field_name or "", item)
        return v


class TeacherSpec(StrictModel):
    """Exactly one of: a local HF directory, a hub id, or (through the service) a model id."""

    path: str | None = None
    hf: str | None = None
    revision: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        given = [k for k in ("path", "hf", "model") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("teacher needs exactly one of 'path', 'hf' or 'model'")
        if self.revision and not self.hf:
            raise ValueError("teacher.revision only applies to teacher.hf")
        return self


class DatasetSpec(StrictModel):
    """Local JSONL/CSV files, or (through the service) an uploaded dataset id."""

    train: str | None = None
    validation: str | None = None
    dataset: str | None = None
    source_field: str = "document"
    target_field: str = "summary"
    validation_fraction: float = 0.05  # held out of train when no validation split is given
    max_validation_samples: int | None = Field(None, ge=1)  # caps evaluation cost; None = the whole split

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if bool(self.train) == bool(self.dataset):
            raise ValueError("dataset needs exactly one of 'train' (a file) or 'dataset' (an uploaded id)")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("dataset.validation_fraction must be in (0, 1)")
        if self.source_field == self.target_field:
            raise ValueError("dataset.source_field and dataset.target_field must differ")
        return self


LayerPlan = int | list[int] | None


class StudentSpec(StrictModel):
    """Layers per stack: a count (default maximally-spaced map) or explicit teacher indices.

    None keeps the teacher's depth.
    """

    encoder_layers: LayerPlan = None
    decoder_layers: LayerPlan = None

    @field_validator("encoder_layers", "decoder_layers")
    @classmethod
    def _plan_shape(cls, v: LayerPlan) -> LayerPlan:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1 layer")
        if isinstance(v, list):
            if not v:
                raise ValueError("an explicit layer list must not be empty")
            if len(set(v)) != len(v):
                raise ValueError(f"duplicate teacher layer indices in {v}")
            if any(i < 0 for i in v):
                raise ValueError(f"negative teacher layer index in {v}")
        return v

    def check_against(self, teacher_encoder_layers: int, teacher_decoder_layers: int) -> None:
        """Raise RecipeError naming the field if the plan does not fit the teacher."""
        for name, plan, depth in (
            ("encoder_layers", self.encoder_layers, teacher_encoder_layers),
            ("decoder_layers", self.decoder_layers, teacher_decoder_layers),
        ):
            if isinstance(plan, int) and plan > depth:
                stack = name.split("_")[0]
                raise RecipeError(
                    f"student.{name}", f"{plan} layers asked for a teacher with {depth} {stack} layers"
                )
            if isinstance(plan, list) and max(plan) >= depth:
                raise RecipeError(
                    f"student.{name}", f"index {max(plan)} is out of range for a teacher with {depth} layers"
                )


class QuantizationSpec(StrictModel):
    weight_bits: int = 8
    embedding_bits: int = 8
    activation_bits: int = 8
    granularity: Literal["per_tensor", "per_row", "per_group"] = "per_tensor"  # weights; embedding: per row
    group_size: int = Field(64, ge=2)  # columns per scale under per_group (a narrower matrix: per row)
    # 2-bit weights and embeddings: TWN ternary (the paper's), or the symmetric grid {-1, 0, 1} * max|w|
    two_bit_scheme: Literal["ternary", "symmetric"] = "ternary"
    clip_val: float = 2.5
    learned_scale: bool = False  # LSQ-style learned step size instead of the fixed clip

    @field_validator("weight_bits", "embedding_bits", "activation_bits", mode="before")
    @classmethod
    def _bits(cls, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"bits must be an integer, one of {ALLOWED_BITS}; got {v!r}")
        if v not in ALLOWED_BITS:
            raise ValueError(f"bits must be one of {ALLOWED_BITS} (32 = no quantization); got {v}")
        return v

    @field_validator("clip_val")
    @classmethod
    def _clip(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("clip_val must be positive")
        return v


class DistillationSpec(StrictModel):
    """The loss: task CE plus weighted distillation terms. A term of weight 0 is not computed,
    and with every distillation weight 0 the teacher is not run at all."""

    task: float = 1.0
    logits: float = 1.0
    hidden: float = 1.0  # hidden states (and attention probabilities while `attention` is None)
    attention: float | None = None  # None: the `hidden` weight, as the paper's one weight for both
    logits_loss: Literal["mse", "kl"] = "mse"  # mse: the paper's; kl: KL(teacher || student) at `temperature`
    temperature: float = Field(1.0, gt=0)
    # Each hidden/attention/logits MSE divided by the teacher tensor's mean square, and layer terms
    # averaged instead of summed, so that no term dominates the total by its scale alone. The
    # default since quality-v4 section 3a; False is the paper's sum of raw MSEs.
    normalize: bool = True
    mask_padding: bool = True  # False reproduces the paper's unmasked MSE
    # Train on the teacher's own beam outputs (sequence-level KD): "replace" the references with
    # them, or "mix" both (every record twice); computed once per teacher and data set.
    sequence_level: Literal["off", "replace", "mix"] = "off"

    @field_validator("task", "logits", "hidden", "attention")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("loss weights must be >= 0")
        return v

    @property
    def attention_weight(self) -> float:
        return self.hidden if self.attention is None else self.attention

    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher's forward pass."""
        return self.logits > 0 or self.hidden > 0 or self.attention_weight > 0


class TrainingSpec(StrictModel):
    # Bounds live on the fields, so an error names the exact field (e.g. training.lr).
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; overrides epochs when set
    lr: float = Field(3.0e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 28
    max_source_length: int = Field(512, ge=1)
    max_target_length: int = Field(64, ge=1)
    eval_every: int | None = Field(None, ge=1)  # steps; None = once per epoch
    # Stop after this many evaluations in a row without a better validation metric; None = never.
    patience: int | None = Field(None, ge=1)
    length_bucketing: bool = True  # batches of similar source lengths (less padding, same records)
    # The forward passes' precision. auto: bf16 autocast on CUDA, fp32 on CPUs. bf16: autocast on
    # any device; on CPUs with native bf16 (AVX512-BF16, AMX) a student step costs about half the
    # fp32 CPU time (bench/train_step.py --bf16), on AVX2-only CPUs about 4x. fp32: never autocast.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_every: int | None = Field(200, ge=1)  # steps; None = once per epoch
    log_every: int = Field(10, ge=1)


class EvaluationSpec(StrictModel):
    num_beams: int = Field(4, ge=1)
    max_length: int = Field(62, ge=1)
    min_length: int = Field(0, ge=0)
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    # The first N validation records pick the best state during training (cheaper evaluations);
    # the final scores always use the whole split. None: the whole split for both.
    selection_samples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _lengths(self) -> EvaluationSpec:
        if self.min_length > self.max_length:
            raise ValueError("evaluation.min_length must not exceed evaluation.max_length")
        return self


def error_at(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """An error at `loc`: raised inside the recipe's validation, pydantic keeps the location, so
    that a check across fields still names the exact field (and the API's 400 its param)."""
    return ValidationError.from_exception_data("Recipe", [{
        "type": PydanticCustomError("value_error", message), "loc": loc, "input": value}])


class GateSpec(StrictModel):
    """A quality gate: the student may score at most `max_drop` below the teacher on `metric`, both
    scored on the same validation split with the same generation settings."""

    metric: Metric | None = None  # None: the task's own (rougeLsum, bleu); the recipe fills it in
    # relative: a fraction of the teacher's score (0.02 keeps 98% of it); absolute: metric points
    max_drop: float = Field(ge=0)
    drop: Literal["relative", "absolute"] = "relative"
    # flag: the model is published and marked; reject: no model, the job ends `rejected`
    on_fail: Literal["flag", "reject"] = "flag"

    @model_validator(mode="after")
    def _fraction(self) -> GateSpec:
        if self.drop == "relative" and self.max_drop > 1:
            raise error_at(("max_drop",), "a relative max_drop is a fraction of the teacher's score, "
                                          "at most 1", self.max_drop)
        return self


def fill_gate_metric(gate: GateSpec, task: str) -> None:
    """A gate without a metric takes the task's own; one the task does not report is an error at
    gate.metric."""
    metrics = TASK_METRICS[task]
    if gate.metric is None:
        gate.metric = metrics[0]
    elif gate.metric not in metrics:
        raise error_at(("gate", "metric"), f"{task} reports {', '.join(metrics)}, not {gate.metric}",
                       gate.metric)


class Recipe(StrictModel):
    version: int = RECIPE_VERSION
    task: Literal["summarization", "translation"] = "summarization"
    src_lang: str | None = None  # mBART language codes, translation only
    tgt_lang: str | None = None
    # dq = the method; the others are baselines at the same size (ptq: no training;
    # qat_only: distillation weights 0; distill_only: 32-bit student);
    # finetune: no student, train the teacher alone (pipeline.finetune; the service routes it there)
    method: Literal["dq", "ptq", "qat_only", "distill_only", "finetune"] = "dq"
    # Fine-tune (or train from scratch) the teacher on the task first; null = use it as given.
    teacher_training: TrainingSpec | None = None
    teacher: TeacherSpec
    dataset: DatasetSpec
    student: StudentSpec = StudentSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    distillation: DistillationSpec = DistillationSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    gate: GateSpec | None = None  # none: the job succeeds whatever the student scores

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != RECIPE_VERSION:
            raise ValueError(f"unsupported recipe version {v}; this build reads version {RECIPE_VERSION}")
        return v

    @model_validator(mode="after")
    def _gate_metric(self) -> Recipe:
        if self.gate is None:
            return self
        if self.method == "finetune":
            raise error_at(("gate",), "a gate compares a student with its teacher; method 'finetune' "
                                      "makes no student", self.gate.model_dump())
        fill_gate_metric(self.gate, self.task)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError.from_validation(exc) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def resolve_paths(self, base: Path) -> Recipe:
        """A copy whose relative file paths are made absolute against `base`."""
        data = self.to_dict()
        if data["teacher"].get("path"):
            data["teacher"]["path"] = str((base / data["teacher"]["path"]).resolve())
        for split in ("train", "validation"):
            if data["dataset"].get(split):
                data["dataset"][split] = str((base / data["dataset"][split]).resolve())
        return Recipe.from_dict(data)


def parse_recipe_text(text: str) -> Recipe:
    """Parse YAML or JSON text (JSON is YAML) into a validated recipe."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError("recipe", f"not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError("recipe", "must be a mapping of fields (YAML or JSON object)")
    return Recipe.from_dict(data)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError("recipe", f"cannot read {path}: {exc}") from None
    return parse_recipe_text(text).resolve_paths(path.parent)
