from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.schemas import (
    HF_DEFAULT_NEW_TOKENS,
    MAX_INPUTS,
    GenerationParameters,
    InferenceRequest,
    resolve_params,
)


def test_a_single_string_input_is_one_text() -> None:
    assert InferenceRequest(inputs="a text").texts == ["a text"]


def test_a_list_input_keeps_its_order() -> None:
    assert InferenceRequest(inputs=["b", "a"]).texts == ["b", "a"]


@pytest.mark.parametrize("inputs", [[], "  ", ["ok", ""], ["x"] * (MAX_INPUTS + 1)])
def test_bad_inputs_are_refused(inputs: object) -> None:
    with pytest.raises(ValidationError, match="inputs"):
        InferenceRequest(inputs=inputs)


@pytest.mark.parametrize("field,value", [("num_beams", 0), ("max_new_tokens", 0),
                                         ("no_repeat_ngram_size", -1), ("truncation", "sideways")])
def test_out_of_range_parameters_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        GenerationParameters(**{field: value})


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ValidationError, match="temperature"):
        InferenceRequest(inputs="x", parameters={"temperature": 0.5})


def test_a_minimum_above_the_maximum_is_refused() -> None:
    with pytest.raises(ValidationError, match="minimum length"):
        GenerationParameters(min_new_tokens=10, max_new_tokens=5)


@pytest.mark.parametrize("truncation,truncates", [(True, True), ("longest_first", True), (False, False),
                                                  ("do_not_truncate", False)])
def test_truncation_values_say_cut_or_refuse(truncation: object, truncates: bool) -> None:
    assert GenerationParameters(truncation=truncation).truncates is truncates


def test_request_settings_override_the_model_defaults() -> None:
    params = resolve_params(GenerationParameters(num_beams=2), {"num_beams": 4, "length_penalty": 2.0})
    assert (params.num_beams, params.length_penalty) == (2, 2.0)


def test_asking_new_tokens_drops_the_models_total_length_bounds() -> None:
    params = resolve_params(GenerationParameters(max_new_tokens=5), {"max_length": 62, "min_length": 11})
    kwargs = params.generate_kwargs()
    assert kwargs["max_new_tokens"] == 5 and "max_length" not in kwargs and "min_length" not in kwargs


def test_equal_settings_make_equal_batch_keys() -> None:
    defaults = {"num_beams": 4}
    first = resolve_params(GenerationParameters(max_new_tokens=8), defaults)
    assert first == resolve_params(GenerationParameters(max_new_tokens=8, truncation=False), defaults)
    assert hash(first) == hash(resolve_params(GenerationParameters(max_new_tokens=8), defaults))


def test_without_any_length_bound_the_hf_default_is_asked_explicitly() -> None:
    kwargs = resolve_params(GenerationParameters(), {}).generate_kwargs()
    assert kwargs["max_new_tokens"] == HF_DEFAULT_NEW_TOKENS and "max_length" not in kwargs
