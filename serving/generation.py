"""Tokenize requests, and run one batch of them through `generate`.

Tokenizing happens on the request path (so that a too-long input is refused before it queues);
the batch pads the token ids itself and only decodes with the tokenizer, so the inference thread
never changes the tokenizer's settings while a request is being tokenized.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch

from compression.ct2 import translate
from compression.evaluate import generate_ids
from serving.engines import Ct2Runtime
from serving.loading import LoadedModel
from serving.schemas import HF_DEFAULT_NEW_TOKENS, GenerateParams


class InputTooLong(Exception):
    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"input {index} has {tokens} tokens, more than this model's limit of {limit}; "
                         "send parameters.truncation=true to cut it")
        self.index = index


@dataclass(frozen=True)
class GenerationItem:
    loaded: LoadedModel
    params: GenerateParams
    input_ids: tuple[int, ...]


@dataclass(frozen=True)
class Generated:
    text: str
    tokens: int


def batch_key(loaded: LoadedModel, params: GenerateParams) -> Hashable:
    """Inputs share a generate call only with the same model and the same settings."""
    return (loaded.record.id, id(loaded), params)


def encode(loaded: LoadedModel, texts: list[str], truncate: bool) -> list[tuple[int, ...]]:
    """Token ids of each text, cut to the model's limit (keeping the end-of-sequence) or refused."""
    limit = loaded.max_source_length
    encoded = loaded.tokenizer(texts, truncation=False, padding=False)["input_ids"]
    result = []
    for index, ids in enumerate(encoded):
        if len(ids) > limit:
            if not truncate:
                raise InputTooLong(index, len(ids), limit)
            ids = [*ids[: limit - 1], ids[-1]]
        result.append(tuple(ids))
    return result


def _pad(sequences: list[tuple[int, ...]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def run_batch(key: Hashable, items: list[GenerationItem]) -> list[Generated]:
    """One generate call for items that share a model and settings (see `batch_key`)."""
    loaded, params = items[0].loaded, items[0].params
    if loaded.ct2 is not None:
        return _run_ctranslate2(loaded, loaded.ct2, params, items)
    tokenizer, model = loaded.tokenizer, loaded.torch_model
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    input_ids, attention_mask = _pad([item.input_ids for item in items], pad_id)
    device = loaded.runtime.device
    with torch.inference_mode():
        output = generate_ids(model, input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                              **params.generate_kwargs(), **loaded.extra_generate_kwargs)
    output = output.cpu()
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    # Generated tokens: everything after the decoder start that is not padding.
    counts = (output[:, 1:] != pad_id).sum(dim=1).tolist()
    return [Generated(text=text.strip(), tokens=int(n)) for text, n in zip(texts, counts, strict=True)]


def _run_ctranslate2(loaded: LoadedModel, ct2: Ct2Runtime, params: GenerateParams,
                     items: list[GenerationItem]) -> list[Generated]:
    """The batch on the CTranslate2 translator, with HF generate's meaning of the lengths (a
    `max_length` or `min_length` counts the decoder start token)."""
    if params.max_new_tokens is not None:
        most = params.max_new_tokens
    else:
        most = params.max_length - 1 if params.max_length is not None else HF_DEFAULT_NEW_TOKENS
    least = params.min_new_tokens
    if least is None:
        least = max(0, (params.min_length or 0) - 1)
    decoded = translate(
        ct2.translator, loaded.tokenizer, [item.input_ids for item in items], max_new_tokens=most,
        min_new_tokens=least, num_beams=params.num_beams, length_penalty=params.length_penalty,
        no_repeat_ngram_size=params.no_repeat_ngram_size, target_prefix=loaded.target_prefix,
        forced_eos=ct2.info["decoding"]["forced_eos"])
    return [Generated(text=d.text, tokens=d.tokens) for d in decoded]
