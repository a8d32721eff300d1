"""Bit packing of integer codes: int8 as is, 4-bit two per byte, 2-bit (ternary) four per byte.

Codes are stored in two's complement in the low bits of each field, first element in the
lowest bits of its byte; the last byte is zero-padded. Pure functions: tensors in, tensors out.
"""

from __future__ import annotations

import math

import torch

PACKED_BITS = (2, 4, 8)


def code_range(bits: int) -> tuple[int, int]:
    """Smallest and largest code a field of `bits` holds (two's complement)."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def packed_numel(numel: int, bits: int) -> int:
    """Bytes that `numel` codes of `bits` take once packed."""
    return math.ceil(numel * bits / 8)


def _check_bits(bits: int) -> None:
    if bits not in PACKED_BITS:
        raise ValueError(f"bits must be one of {PACKED_BITS}, got {bits}")


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes (any shape) as bytes: int8 of the same shape for 8 bits, else flat uint8."""
    _check_bits(bits)
    low, high = code_range(bits)
    flat = codes.detach().reshape(-1).to(torch.int16)
    if flat.numel() and (int(flat.min()) < low or int(flat.max()) > high):
        raise ValueError(f"codes outside [{low}, {high}] cannot be packed in {bits} bits")
    if bits == 8:
        return flat.to(torch.int8).reshape(codes.shape).contiguous()
    per_byte = 8 // bits
    fields = (flat & (2**bits - 1)).to(torch.int32)
    fields = torch.nn.functional.pad(fields, (0, (-fields.numel()) % per_byte)).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int32, device=fields.device) * bits
    return (fields << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The int8 codes of `shape` that `pack_codes` turned into `packed`."""
    _check_bits(bits)
    numel = math.prod(shape)
    if packed.numel() != packed_numel(numel, bits):
        raise ValueError(f"{packed.numel()} bytes do not hold {numel} codes of {bits} bits")
    if bits == 8:
        return packed.to(torch.int8).reshape(shape)
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32, device=packed.device) * bits
    fields = ((packed.reshape(-1, 1).to(torch.int32) >> shifts) & (2**bits - 1)).reshape(-1)[:numel]
    signed = fields - (fields >= 2 ** (bits - 1)).to(torch.int32) * 2**bits
    return signed.to(torch.int8).reshape(shape)
