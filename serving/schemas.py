"""Request and response bodies of the inference routes (the Hugging Face inference schema).

`{"inputs": str | [str], "parameters": {...}}` in; `[{"summary_text": ...}]` or
`[{"translation_text": ...}]` out, one object per input, in input order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_INPUTS = 64  # per request; each input is batched on its own
MAX_INPUT_CHARS = 100_000  # refuse absurd bodies before tokenizing them
MAX_NEW_TOKENS = 1024
MAX_BEAMS = 8

Truncation = bool | Literal["longest_first", "only_first", "do_not_truncate"]


class GenerationParameters(BaseModel):
    """Generation settings a request may set; None means the model's own default."""

    model_config = ConfigDict(extra="forbid")

    num_beams: int | None = Field(None, ge=1, le=MAX_BEAMS)
    max_length: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    min_length: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    min_new_tokens: int | None = Field(None, ge=0, le=MAX_NEW_TOKENS)
    length_penalty: float | None = Field(None, ge=-10.0, le=10.0)
    no_repeat_ngram_size: int | None = Field(None, ge=0, le=32)
    truncation: Truncation = True

    @model_validator(mode="after")
    def _lengths_agree(self) -> GenerationParameters:
        longest = self.max_new_tokens if self.max_new_tokens is not None else self.max_length
        shortest = self.min_new_tokens if self.min_new_tokens is not None else self.min_length
        if longest is not None and shortest is not None and shortest > longest:
            raise ValueError("the minimum length must not exceed the maximum length")
        return self

    @property
    def truncates(self) -> bool:
        """True: cut inputs longer than the model's limit; False: refuse them."""
        return self.truncation not in (False, "do_not_truncate")


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str]
    parameters: GenerationParameters = Field(default_factory=GenerationParameters)

    @field_validator("inputs")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        texts = [v] if isinstance(v, str) else v
        if not texts:
            raise ValueError("give at least one input")
        if len(texts) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request; got {len(texts)}")
        for text in texts:
            if not text.strip():
                raise ValueError("inputs must not be empty strings")
            if len(text) > MAX_INPUT_CHARS:
                raise ValueError(f"an input is longer than {MAX_INPUT_CHARS} characters")
        return v

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class SummaryText(BaseModel):
    summary_text: str


class TranslationText(BaseModel):
    translation_text: str


# HF generate's length bound when neither the request nor the model sets one (max_length 20,
# the decoder start token included).
HF_DEFAULT_NEW_TOKENS = 19


@dataclass(frozen=True)
class GenerateParams:
    """Fully resolved settings of one generate call; requests with equal ones share a batch."""

    num_beams: int
    max_new_tokens: int | None
    max_length: int | None
    min_new_tokens: int | None
    min_length: int | None
    length_penalty: float
    no_repeat_ngram_size: int

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": self.num_beams,
            "length_penalty": self.length_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "do_sample": False,
            "early_stopping": self.num_beams > 1,
        }
        for name in ("max_new_tokens", "max_length", "min_new_tokens", "min_length"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if self.max_new_tokens is None and self.max_length is None:
            # The same bound HF would apply, said explicitly: left implicit, generate warns on every call.
            kwargs["max_new_tokens"] = HF_DEFAULT_NEW_TOKENS
        return kwargs


def resolve_params(requested: GenerationParameters, defaults: dict[str, Any]) -> GenerateParams:
    """The request's settings over the model's defaults (its generation config)."""

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(requested, name)
        if value is not None:
            return value
        default = defaults.get(name)
        return fallback if default is None else default

    # A request that names one kind of length bound overrides the model's other kind too.
    asks_new = requested.max_new_tokens is not None or requested.min_new_tokens is not None
    asks_total = requested.max_length is not None or requested.min_length is not None
    return GenerateParams(
        num_beams=int(pick("num_beams", 1)),
        max_new_tokens=requested.max_new_tokens if asks_total else pick("max_new_tokens", None),
        max_length=requested.max_length if asks_new else pick("max_length", None),
        min_new_tokens=requested.min_new_tokens if asks_total else pick("min_new_tokens", None),
        min_length=requested.min_length if asks_new else pick("min_length", None),
        length_penalty=float(pick("length_penalty", 1.0)),
        no_repeat_ngram_size=int(pick("no_repeat_ngram_size", 0)),
    )


class LengthBeyondModel(ValueError):
    """A generation length the model's position table cannot reach; `param` names the setting."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def check_lengths(params: GenerateParams, positions: int) -> None:
    """Refuse lengths past the decoder's `positions` (max_position_embeddings): generating there
    indexes beyond the position table. The *_new_tokens settings count after the start token."""
    for name, room in (("max_length", positions), ("min_length", positions),
                       ("max_new_tokens", positions - 1), ("min_new_tokens", positions - 1)):
        value = getattr(params, name)
        if value is not None and value > room:
            raise LengthBeyondModel(f"parameters.{name}", f"{name} is {value}, but this model's position "
                                                          f"table allows at most {room}")
