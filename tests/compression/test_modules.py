"""Fake-quantized layers: weight sharing, swap in/out, and equality with the quantizer math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from compression.modules import ActivationQuantizer, QuantEmbedding, QuantLinear, WeightQuantizer
from compression.quantizers import fake_quantize, fake_quantize_activation

SEED = 123


def _linear() -> nn.Linear:
    torch.manual_seed(SEED)
    return nn.Linear(8, 4)


def test_from_linear_shares_the_weight_and_to_linear_gives_it_back() -> None:
    linear = _linear()
    quant = QuantLinear.from_linear(linear, 8, 8)
    back = quant.to_linear()
    assert quant.weight is linear.weight and quant.bias is linear.bias
    assert type(back) is nn.Linear and back.weight is linear.weight and back.bias is linear.bias


def test_full_precision_quant_linear_equals_the_linear() -> None:
    linear = _linear()
    x = torch.randn(3, 8)
    assert_close(QuantLinear.from_linear(linear, 32, 32)(x), linear(x), atol=0, rtol=0)


QUANT_LINEAR_CASES = [(8, "per_tensor", False), (4, "per_row", False), (2, "per_row", False),
                      (8, "per_row", True), (2, "per_tensor", True)]


def _fake_quantized_product(quant: QuantLinear, x: torch.Tensor) -> torch.Tensor:
    """The paper's formulation: a float product of fake-quantized values."""
    weights, acts = quant.weight_quantizer, quant.activation_quantizer
    return F.linear(fake_quantize_activation(x, acts.bits, acts.clip_val, acts.step),
                    fake_quantize(quant.weight, weights.bits, weights.granularity, weights.clip_val,
                                  weights.step), quant.bias)


