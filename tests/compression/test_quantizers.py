"""Quantizer values and gradients against the paper's formulas written out."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from compression.quantizers import (
    dequantize,
    fake_quantize,
    fake_quantize_activation,
    lsq_initial_step,
    max_level,
    quantize_tensor,
    symmetric_scale,
    ternary_params,
)

SEED = 123
CLIP = 2.5


def _data(shape: tuple[int, ...] = (6, 16), spread: float = 1.5) -> torch.Tensor:
    torch.manual_seed(SEED)
    return torch.randn(shape) * spread


def _reference_symmetric(x: torch.Tensor, bits: int, per_row: bool) -> torch.Tensor:
    c = x.clamp(-CLIP, CLIP)
    m = c.abs().amax(dim=-1, keepdim=True) if per_row else c.abs().max()
    s = (2 ** (bits - 1) - 1) / m
    return torch.round(c * s) / s


def _reference_ternary(w: torch.Tensor, per_row: bool) -> torch.Tensor:
    rows = w.clamp(-CLIP, CLIP) if per_row else w.clamp(-CLIP, CLIP).reshape(1, -1)
    out = []
    for row in rows:
        delta = 0.7 * row.abs().mean()
        kept = row.abs() > delta
        alpha = row.abs()[kept].mean()
        out.append(alpha * torch.sign(row) * kept)
    return torch.stack(out).reshape(w.shape)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
def test_symmetric_values_follow_the_paper(bits: int, granularity: str) -> None:
    x = _data()
    got = fake_quantize(x, bits, granularity, CLIP)
    assert_close(got, _reference_symmetric(x, bits, granularity == "per_row"), atol=0, rtol=0)


@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
def test_ternary_values_follow_twn(granularity: str) -> None:
    w = _data()
    got = fake_quantize(w, 2, granularity, CLIP)
    assert_close(got, _reference_ternary(w, granularity == "per_row"), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("bits", [4, 8])
def test_symmetric_grid_has_the_paper_levels(bits: int) -> None:
    x = _data((200,))
    q = fake_quantize(x, bits, "per_tensor", CLIP)
    levels = torch.unique(torch.round(q * symmetric_scale(x, bits, CLIP, per_row=False)))
    assert levels.abs().max() == max_level(bits)
    assert len(levels) <= 2 * max_level(bits) + 1


def test_values_beyond_the_clip_saturate() -> None:
    x = torch.tensor([-9.0, -1.0, 0.3, 4.0])
    assert_close(fake_quantize(x, 8, "per_tensor", CLIP)[[0, 3]], torch.tensor([-CLIP, CLIP]))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
def test_gradient_passes_inside_the_clip_and_stops_outside(bits: int, granularity: str) -> None:
    x = (_data() * 2).requires_grad_()
    fake_quantize(x, bits, granularity, CLIP).sum().backward()
    assert_close(x.grad, (x.detach().abs() < CLIP).float(), atol=0, rtol=0)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
def test_all_zero_tensor_gives_zeros_not_nan(bits: int, granularity: str) -> None:
    x = torch.zeros(3, 5, requires_grad=True)
    q = fake_quantize(x, bits, granularity, CLIP)
    q.sum().backward()
    assert torch.equal(q, torch.zeros(3, 5))
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bits", [2, 8])
def test_a_zero_row_stays_zero_per_row(bits: int) -> None:
    x = _data((3, 8))
    x[1] = 0.0
    q = fake_quantize(x, bits, "per_row", CLIP)
    assert torch.isfinite(q).all()
    assert torch.equal(q[1], torch.zeros(8))


def test_bits_32_is_the_identity() -> None:
    x = _data()
    assert fake_quantize(x, 32, "per_tensor", CLIP) is x


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_row"])
@pytest.mark.parametrize("learned", [False, True])
def test_codes_times_scale_equal_the_fake_quantized_values(
    bits: int, granularity: str, learned: bool
) -> None:
    x = _data()
    step = lsq_initial_step(x, bits, CLIP, granularity == "per_row") if learned else None
    qt = quantize_tensor(x, bits, granularity, CLIP, step)
    assert qt.codes.dtype == torch.int8
    assert int(qt.codes.abs().max()) <= max_level(bits)
    assert_close(qt.values(), fake_quantize(x, bits, granularity, CLIP, step), atol=0, rtol=0)


def test_ternary_scale_is_alpha() -> None:
    w = _data()
    _, alpha = ternary_params(w, CLIP, per_row=False)
    qt = quantize_tensor(w, 2, "per_tensor", CLIP)
    assert qt.scheme == "ternary"
    assert_close(qt.scale, alpha)
    assert_close(
        dequantize(qt.codes, qt.scale, "ternary"), _reference_ternary(w, per_row=False), atol=1e-7, rtol=1e-6
    )


def test_lsq_values_lie_on_the_learned_grid() -> None:
    x = torch.tensor([-3.0, -0.26, 0.1, 0.24, 0.9])
    q = fake_quantize(x, 4, "per_tensor", CLIP, torch.tensor(0.1))
    assert_close(q, torch.tensor([-0.7, -0.3, 0.1, 0.2, 0.7]))


def test_lsq_gradients_follow_the_lsq_formula() -> None:
    x = torch.tensor([-3.0, -0.26, 0.1, 0.24, 0.9], requires_grad=True)
    step = torch.tensor(0.1, requires_grad=True)
    fake_quantize(x, 4, "per_tensor", CLIP, step).sum().backward()
    ratio = x.detach() / 0.1
    inside = ratio.abs() < 7
    expected_step = (
        torch.where(inside, torch.round(ratio) - ratio, torch.sign(ratio) * 7).sum() / (5 * 7) ** 0.5
    )
    assert_close(x.grad, inside.float())
    assert_close(step.grad, expected_step)


def test_lsq_per_row_step_gets_one_gradient_per_row() -> None:
    x = _data((4, 8))
    step = lsq_initial_step(x, 8, CLIP, per_row=True).requires_grad_()
    (fake_quantize(x, 8, "per_row", CLIP, step) * torch.randn(4, 8)).sum().backward()
    assert step.grad.shape == (4, 1)
    assert (step.grad != 0).all()


@pytest.mark.parametrize("bits", [4, 8])
def test_lsq_starts_at_the_fixed_quantizer_step(bits: int) -> None:
    x = _data()
    assert_close(
        lsq_initial_step(x, bits, CLIP, per_row=True), 1 / symmetric_scale(x, bits, CLIP, per_row=True)
    )


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("spread", [0.5, 3.0])
def test_activation_kernel_gives_the_papers_values_up_to_float_rounding(bits: int, spread: float) -> None:
    x = _data((4, 32), spread)
    got = fake_quantize_activation(x, bits, CLIP)
    assert_close(got, _reference_symmetric(x, bits, per_row=False), atol=1e-6, rtol=1e-6)


def test_activation_gradient_passes_inside_the_clip_and_stops_outside() -> None:
    x = (_data() * 2).requires_grad_()
    fake_quantize_activation(x, 8, CLIP).sum().backward()
    assert_close(x.grad, (x.detach().abs() < CLIP).float(), atol=0, rtol=0)


def test_all_zero_activation_gives_zeros_not_nan() -> None:
    x = torch.zeros(2, 3, requires_grad=True)
    q = fake_quantize_activation(x, 8, CLIP)
    q.sum().backward()
    assert torch.equal(q, torch.zeros(2, 3)) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_quantized_in_fp32(dtype: torch.dtype) -> None:
    x = torch.tensor([0.0011, -0.0004, 0.0002], dtype=dtype, requires_grad=True)
    q = fake_quantize_activation(x, 8, CLIP)
    q.sum().backward()
    assert q.dtype == dtype and torch.isfinite(q).all()
    assert_close(q.float(), fake_quantize_activation(x.detach().float(), 8, CLIP).to(dtype).float())
    assert x.grad.dtype == dtype
