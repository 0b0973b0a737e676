"""attention against reference implementations, with their weights loaded as they are:
transformers' LlamaAttention (grouped-query heads, rotate_half rotary, causal, no bias) and
torch's nn.MultiheadAttention (cross-attention, separate projections, a boolean mask). The triton
(interpreter) and ONNX targets must agree with the torch module on the same cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specc.diagnostics import SpeccError
from targets import compile_graph, outputs_on_every_target, python_module


def _build(tmp_path, expr: str, *inputs: str):
    spec = tmp_path / "attn.nnspec"
    spec.write_text("model attn() {\n" + "".join(f"    input {i}\n" for i in inputs)
                    + f"    output y = {expr}\n}}\n")
    graph = compile_graph(spec)
    _, model = python_module(graph, "torch")
    return graph, model.eval()


def _load(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load a reference's attention weights under the generated module's attention layer, strictly."""
    prefix = next(iter(model.state_dict())).split(".")[0]
    model.load_state_dict({f"{prefix}.{k}": v for k, v in weights.items()}, strict=True)


def _other_targets_agree(graph, model: nn.Module, inputs: list[torch.Tensor], expected: torch.Tensor, tmp_path):
    got = outputs_on_every_target(graph, inputs, model.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], expected, rtol=1e-5, atol=1e-5)


LLAMA = 'attention(x, 4, kv_heads=2, qkv="separate", bias=false, causal=true, rotary="rotate_half")'


def test_llama_attention(tmp_path):
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, attention_bias=False,
                         rope_theta=10000.0, max_position_embeddings=64)
    config._attn_implementation = "eager"
    reference = llama.LlamaAttention(config, layer_idx=0).eval()
    rotary = llama.LlamaRotaryEmbedding(config)
    x = torch.randn(2, 7, 32)
    causal = torch.full((7, 7), float("-inf")).triu(1)[None, None]
    with torch.no_grad():
        expected, _ = reference(x, position_embeddings=rotary(x, torch.arange(7)[None]), attention_mask=causal)

    graph, model = _build(tmp_path, LLAMA, "x: f32[B, T, 32]")
    _load(model, reference.state_dict())
    assert [k.split(".", 1)[1] for k in model.state_dict()] == list(reference.state_dict())
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    _other_targets_agree(graph, model, [x], got, tmp_path)


def test_interleaved_is_rotate_half_with_permuted_rows(tmp_path):
    """Meta's LLaMA checkpoints (interleaved pairs) become transformers' (rotate_half) by permuting the
    rows of each q and k head (convert_llama_weights_to_hf's `permute`): the two layouts must agree."""
    expr = 'attention(x, 4, kv_heads=2, qkv="separate", bias=false, causal=true, rotary="{}")'
    graph, half = _build(tmp_path, expr.format("rotate_half"), "x: f32[B, T, 32]")
    _, interleaved = _build(tmp_path, expr.format("interleaved"), "x: f32[B, T, 32]")
    weights = {k.split(".", 1)[1]: v for k, v in interleaved.state_dict().items()}

    def permute(w: torch.Tensor) -> torch.Tensor:  # [heads * 8, 32], pairs (2i, 2i+1) -> (i, i + 4)
        return w.view(-1, 4, 2, 32).transpose(1, 2).reshape(w.shape)

    _load(half, {**weights, "q_proj.weight": permute(weights["q_proj.weight"]),
                 "k_proj.weight": permute(weights["k_proj.weight"])})
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        expected = half(x)
        got = interleaved(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    _other_targets_agree(graph, half, [x], expected, tmp_path)


def test_cross_attention_with_bool_mask(tmp_path):
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True).eval()
    x, context = torch.randn(2, 5, 8), torch.randn(2, 7, 6)
    mask = torch.rand(5, 7) > 0.4
    mask[:, 0] = True  # every query attends somewhere (an all-False row is NaN in SDPA and in the reference)
    with torch.no_grad():
        expected, _ = reference(x, context, context, attn_mask=~mask, need_weights=False)  # True = masked out there

    graph, model = _build(tmp_path, 'attention(x, 2, qkv="separate", context=c, mask=m)',
                          "x: f32[B, 5, 8]", "c: f32[B, 7, 6]", "m: bool[5, 7]")
    q_bias, k_bias, v_bias = reference.in_proj_bias.chunk(3)
    _load(model, {"q_proj.weight": reference.q_proj_weight, "q_proj.bias": q_bias,
                  "k_proj.weight": reference.k_proj_weight, "k_proj.bias": k_bias,
                  "v_proj.weight": reference.v_proj_weight, "v_proj.bias": v_bias,
                  "o_proj.weight": reference.out_proj.weight, "o_proj.bias": reference.out_proj.bias})
    with torch.no_grad():
        got = model(x, context, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    _other_targets_agree(graph, model, [x, context, mask], got, tmp_path)


def test_bool_mask_with_causal_self_attention(tmp_path):
    """A [B, 1, 1, S] padding mask and causal together, on every target."""
    graph, model = _build(tmp_path, "attention(x, 2, kv_heads=1, causal=true, mask=m)",
                          "x: f32[2, 6, 8]", "m: bool[2, 1, 1, 6]")
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]).view(2, 1, 1, 6)
    with torch.no_grad():
        got = model(x, mask)
        # a padded key changes nothing for queries that cannot see it (causal): rows 0..3 of batch 1
        unpadded = model(x, torch.ones_like(mask))
    torch.testing.assert_close(got[1, :4], unpadded[1, :4])
    assert not torch.allclose(got[1, 4:], unpadded[1, 4:])
    _other_targets_agree(graph, model, [x, mask], got, tmp_path)


@pytest.mark.parametrize("expr,inputs,code,words", [
    ("attention(x, 4, kv_heads=3)", ("x: f32[B, T, 24]",), "E0402", ["kv_heads=3", "heads=4"]),
    ("attention(x, 2, mask=m)", ("x: f32[B, T, 8]", "m: bool[B, T, T]"), "E0402", ["`m`", "[B, 1, T, S]"]),
    ("attention(x, 2, mask=m)", ("x: f32[B, T, 8]", "m: f32[B, 1, T, 3]"), "E0402", ["`m`", "dim 3"]),
    ("attention(x, 2, mask=m)", ("x: f32[B, T, 8]", "m: i64[T, T]"), "E0403", ["`m`", "bool"]),
    ("attention(x, 2, context=c)", ("x: f32[B, T, 8]", "c: f32[B, S, 4]"), "E0401", ["`c`", "separate"]),
    ("attention(x, 2, rotary=\"rotate_half\")", ("x: f32[B, T, 6]",), "E0402", ["head_dim", "odd"]),
    ("attention(x, 2, rotary=\"llama\")", ("x: f32[B, T, 8]",), None, ["rotate_half", "interleaved"]),
    ("attention(x, 2, operands=[1])", ("x: f32[B, T, 8]",), "E0301", ["operands"]),
])
def test_errors_are_located(tmp_path, expr, inputs, code, words):
    with pytest.raises(SpeccError) as info:
        _build(tmp_path, expr, *inputs)
    error = info.value
    if code:
        assert error.code == code
    assert error.span is not None and error.span.line == len(inputs) + 2
    for word in words:
        assert word in str(error), str(error)