@pytest.mark.parametrize(("bits", "granularity", "learned"), QUANT_LINEAR_CASES)
def test_quant_linear_is_the_fake_quantized_product_up_to_rounding(bits: int, granularity: str,
                                                                   learned: bool) -> None:
    quant = QuantLinear.from_linear(_linear(), bits, 8, granularity, learned_scale=learned)
    x = torch.randn(3, 8)
    got = quant(x)  # a learned activation step starts here
    assert_close(got, _fake_quantized_product(quant, x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("bits", "granularity", "learned"), QUANT_LINEAR_CASES)
def test_quant_linear_multiplies_codes_and_scales_once(bits: int, granularity: str, learned: bool) -> None:
    quant = QuantLinear.from_linear(_linear(), bits, 8, granularity, learned_scale=learned)
    x = torch.randn(3, 8)
    got = quant(x)
    x_codes, x_step = quant.activation_quantizer.codes(x)
    w_codes, w_step = quant.weight_quantizer.codes(quant.weight)
    assert torch.equal(x_codes, x_codes.round()) and x_codes.abs().max() <= 127
    assert torch.equal(got, (x_codes @ w_codes.t()) * (x_step * w_step.reshape(-1)) + quant.bias)


@pytest.mark.parametrize(("bits", "granularity", "learned"), QUANT_LINEAR_CASES)
def test_quant_linear_has_the_fake_quantized_gradients(bits: int, granularity: str, learned: bool) -> None:
    quant = QuantLinear.from_linear(_linear(), bits, 8, granularity, learned_scale=learned)
    x = (torch.randn(3, 8) * 2).requires_grad_()
    upstream = torch.randn(3, 4)
    quant(x)  # a learned activation step starts here
    params = [x, quant.weight, *(p for p in quant.parameters() if p is not quant.weight)]
    grads = torch.autograd.grad((quant(x) * upstream).sum(), params)
    expected = torch.autograd.grad((_fake_quantized_product(quant, x) * upstream).sum(), params)
    for got, want in zip(grads, expected, strict=True):
        assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_quant_linear_keeps_the_state_dict_keys_without_learned_scale() -> None:
    linear = _linear()
    assert list(QuantLinear.from_linear(linear, 4, 8).state_dict()) == list(linear.state_dict())


@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("bits", [2, 8])
def test_embedding_row_lookup_equals_quantizing_the_whole_matrix(bits: int, learned: bool) -> None:
    torch.manual_seed(SEED)
    embedding = nn.Embedding(20, 8, padding_idx=1)
    quant = QuantEmbedding.from_embedding(embedding, bits, learned_scale=learned)
    ids = torch.tensor([[3, 1, 7, 3], [19, 0, 1, 5]])
    step = quant.weight_quantizer.step
    full = F.embedding(ids, fake_quantize(embedding.weight, bits, "per_row", 2.5, step), 1)
    assert_close(quant(ids), full, atol=0, rtol=0)


def test_embedding_row_lookup_gives_the_whole_matrix_gradients() -> None:
    torch.manual_seed(SEED)
    embedding = nn.Embedding(20, 8, padding_idx=1)
    quant = QuantEmbedding.from_embedding(embedding, 4, learned_scale=True)
    ids, upstream = torch.tensor([[3, 1, 7, 3]]), torch.randn(1, 4, 8)
    (quant(ids) * upstream).sum().backward()
    lookup_grads = embedding.weight.grad.clone(), quant.weight_quantizer.step.grad.clone()
    embedding.weight.grad, quant.weight_quantizer.step.grad = None, None
    full = fake_quantize(embedding.weight, 4, "per_row", 2.5, quant.weight_quantizer.step)
    (F.embedding(ids, full, 1) * upstream).sum().backward()
    assert_close(lookup_grads[0], embedding.weight.grad)
    assert_close(lookup_grads[1], quant.weight_quantizer.step.grad)


def test_embedding_keeps_the_scale_of_a_scaled_embedding() -> None:
    embedding = nn.Embedding(10, 4)
    embedding.embed_scale = 2.0
    ids = torch.tensor([1, 2])
    assert_close(QuantEmbedding.from_embedding(embedding, 32)(ids), embedding.weight[ids] * 2.0)


def test_to_embedding_returns_the_source_module_with_the_shared_weight() -> None:
    embedding = nn.Embedding(10, 4)
    quant = QuantEmbedding.from_embedding(embedding, 8)
    assert quant.to_embedding() is embedding
    assert embedding.weight is quant.weight


def test_learned_activation_step_starts_from_the_first_batch() -> None:
    quantizer = ActivationQuantizer(8, 2.5, learned_scale=True)
    x = torch.tensor([0.5, -1.27, 3.0])
    quantizer(x)
    assert bool(quantizer.initialized)
    assert_close(quantizer.step.detach(), torch.tensor(2.5 / 127))


def test_learned_weight_step_receives_a_gradient() -> None:
    linear = _linear()
    quant = QuantLinear.from_linear(linear, 4, 8, "per_row", learned_scale=True)
    quant(torch.randn(3, 8)).pow(2).sum().backward()
    assert quant.weight_quantizer.step.grad is not None and quant.weight_quantizer.step.grad.shape == (4, 1)
    assert quant.activation_quantizer.step.grad is not None


def test_row_lookup_refuses_a_per_tensor_quantizer() -> None:
    quantizer = WeightQuantizer(torch.randn(4, 4), 8, "per_tensor", 2.5, False)
    with pytest.raises(ValueError, match="per_row"):
        quantizer.quantize_rows(torch.randn(2, 4), torch.tensor([0, 1]), None)


@pytest.mark.parametrize(("bits", "granularity"), [(2, "per_row"), (4, "per_tensor"), (8, "per_row")])
def test_frozen_quantizer_returns_the_stored_codes_and_values(bits: int, granularity: str) -> None:
    torch.manual_seed(SEED)
    weight = torch.randn(6, 8)
    weight[2] = 0.0  # an all-zero row: a zero ternary scale must not give NaN
    stored = WeightQuantizer(weight, bits, granularity, 2.5, False).quantize(weight)
    frozen = WeightQuantizer(weight, bits, granularity, 2.5, False)
    frozen.freeze(stored.scale, stored.scheme)
    again = frozen.quantize(stored.values())
    assert torch.equal(again.codes, stored.codes)
    assert_close(frozen(stored.values()), stored.values(), atol=0, rtol=0)


def test_each_group_of_columns_gets_its_own_scale() -> None:
    weight = torch.tensor([[0.1, -0.2, 1.0, 2.0], [0.4, 0.05, -0.5, 0.25]])
    quantizer = WeightQuantizer(weight, 8, "per_group", clip_val=2.5, learned_scale=False, group_size=2)
    quantized = quantizer.quantize(weight)
    assert quantized.granularity == "per_group" and quantized.scale.shape == (2, 2)
    groups = quantized.codes.reshape(2, 2, 2).abs().amax(dim=-1)
    assert groups.tolist() == [[127, 127], [127, 127]]  # every group's largest weight is a full code
    assert torch.equal(quantizer(weight), quantized.values())


def test_a_width_that_is_not_a_whole_number_of_groups_falls_back_to_one_scale_per_row() -> None:
    weight = torch.randn(3, 10)
    quantizer = WeightQuantizer(weight, 4, "per_group", clip_val=2.5, learned_scale=False, group_size=4)
    assert quantizer.granularity == "per_row" and quantizer.quantize(weight).scale.shape == (3, 1)


def test_a_per_group_linear_multiplies_fake_quantized_values() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(8, 3)
    layer = QuantLinear.from_linear(linear, 4, 8, "per_group", group_size=4)
    x = torch.randn(5, 8)
    weight = layer.weight_quantizer(linear.weight)
    expected = F.linear(fake_quantize_activation(x, 8, 2.5), weight, linear.bias)
    assert torch.equal(layer(x), expected)


def test_two_bit_weights_on_the_symmetric_grid_take_the_peak_as_their_one_level() -> None:
    weight = torch.tensor([[0.1, -0.6, 1.0, -0.4]])
    symmetric = WeightQuantizer(weight, 2, "per_row", 2.5, False, ternary=False).quantize(weight)
    ternary = WeightQuantizer(weight, 2, "per_row", 2.5, False).quantize(weight)
    assert symmetric.scheme == "symmetric" and ternary.scheme == "ternary"
    assert symmetric.values().tolist() == [[0.0, -1.0, 1.0, 0.0]]  # round(w / max|w|) * max|w|
    assert ternary.values().abs().max() < 1.0  # TWN: the mean of the kept magnitudes
