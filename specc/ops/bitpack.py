"""Small integer codes stored at their bit width (not an op: shared by the ops that store indices).

A codebook layer's codes index k centroids, an N:M layer's pattern indexes C(m, n) candidate masks:
each needs only ceil(log2 count) bits. Up to 256 values they are stored packed as a little-endian
bit stream per row: code j of a row occupies bits [j * bits, (j + 1) * bits) of the row's bytes (byte
b holds bits 8b..8b+7, low bit first), ceil(codes * bits / 8) bytes a row. 4-bit codes are two per
byte, low nibble first (int4 quant_linear's layout); 8-bit codes are plain bytes. More than 256
values are stored as int32, one code per element. Every target reads this layout (the torch
target's `_unpack_bits`, the onnx target's `unpacked_bits` macro).
"""

from __future__ import annotations

from typing import Any

from ..ir import ParamSpec


def code_bits(count: int) -> int | None:
    """Bits per code for `count` distinct values (at least 1), or None when they do not fit a byte."""
    return max(1, (count - 1).bit_length()) if count <= 256 else None


def packed_spec(rows: int, codes: int, count: int) -> ParamSpec:
    """The buffer holding [rows, codes] codes of `count` values (packed uint8, or int32)."""
    bits = code_bits(count)
    if bits is None:
        return ParamSpec((rows, codes), trainable=False, dtype="i32")
    return ParamSpec((rows, -(-codes * bits // 8)), trainable=False, dtype="u8")


def pack(codes: Any, count: int) -> Any:
    """Integer codes [rows, n] in [0, count) as stored (see the module docstring)."""
    import torch

    bits = code_bits(count)
    if bits is None:
        return codes.to(torch.int32)
    if bits == 8:
        return codes.to(torch.uint8)
    rows, n = codes.shape
    nbytes = -(-n * bits // 8)
    chunks = -(-n // 8)  # 8 codes fill `bits` bytes exactly
    q = torch.cat([codes.to(torch.int64), codes.new_zeros(rows, chunks * 8 - n, dtype=torch.int64)], dim=1)
    word = (q.view(rows, chunks, 8) << (torch.arange(8, device=codes.device) * bits)).sum(-1)  # < 2^64
    stream = (word[..., None] >> (torch.arange(bits, device=codes.device) * 8)) & 255
    return stream.reshape(rows, chunks * bits)[:, :nbytes].to(torch.uint8)


def unpack(stored: Any, count: int, n: int) -> Any:
    """The int64 codes [rows, n] of `pack`'s output for `count` values."""
    import torch

    bits = code_bits(count)
    if bits is None or bits == 8:
        return stored.long()
    rows, nbytes = stored.shape
    chunks = -(-n // 8)
    b = torch.cat([stored, stored.new_zeros(rows, chunks * bits - nbytes)], dim=1).to(torch.int64)
    word = (b.view(rows, chunks, bits) << (torch.arange(bits, device=stored.device) * 8)).sum(-1)
    codes = (word[..., None] >> (torch.arange(8, device=stored.device) * bits)) & (2 ** bits - 1)
    return codes.reshape(rows, chunks * 8)[:, :n]
