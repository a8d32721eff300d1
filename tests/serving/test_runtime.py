"""compression/runtime/: the fast forms against the reference path (artifact.load)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoTokenizer
from transformers.activations import GELUActivation

from compression.artifact import load
from compression.evaluate import rouge
from compression.modules import AttentionQuantizers, QuantLinear, quantized_eager_attention
from compression.quantizers import code_step, symmetric_scale
from compression.runtime import (
    FEW_ROWS,
    INT8_ATTENTION_MIN_QUERIES,
    INT8_KERNELS,
    INTEGER_CODE_ATTENTION,
    PAIR_LIMIT,
    ROW_REGIMES,
    InplaceGelu,
    Int8Linear,
    LinearKernel,
    fastest_kernel,
    integer_code_attention,
    kernel_is_exact,
    kernel_is_usable,
    kernels,
    model_bytes,
    optimize_for_inference,
    row_regime,
    split_pairs,
    symmetric_scale_and_step,
)
from tests.serving.conftest import pack_student
from tests.tiny import SAMPLE_DIR

SAMPLE_SIZE = 48


@pytest.mark.parametrize("bits,granularity,learned", [(8, "per_tensor", False), (4, "per_row", False),
                                                      (2, "per_tensor", False), (8, "per_row", True)])
@pytest.mark.parametrize("spread", [0.5, 4.0])  # inside the clip, and past it
@pytest.mark.parametrize("kernel", [
    *(pytest.param(k, marks=pytest.mark.skipif(not kernel_is_exact(k), reason="saturates on this CPU"))
      for k in ("onednn", "fbgemm", "int_mm")),
    "fp32"])
@pytest.mark.parametrize("rows", [1, FEW_ROWS - 1, FEW_ROWS + 16])  # the three row regimes
def test_int8_linear_equals_the_quant_linear_bit_for_bit(bits: int, granularity: str, learned: bool,
                                                         spread: float, kernel: LinearKernel,
                                                         rows: int) -> None:
    torch.manual_seed(123)
    reference = QuantLinear.from_linear(nn.Linear(64, 48), bits, 8, granularity, 2.5, learned).eval()
    x = torch.randn(1, rows, 64) * spread
    with torch.no_grad():
        expected = reference(x)  # also fixes a learned activation step on first use
        fast = Int8Linear(reference.weight_quantizer.quantize(reference.weight), reference.bias,
                          reference.activation_quantizer, kernel=kernel)
        assert torch.equal(fast(x), expected)


@pytest.mark.parametrize("regime", ROW_REGIMES)
def test_the_kernel_timed_fastest_here_is_an_exact_one(regime: int) -> None:
    assert kernel_is_exact(fastest_kernel(regime, 64, 48))


def test_timing_the_kernels_leaves_the_global_random_stream_alone() -> None:
    torch.manual_seed(9)
    expected = torch.rand(3)
    torch.manual_seed(9)
    fastest_kernel(1, 40, 24)  # a shape no other test times: the probe runs here
    assert torch.equal(torch.rand(3), expected)


def test_calls_pick_a_kernel_by_rows_one_a_few_or_many() -> None:
    assert [row_regime(n) for n in (1, 2, FEW_ROWS - 1, FEW_ROWS, 5000)] == [1, 2, 2, FEW_ROWS, FEW_ROWS]


def test_split_pairs_keeps_same_sign_pairs_within_the_limit_and_the_residual_restores_the_codes() -> None:
    torch.manual_seed(11)
    codes = torch.randint(-127, 128, (32, 67), dtype=torch.int8)  # an odd width: the last input has no pair
    main, residual = split_pairs(codes)
    assert residual is not None
    first, second = main[:, 0:66:2].int(), main[:, 1::2].int()
    assert not ((first * second > 0) & (first.abs() + second.abs() > PAIR_LIMIT)).any()
    restored = main.float().index_put_((residual.outputs, residual.inputs), residual.values, accumulate=True)
    assert torch.equal(restored, codes.float())


def test_split_pairs_leaves_codes_that_cannot_saturate_whole() -> None:
    codes = torch.tensor([[64, 64, -127, 127, 5]], dtype=torch.int8)
    main, residual = split_pairs(codes)
    assert residual is None and main is codes


@pytest.mark.parametrize("bits,clip", [(8, 2.5), (4, 2.5), (8, 1.7), (3, 0.3)])
def test_scale_and_step_in_python_are_the_tensor_ops_floats(bits: int, clip: float) -> None:
    torch.manual_seed(3)
    peaks = torch.cat([torch.rand(2000) * clip * 2, torch.rand(200) * 1e-3, torch.tensor([0.0, clip, 1e-35])])
    for peak in peaks:
        x = torch.stack([peak, -peak / 2])
        scale = symmetric_scale(x, bits, clip, per_row=False)
        assert symmetric_scale_and_step(float(peak), bits, clip) == (float(scale),
                                                                      float(code_step(scale, "symmetric")))


def test_int8_linear_runs_in_and_out_of_inference_mode() -> None:
    """Its reused input buffer, first made in inference mode, can still be written outside it."""
    torch.manual_seed(5)
    reference = QuantLinear.from_linear(nn.Linear(16, 8), 8, 8).eval()
    fast = Int8Linear(reference.weight_quantizer.quantize(reference.weight), reference.bias,
                      reference.activation_quantizer)
    small, large = torch.randn(2, 16), torch.randn(40, 16) * 4
    with torch.inference_mode():
        first = fast(large)
    with torch.no_grad():
        assert torch.equal(fast(small), reference(small)) and torch.equal(first, reference(large))


def test_the_in_place_gelu_changes_no_output(student_artifact: Path) -> None:
    fast, _ = optimize_for_inference(load(student_artifact)[0], device="cpu")
    swapped = [m for m in fast.modules() if isinstance(getattr(m, "activation_fn", None), InplaceGelu)]
    batch = {"input_ids": torch.tensor([[0, 10, 11, 12, 2], [0, 13, 2, 1, 1]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
             "decoder_input_ids": torch.tensor([[2, 10, 11], [2, 12, 13]])}
    with torch.inference_mode():
        in_place = fast(**batch).logits
        for module in swapped:
            module.activation_fn = GELUActivation()
        assert torch.equal(fast(**batch).logits, in_place)
    assert len(swapped) == 3  # 2 encoder and 1 decoder layers


class _Attention(nn.Module):
    """What the attention functions read from an attention module: its quantizers and mode."""

    def __init__(self, bits: int, learned: bool) -> None:
        super().__init__()
        self.attention_quantizers = AttentionQuantizers(bits, 2.5, learned)


def _attention_inputs(queries: int, keys: int = 40) -> tuple[torch.Tensor, ...]:
    """Q and K past the clip (so clamping matters), V inside it, and keys padded per batch row."""
    torch.manual_seed(7)
    batch, heads, dim = 3, 2, 16
    query = torch.randn(batch, heads, queries, dim) * 3
    key = torch.randn(batch, heads, keys, dim) * 3
    value = torch.randn(batch, heads, keys, dim) * 0.5
    lengths = torch.tensor([keys, keys - 9, 5])
    padded = torch.arange(keys)[None, :] >= lengths[:, None]
    lowest = torch.finfo(torch.float32).min
    mask = torch.zeros(batch, 1, queries, keys).masked_fill(padded[:, None, None, :], lowest)
    return query, key, value, mask


@pytest.mark.parametrize("queries", [1, INT8_ATTENTION_MIN_QUERIES + 8])  # a decoding step, an encoder
@pytest.mark.parametrize("bits,learned", [(8, False), (4, False), (2, False), (8, True), (4, True)])
def test_integer_code_attention_equals_the_reference_bit_for_bit(bits: int, learned: bool,
                                                                  queries: int) -> None:
    module = _Attention(bits, learned).eval()
    query, key, value, mask = _attention_inputs(queries)
    with torch.inference_mode():
        expected = quantized_eager_attention(module, query, key, value, mask)[0]  # sets learned steps
        got, probs = integer_code_attention(module, query, key, value, mask)
    assert probs is None and torch.equal(got, expected)


def test_integer_code_attention_quantizes_a_tensor_once_while_it_lives() -> None:
    module = _Attention(8, False).eval()
    query, key, value, _ = _attention_inputs(1)
    with torch.inference_mode():
        first = integer_code_attention(module, query, key, value, None)[0]
        again = integer_code_attention(module, query, key, value, None)[0]  # cross-attention's next step
        other_key, other_value = key.flip(2), value * 3
        other = integer_code_attention(module, query, other_key, other_value, None)[0]
        expected = quantized_eager_attention(module, query, other_key, other_value, None)[0]
    assert torch.equal(first, again)
    assert torch.equal(other, expected) and not torch.equal(other, first)


def test_integer_code_attention_in_training_is_the_reference() -> None:
    module = _Attention(8, False).train()
    query, key, value, mask = _attention_inputs(INT8_ATTENTION_MIN_QUERIES)
    torch.manual_seed(0)
    expected = quantized_eager_attention(module, query, key, value, mask)
    torch.manual_seed(0)
    got = integer_code_attention(module, query, key, value, mask)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def _validation_sample() -> tuple[list[str], list[str]]:
    with gzip.open(SAMPLE_DIR / "validation.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(SAMPLE_SIZE), f, strict=False)]
    return [r["document"] for r in rows], [r["summary"] for r in rows]


def _greedy(model: nn.Module, tokenizer: AutoTokenizer, documents: list[str]) -> list[str]:
    texts: list[str] = []
    for start in range(0, len(documents), 16):
        batch = tokenizer(documents[start:start + 16], return_tensors="pt", padding=True, truncation=True,
                          max_length=64)
        with torch.inference_mode():
            out = model.generate(**batch, num_beams=1, min_new_tokens=8, max_new_tokens=16)
        texts += tokenizer.batch_decode(out, skip_special_tokens=True)
    return texts


@pytest.mark.parametrize("bits,granularity", [(8, "per_tensor"), (4, "per_row"), (2, "per_tensor")])
def test_fast_path_agrees_with_the_reference_path(diverse_teacher: Path, tmp_path: Path, bits: int,
                                                  granularity: str) -> None:
    artifact = pack_student(diverse_teacher, tmp_path / "student", bits=bits, granularity=granularity)
    reference, tokenizer = load(artifact)
    fast, info = optimize_for_inference(load(artifact)[0], device="cpu")
    documents, summaries = _validation_sample()
    expected, got = _greedy(reference, tokenizer, documents), _greedy(fast, tokenizer, documents)
    assert info.form == "int8_dynamic" and info.int8_layers > 0
    attention = {m.config._attn_implementation for m in fast.modules() if hasattr(m, "attention_quantizers")}
    assert attention == {INTEGER_CODE_ATTENTION}
    assert len(set(expected)) > SAMPLE_SIZE // 8  # the sample tells inputs apart
    assert got == expected  # the issue asks for 95% identical texts; integer-exact products give all
    assert rouge(got, summaries)["rougeLsum"] == rouge(expected, summaries)["rougeLsum"]


def test_group_scaled_layers_stay_on_their_values_and_match_the_reference(diverse_teacher: Path,
                                                                          tmp_path: Path) -> None:
    artifact = pack_student(diverse_teacher, tmp_path / "student", bits=2, granularity="per_group",
                            group_size=16)
    reference, tokenizer = load(artifact)
    fast, info = optimize_for_inference(load(artifact)[0], device="cpu")
    assert info.int8_layers == 0  # an int8 product takes one scale per output, not per group
    batch = tokenizer(["a library for parsing command line options", "tools"], return_tensors="pt",
                      padding=True)
    decoder = torch.tensor([[2, 10, 11], [2, 12, 13]])
    with torch.inference_mode():
        got = fast(**batch, decoder_input_ids=decoder).logits
        want = reference(**batch, decoder_input_ids=decoder).logits
    assert torch.equal(got, want)


def test_fast_path_logits_equal_the_reference_logits(student_artifact: Path) -> None:
    reference, tokenizer = load(student_artifact)
    fast, _ = optimize_for_inference(load(student_artifact)[0], device="cpu")
    long = " ".join(["a library for parsing command line options"] * 4)  # int8 attention in the encoder
    batch = tokenizer([long, "tools"], return_tensors="pt", padding=True)
    assert batch["input_ids"].shape[1] >= INT8_ATTENTION_MIN_QUERIES
    decoder = torch.tensor([[2, 10, 11], [2, 12, 13]])
    with torch.inference_mode():
        assert torch.equal(fast(**batch, decoder_input_ids=decoder).logits,
                           reference(**batch, decoder_input_ids=decoder).logits)


def _served_bytes(artifact: Path, kernel: LinearKernel, monkeypatch: pytest.MonkeyPatch) -> int:
    """model_bytes of the fast form with every layer on `kernel` (not the kernels timed here)."""
    monkeypatch.setattr(kernels, "fastest_kernel", lambda regime, in_features, out_features: kernel)
    fast, _ = optimize_for_inference(load(artifact)[0], device="cpu")
    return model_bytes(fast)


def test_the_int8_form_on_int8_kernels_holds_less_memory_than_the_reference(
        student_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usable = [k for k in INT8_KERNELS if kernel_is_usable(k)]
    if not usable:
        pytest.skip("no int8 kernel is exact and fast on this CPU")
    assert _served_bytes(student_artifact, usable[0], monkeypatch) < model_bytes(load(student_artifact)[0])


def test_fp32_codes_count_four_bytes_a_weight_in_the_footprint(student_artifact: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    int8 = _served_bytes(student_artifact, "int_mm", monkeypatch)
    fp32 = _served_bytes(student_artifact, "fp32", monkeypatch)
    fast, _ = optimize_for_inference(load(student_artifact)[0], device="cpu")
    weights = sum(m.in_features * m.out_features for m in fast.modules() if isinstance(m, Int8Linear))
    assert fp32 - int8 == 3 * weights


def test_the_reference_form_changes_no_output(student_artifact: Path) -> None:
    reference, tokenizer = load(student_artifact)
    frozen, info = optimize_for_inference(load(student_artifact)[0], device="cpu", form="reference")
    batch = tokenizer(["a library for parsing", "tools"], return_tensors="pt", padding=True)
    decoder = torch.tensor([[2, 10, 11], [2, 12, 13]])
    with torch.no_grad():
        torch.testing.assert_close(frozen(**batch, decoder_input_ids=decoder).logits,
                                   reference(**batch, decoder_input_ids=decoder).logits, atol=0, rtol=0)
    assert info.form == "reference" and info.int8_layers == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_form_on_cuda_is_fp16(student_artifact: Path) -> None:
    model, info = optimize_for_inference(load(student_artifact)[0], device="auto")
    assert info.form == "fp16" and next(model.parameters()).dtype == torch.float16
