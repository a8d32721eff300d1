"""Exact round trips of the bit packing."""

from __future__ import annotations

import pytest
import torch

from compression.packing import code_range, pack_codes, packed_numel, unpack_codes

SEED = 123


def _codes(bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(SEED)
    low, high = code_range(bits)
    return torch.randint(low, high + 1, shape, dtype=torch.int8)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("shape", [(7, 13), (4, 4), (1,), (3, 2, 5)])
def test_round_trip_is_exact(bits: int, shape: tuple[int, ...]) -> None:
    codes = _codes(bits, shape)
    packed = pack_codes(codes, bits)
    assert torch.equal(unpack_codes(packed, bits, shape), codes)


@pytest.mark.parametrize(
    ("bits", "dtype", "nbytes"), [(8, torch.int8, 91), (4, torch.uint8, 46), (2, torch.uint8, 23)]
)
def test_packed_size_is_bits_times_count(bits: int, dtype: torch.dtype, nbytes: int) -> None:
    packed = pack_codes(_codes(bits, (7, 13)), bits)
    assert packed.dtype == dtype
    assert packed.numel() == nbytes == packed_numel(91, bits)


def test_ternary_codes_pack_four_per_byte_low_bits_first() -> None:
    packed = pack_codes(torch.tensor([1, -1, 0, 1, -1], dtype=torch.int8), 2)
    assert packed.tolist() == [0b01_00_11_01, 0b11]


def test_four_bit_codes_pack_two_per_byte_low_nibble_first() -> None:
    assert pack_codes(torch.tensor([-7, 7, 3], dtype=torch.int8), 4).tolist() == [0x79, 0x03]


def test_codes_outside_the_field_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        pack_codes(torch.tensor([2], dtype=torch.int8), 2)


def test_a_wrong_byte_count_is_refused() -> None:
    with pytest.raises(ValueError, match="do not hold"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, (7,))


def test_unsupported_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="bits"):
        pack_codes(torch.zeros(3, dtype=torch.int8), 3)
