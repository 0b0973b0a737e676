"""Compression that keeps what was learned or stored: packed codes.

- Codebook codes are stored at their bit width (k=16: 4 bits), in one layout (specc/ops/bitpack.py)
  that the transforms write, the generated torch module draws and reads, and the onnx and triton
  targets read: outputs agree on every target, summary counts the packed bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specc.compiler import compile_graph
from specc.ops import bitpack
from specc.summary import summarize
from specc.transforms import convert_weights
from targets import outputs_on_every_target, python_module


def spec(tmp_path: Path, text: str, name: str = "c") -> Path:
    path = tmp_path / f"{name}.nnspec"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ codes at their bit width
@pytest.mark.parametrize("count", [2, 3, 5, 6, 16, 17, 28, 70, 200, 256, 300])
def test_packed_codes_round_trip_in_specc_and_in_the_generated_module(tmp_path, count):
    codes = torch.randint(0, count, (5, 37), generator=torch.Generator().manual_seed(count))
    stored = bitpack.pack(codes, count)
    spec = bitpack.packed_spec(5, 37, count)
    assert tuple(stored.shape) == spec.shape
    bits = bitpack.code_bits(count)
    assert stored.dtype == (torch.int32 if bits is None else torch.uint8)
    if bits is not None:
        assert bits == max(1, (count - 1).bit_length()) and stored.shape[1] == -(-37 * bits // 8)
    assert torch.equal(bitpack.unpack(stored, count, 37), codes)
    module, _ = python_module(layer_graph(tmp_path), "torch")  # the generated module's copy of the layout
    assert torch.equal(module._pack_bits(codes, count), stored)
    assert torch.equal(module._unpack_bits(stored, count, 37), codes)
    assert torch.equal(module._unpack_bits(stored[2:4], count, 37), codes[2:4])  # a band of rows


def test_packed_layout_is_a_little_endian_bit_stream():
    assert bitpack.pack(torch.tensor([[1, 2, 3]]), 16).tolist() == [[0x21, 0x03]]  # low nibble first
    # 3-bit codes 5, 6, 7: bits 101 | 110 << 3 | 111 << 6 = 0b111_110_101, over two bytes
    assert bitpack.pack(torch.tensor([[5, 6, 7]]), 6).tolist() == [[0b11110101, 0b1]]


def layer_graph(tmp_path: Path, expr: str = "codebook_linear(x, 8, k=16)", width: int = 24):
    path = tmp_path / "layer.nnspec"
    path.write_text(f"model layer() {{\n    input x: f32[B, {width}]\n    output y = {expr}\n}}\n")
    return compile_graph(path)


BASE = """\
model net() {
    input x: f32[B, 48]
    h = relu(linear(x, 40))
    output y = linear(h, 16)
}
"""


@pytest.mark.parametrize("stage, stored", [
    ("codebook(k=16)", {"h_linear.codes": (40, 24), "y.codes": (16, 20)}),  # 4 bits: two codes a byte
    ("codebook(k=6, dim=2)", {"h_linear.codes": (40, 9), "y.codes": (16, 8)}),  # 3 bits: 24 and 20 codes
    ("codebook(k=2)", {"h_linear.codes": (40, 6), "y.codes": (16, 5)}),  # 1 bit
    ("codebook(k=300, dim=2, iters=2)", {"h_linear.codes": (40, 24)}),  # int32 (y: kept dense, not smaller)
])
def test_packed_layers_agree_on_every_target(tmp_path, stage, stored):
    path = spec(tmp_path, BASE + f"compress small = net {{\n    {stage} on linear\n}}\n")
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "net"), "torch")
    graph = compile_graph(path, "small")
    state = convert_weights(graph, dense.state_dict())
    assert {k: tuple(v.shape) for k, v in state.items() if k in stored} == stored
    x = torch.randn(3, 48)
    got = outputs_on_every_target(graph, [x], state, tmp_path)
    torch.testing.assert_close(got["onnx"], got["torch"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["triton"], got["torch"], rtol=1e-5, atol=1e-5)
    rows = {r.name: r for r in summarize(graph)}  # the stored bytes are the packed ones
    for key, shape in stored.items():
        layer = key.split(".")[0]
        weights = sum(v.numel() * v.element_size() for k, v in state.items() if k.startswith(layer + "."))
        assert rows[layer].weight_bytes == weights, (layer, rows[layer].weight_bytes, weights)
