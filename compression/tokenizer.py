"""Train tokenizers offline (no hub needed): a BART-compatible byte-level BPE, and an
mBART-50-compatible joint sentencepiece model with mBART's language codes."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sentencepiece
from tokenizers import ByteLevelBPETokenizer, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# BART's special tokens at BART's ids 0-4.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# The file name facebook/mbart-large-50 gives its sentencepiece model.
MBART_SPM_FILE = "sentencepiece.bpe.model"


def train_bart_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS
    )
    # Building from vocab/merges files gives an almost empty tokenizer in transformers 5
    # (platform-notes §7); wrapping the trained object keeps the whole vocabulary.
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
    )


def train_sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """A sentencepiece unigram model (the bytes of a .model file) with sentencepiece's special ids."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="unigram", vocab_size=vocab_size,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,  # sentencepiece's own order
        hard_vocab_limit=False,  # a small corpus (smoke runs) ends with fewer pieces instead of failing
        num_threads=1, minloglevel=2,
    )
    return model.getvalue()


def train_mbart_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, src_lang: str = "en_XX", tgt_lang: str = "de_DE"
) -> PreTrainedTokenizerBase:
    """A joint subword vocabulary over `texts` (all languages together) in mBART-50's layout.

    The result is transformers' own MBart50Tokenizer, loaded from the trained sentencepiece
    model exactly as facebook/mbart-large-50's files load: ids <s>=0 <pad>=1 </s>=2 <unk>=3,
    the pieces, the 52 language codes (en_XX, de_DE, ...), then <mask>; sources encode as
    [src_lang] X </s>, targets as [tgt_lang] Y </s>. `len(tokenizer)` is vocab_size + 54.

    The model is a unigram one although the hub's file name says bpe: transformers 5 runs every
    sentencepiece model of mBART as a unigram (Viterbi over piece scores), which reproduces a
    unigram model exactly but splits a BPE model's text into ~65% more pieces (measured on the
    en-de validation sample), so only a unigram model tokenizes as it was trained.
    """
    # bos_token as facebook/mbart-large-50's special_tokens_map names it: the class leaves it unset,
    # and CTranslate2's converter needs it.
    config = {"tokenizer_class": "MBart50Tokenizer", "src_lang": src_lang, "tgt_lang": tgt_lang,
              "bos_token": "<s>"}
    with tempfile.TemporaryDirectory(prefix="mbart-tokenizer-") as tmp:
        (Path(tmp) / MBART_SPM_FILE).write_bytes(train_sentencepiece(texts, vocab_size))
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> None:
    tokenizer.save_pretrained(str(out_dir))


# transformers types its lookups of one token and of many as one function returning either; these
# say which one the caller asked for.
def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(found, int), f"{token!r} looked up as {found!r}"
    return found


def token_ids(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> list[int]:
    found = tokenizer.convert_tokens_to_ids(tokens)
    assert isinstance(found, list), f"{tokens!r} looked up as {found!r}"
    return found


def id_token(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    found = tokenizer.convert_ids_to_tokens(token_id)
    assert isinstance(found, str), f"{token_id} looked up as {found!r}"
    return found


def decoded_text(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """One sequence's text without special tokens."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert isinstance(text, str), f"decoded as {text!r}"
    return text
