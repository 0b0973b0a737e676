"""Compression that keeps what was learned or stored: frozen learned masks, packed codes, MaskLLM's training.

- Learned N:M masks freeze exactly: `compress frozen = masks { sparsity(pattern=2:4) on nm_mask_linear }`
  compresses the compressed model `masks`, and converting its trained weights keeps each group's learned
  argmax mask (a trained toy's frozen outputs equal the learner's bit for bit), where freezing inside one
  compression of the dense model can only start again from the magnitude masks.
- Codebook codes and N:M patterns are stored at their bit width (k=16: 4 bits; 2:4's six candidates:
  3 bits, was 8), in one layout (specc/ops/bitpack.py) that the transforms write, the generated torch module draws and reads, and the onnx and triton
  targets read: outputs agree on every target, summary counts the packed bytes.
- Learnable masks anneal their temperature (`tau_end`, `anneal(progress)`) and offer MaskLLM's sparse
  weight regularizer (`kept_weight_norm()`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from specc.ops import bitpack
from specc.summary import summarize
from specc.transforms import convert_weights
from targets import outputs_on_every_target, python_module

CHAIN = """\
model net(d: int = 32) {
    input x: f32[B, d]
    h = relu(linear(x, 48))
    output logits = linear(h, 12)
}
compress masks = net {
    sparsity(pattern=2:4, learnable=true) on linear
}
compress frozen = masks {
    sparsity(pattern=2:4) on nm_mask_linear
}
compress refrozen = net {
    sparsity(pattern=2:4, learnable=true) on linear
    sparsity(pattern=2:4) on nm_mask_linear
}
"""


def spec(tmp_path: Path, text: str, name: str = "c") -> Path:
    path = tmp_path / f"{name}.nnspec"
    path.write_text(text)
    return path


def converted(path: Path, model: str, state: dict):
    graph = compile_graph(path, model)
    _, module = python_module(graph, "torch")
    module.load_state_dict(convert_weights(graph, state))  # strict: exactly the compressed model's keys
    return module.eval()


def trained_masks(path: Path, steps: int = 25):
    """The `masks` model (converted from a seeded dense `net`) trained on a random regression: its
    logits move away from the magnitude masks they start as."""
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "net"), "torch")
    learner = converted(path, "masks", dense.state_dict()).train()
    x, target = torch.randn(128, 32), torch.randn(128, 12)
    opt = torch.optim.Adam(learner.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(learner(x), target).backward()
        opt.step()
    return dense, learner.eval()


def test_frozen_learned_masks_keep_the_trained_logits_argmax(tmp_path):
    path = spec(tmp_path, CHAIN)
    dense, learner = trained_masks(path)
    frozen = converted(path, "frozen", learner.state_dict())
    x = torch.randn(64, 32)
    with torch.no_grad():
        want = learner(x)
        torch.testing.assert_close(frozen(x), want, rtol=0, atol=0)
        for name in ("h_linear", "logits"):  # each group keeps the candidate its learned logits chose
            layer, frozen_layer = getattr(learner, name), getattr(frozen, name)
            assert torch.equal(frozen_layer.dense_weight(), layer.weight * layer.mask())
        # the training moved masks: freezing from the dense model (magnitude masks) gives other outputs
        refrozen = converted(path, "refrozen", dense.state_dict())
        assert (refrozen(x) - want).abs().max() > 1e-2
        assert not torch.equal(refrozen.h_linear.dense_weight() != 0, learner.h_linear.mask() != 0)


def test_the_editor_compiles_a_compressed_model_of_a_compressed_model(tmp_path):
    from specc.lsp.analysis import Workspace

    path = spec(tmp_path, CHAIN)
    analysis = Workspace().analyze(path)
    assert analysis.errors == [] and {"masks", "frozen"} <= set(analysis.models)
    broken = Workspace().analyze(path, CHAIN.replace("compress frozen = masks", "compress frozen = maks"))
    assert [e.code for e in broken.errors] == ["E0806"]


@pytest.mark.parametrize("text, code, message", [
    ("compress a = b {\n    prune(0.5) on linear\n}\ncompress b = a {\n    prune(0.5) on linear\n}\n", "E0830",
     "compressed models compress each other in a cycle: a -> b -> a"),
    ("compress a = a {\n    prune(0.5) on linear\n}\n", "E0830", "in a cycle: a -> a"),
    ("compress a = nowhere {\n    prune(0.5) on linear\n}\n", "E0806", "`nowhere` is not defined"),
])
def test_compressing_a_compressed_model_errors(tmp_path, text, code, message):
    path = spec(tmp_path, CHAIN + text)
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "a")
    assert info.value.code == code and message in info.value.message, info.value.render()
    assert info.value.span is not None and info.value.span.line > CHAIN.count("\n")


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
    ("sparsity(pattern=2:4)", {"h_linear.pattern": (40, 5), "y.pattern": (16, 4)}),  # 6 candidates: 3 bits
    ("sparsity(pattern=1:8)", {"h_linear.pattern": (40, 3), "y.pattern": (16, 2)}),  # 8: 3 bits
    ("sparsity(pattern=2:8)", {"h_linear.pattern": (40, 4), "y.pattern": (16, 4)}),  # 28: 5 bits
    ("sparsity(pattern=3:16) on \"h_linear\"\n    sparsity(pattern=1:8)", {"h_linear.pattern": (40, 3), "y.pattern": (16, 2)}),  # 560: int32; 8: 3 bits
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


# ------------------------------------------------------------------ MaskLLM: temperature annealing, weight regularizer
ANNEALED = BASE + "compress masks = net {\n    sparsity(pattern=2:4, learnable=true, tau=4.0, tau_end=0.05) on linear\n}\n"


def test_temperature_anneals_linearly_from_tau_to_tau_end_and_reaches_the_sampling(tmp_path):
    path = spec(tmp_path, ANNEALED)
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "net"), "torch")
    learner = converted(path, "masks", dense.state_dict()).train()
    layer = learner.h_linear
    assert layer.tau == 4.0
    for progress, tau in [(0.5, 2.025), (1.0, 0.05), (2.0, 0.05), (-1.0, 4.0)]:
        layer.anneal(progress)
        assert layer.tau == pytest.approx(tau)
    x = torch.randn(8, 48)

    def logits_grad(progress: float) -> torch.Tensor:
        layer.anneal(progress)
        layer.logits.grad = None
        torch.manual_seed(1)  # the same Gumbel noise: only the temperature differs
        learner(x).sum().backward()
        return layer.logits.grad.clone()

    cold, hot = logits_grad(1.0), logits_grad(0.0)
    # the same hard samples, but the straight-through gradient is the softmax's at the temperature:
    # nearly one-hot when cold (most candidates get almost none), spread out when hot
    assert (cold - hot).abs().sum() > 0.5 * hot.abs().sum()
    assert (cold.abs() < 1e-6).sum() > 2 * (hot.abs() < 1e-6).sum()
    with pytest.raises(SpeccError) as info:
        compile_graph(spec(tmp_path, BASE + "compress c = net {\n    sparsity(pattern=2:4, tau_end=0.1) on linear\n}\n",
                           "bad"), "c")
    assert info.value.code == "E0302" and "tau_end" in info.value.message and info.value.span.line == 7


def test_kept_weight_regularizer_keeps_the_masked_weights_large(tmp_path):
    path = spec(tmp_path, ANNEALED)
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "net"), "torch")
    x, target = torch.randn(128, 48), torch.randn(128, 16)

    def train(strength: float) -> float:
        torch.manual_seed(2)
        learner = converted(path, "masks", dense.state_dict()).train()
        layers = [learner.h_linear, learner.y]
        opt = torch.optim.SGD(learner.parameters(), lr=0.05)
        for step in range(20):
            for layer in layers:
                layer.anneal(step / 19)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(learner(x), target)
            (loss - strength * sum(layer.kept_weight_norm() for layer in layers)).backward()
            opt.step()
        learner.eval()
        with torch.no_grad():
            return float(sum(layer.kept_weight_norm() for layer in layers))

    layer = converted(path, "masks", dense.state_dict()).train().h_linear
    layer(torch.randn(2, 48))  # the norm is taken under the mask that forward sampled
    (grad,) = torch.autograd.grad(layer.kept_weight_norm(), [layer.weight])
    torch.testing.assert_close(grad, 2 * layer.weight.detach() * layer._sampled.detach())
    assert train(0.05) > 1.1 * train(0.0)
