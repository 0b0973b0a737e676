"""Compression stages that compose (2:4 then int4, low-rank then int4) and the layers they reach.

Each composed model is converted from a dense model's weights and checked on every target
against the torch target, and against what the stages promise: the 2:4 zeros stay exact zeros
after quantization, the factors are each quantized as `quantize` alone would, and the storage
`specc summary` reports is the stored tensors' bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specc.codegen import backends
from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from specc.summary import summarize, totals
from specc.transforms import convert_weights
from specc.transforms.quantize import dequantize_weight, quantize_weight
from targets import example_inputs, python_module, run_onnx
from test_compression_transforms import compressed, convert, outputs

BASE = """\
model net(d: int = 32) {
    input x: f32[B, d]
    h = relu(linear(x, 48))
    output logits = linear(h, 12)
}
"""


def assert_targets_agree(tmp_path: Path, graph, reference, inputs=None) -> None:
    inputs = inputs if inputs is not None else example_inputs(graph)
    expected = outputs(reference, inputs)
    module, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(reference.state_dict())
    launches: list[int] = []  # the triton target's fused dequantize-matmul runs every quantized matrix
    if hasattr(module, "_QuantMatmul"):
        apply = module._QuantMatmul.apply
        module._QuantMatmul.apply = lambda *a: launches.append(1) or apply(*a)
    got = outputs(triton_model.eval(), inputs)
    assert len(launches) == sum(k.split(".")[-1] == "qweight" for n in graph.nodes() for k in n.params
                                if n.op not in ("quant_embedding", "quant_conv1d", "quant_conv2d"))  # not matmuls
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    onnx_out = run_onnx(backends()["onnx"].emit(graph, weights=weights).data, graph, inputs)
    for e, t, o in zip(expected, got, onnx_out, strict=True):
        torch.testing.assert_close(t, e, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(o), e, rtol=1e-5, atol=1e-5)


def stored_bytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


# ------------------------------------------------------------------ 2:4 then int4
@pytest.mark.parametrize("quant", ["int4, group=16", "int4, symmetric=false", "int8"])
def test_2_4_then_quantize_keeps_the_zeros_and_agrees_on_every_target(tmp_path, quant):
    path = compressed(tmp_path, f"    sparsity(pattern=2:4) on linear\n    quantize({quant}) on nm_linear\n")
    dense, graph, model = convert(path)
    assert {n.op for n in graph.nodes() if n.name in ("h_linear", "logits")} == {"quant_linear"}
    for layer in (model.h_linear, model.logits):
        w = layer.dequantized()
        zeros = (w.view(w.shape[0], -1, 4) == 0).sum(-1)
        assert bool((zeros >= 2).all()), "every group of 4 keeps at least its 2 pruned weights at exactly 0"
    # the quantized weight is the quantizer's result for the 2:4-masked dense weight
    w = dense.h_linear.weight.detach()
    keep = torch.zeros_like(w, dtype=torch.bool).view(48, -1, 4).scatter(
        -1, w.abs().view(48, -1, 4).argsort(dim=-1, descending=True, stable=True)[..., :2], True).view(48, 32)
    bits, a = (8 if "int8" in quant else 4), graph.node("h_linear").attrs
    expected = dequantize_weight(quantize_weight(w * keep, bits, a.group, a.symmetric), bits, a.group,
                                 a.symmetric, 32)
    torch.testing.assert_close(model.h_linear.dequantized(), expected, rtol=0, atol=0)
    assert_targets_agree(tmp_path, graph, model)


def test_2_4_then_int4_summary_counts_the_stored_bytes(tmp_path):
    path = compressed(tmp_path, "    sparsity(pattern=2:4) on linear\n    quantize(int4) on nm_linear\n")
    _, graph, model = convert(path)
    after = totals(summarize(graph))[1]
    assert after == stored_bytes(model.state_dict())
    # int4 codes for every weight (zeros included) plus a scale per row and the biases
    assert after == (48 * 16 + 12 * 24) + 4 * (48 + 12) + 4 * (48 + 12)


# ------------------------------------------------------------------ low-rank then int4
@pytest.mark.parametrize("quant", ["int4", "int8, group=8", "int4, group=16, symmetric=false",
                                   "int4, group=2, onnx=\"standard\""])
def test_lowrank_then_quantize_quantizes_both_factors(tmp_path, quant):
    path = compressed(tmp_path, f"    lowrank(rank=4) on linear\n    quantize({quant}) on lowrank_linear\n")
    _, graph, model = convert(path)
    node = graph.node("h_linear")
    assert node.op == "lowrank_quant_linear" and node.attrs.rank == 4
    # each factor is what `quantize` makes of lowrank's float factor
    _, lowrank_graph, lowrank = convert(compressed(tmp_path, "    lowrank(rank=4) on linear\n"))
    a = node.attrs
    for which, group in (("down", a.down_group), ("up", a.up_group)):
        q = quantize_weight(getattr(lowrank.h_linear, which).weight, a.bits, group, a.symmetric)
        for key, value in q.items():
            torch.testing.assert_close(model.state_dict()[f"h_linear.{which}.{key}"], value, rtol=0, atol=0)
    after = totals(summarize(graph))[1]
    assert after == stored_bytes(model.state_dict())
    assert_targets_agree(tmp_path, graph, model)


def test_lowrank_int4_is_smaller_than_either_alone(tmp_path):
    both = convert(compressed(tmp_path, "    lowrank(rank=4) on linear\n    quantize(int4) on lowrank_linear\n"))[2]
    low = convert(compressed(tmp_path, "    lowrank(rank=4) on linear\n"))[2]
    int4 = convert(compressed(tmp_path, "    quantize(int4) on linear\n"))[2]
    assert stored_bytes(both.state_dict()) < min(stored_bytes(low.state_dict()), stored_bytes(int4.state_dict()))


def test_mixed_quantization_shares_its_budget_across_sparse_and_low_rank_layers(tmp_path):
    path = compressed(tmp_path, '    sparsity(pattern=2:4) on "h_linear"\n    lowrank(rank=4) on "logits"\n'
                          '    quantize(mixed, budget=0.2) on "*_linear"\n    quantize(int8) on "logits"\n')
    _, graph, model = convert(path)
    assert graph.node("h_linear").op == "quant_linear" and graph.node("logits").op == "lowrank_quant_linear"
    assert_targets_agree(tmp_path, graph, model)


# ------------------------------------------------------------------ combinations that stay unsupported
@pytest.mark.parametrize("stages,message,help", [
    ("    sparsity(pattern=2:4, learnable=true) on linear\n    quantize(int4) on nm_mask_linear\n",
     "`quantize` cannot follow `sparsity(learnable=true)`", "freeze the learned masks first"),
    ("    prune(0.5) on linear\n    quantize(int4) on masked_linear\n", "`quantize` cannot follow `prune`", None),
    ("    codebook(k=4) on linear\n    quantize(int8) on codebook_linear\n", "`quantize` cannot follow `codebook`",
     None),
    ("    tensor_train(bond=2) on linear\n    quantize(int8) on tt_linear\n", "`quantize` cannot follow `tensor_train`",
     None),
    ("    quantize(int8) on linear\n    quantize(int4) on quant_linear\n", "`quantize` cannot follow `quantize`",
     None),
    ("    lowrank(rank=4) on linear\n    quantize(int4, accuracy_level=4) on lowrank_linear\n",
     "quantize's accuracy_level=4 chooses MatMulNBits'", "select those in a stage of their own"),
    ("    sparsity(pattern=2:4, learnable=true) on linear\n    quantize(mixed, budget=0.5) on nm_mask_linear\n",
     "`quantize` cannot follow `sparsity(learnable=true)`", None),
])
def test_unsupported_combinations_are_located_errors_naming_both_stages(tmp_path, stages, message, help):
    path = compressed(tmp_path, stages)
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "small")
    err = info.value
    assert err.code == "E0808" and message in err.message, err.render()
    assert err.span is not None and err.span.line in (3, 4)  # the layer's definition
    if "mixed" not in stages:  # a mixed stage refuses while sharing out its budget, before any layer's rewrite
        assert any("while applying `quantize`" in n.message for n in err.notes)
    if help is not None:
        assert help in (err.help or ""), err.render()


# ------------------------------------------------------------------ attention projections
ATTENTION = """\
model net(d: int = 16) {
    input x: f32[B, 5, d]
    input c: f32[B, 3, 8]
    a = attention(x, 4, causal=true)
    s = attention(a, 4, kv_heads=2, qkv="separate", rotary="rotate_half", bias=false)
    t = attention(s, 2, qkv="separate", context=c)
    output y = linear(t, 8)
}
"""


@pytest.mark.parametrize("quant", ["int4, group=8", "int8, symmetric=false", "int4, group=8, onnx=\"standard\""])
def test_quantize_on_attention_quantizes_every_projection_on_every_target(tmp_path, quant):
    path = compressed(tmp_path, f"    quantize({quant}) on attention\n    quantize(int8) on linear\n", ATTENTION)
    dense, graph, model = convert(path)
    assert [graph.node(n).op for n in ("a", "s", "t")] == ["quant_attention"] * 3
    keys = model.state_dict().keys()
    # a projection's weight becomes quant_linear's storage under the same layer key; biases keep theirs
    assert {"a.qkv.qweight", "a.qkv.scale", "a.qkv.bias", "a.out.qweight", "s.q_proj.qweight", "s.o_proj.scale",
            "t.k_proj.qweight", "t.v_proj.qweight"} <= set(keys)
    assert not any(k.endswith(".weight") for k in keys)
    # each projection is what quantize makes of the dense one (t.k_proj reads the 8-wide context)
    a = graph.node("t").attrs
    w = dense.t.k_proj.weight
    expected = quantize_weight(w, a.bits, a.projection_group(8), a.symmetric)
    for key, value in expected.items():
        torch.testing.assert_close(model.state_dict()[f"t.k_proj.{key}"], value, rtol=0, atol=0)
    after = totals(summarize(graph))[1]
    assert after == stored_bytes(model.state_dict())
    assert_targets_agree(tmp_path, graph, model)
    # and the quantized model stays close to the dense one
    inputs = example_inputs(graph)
    for q, d in zip(outputs(model, inputs), outputs(dense, inputs), strict=True):
        assert float((q - d).norm() / d.norm()) < (0.15 if "int4" in quant else 0.02)


def test_quantize_reaches_every_weight_of_tiny_gpt(tmp_path):
    """Attention (27% of tiny_gpt's parameters), both embeddings and every linear, inside repeated blocks."""
    from targets import ROOT

    text = (ROOT / "specs" / "tiny_gpt.nnspec").read_text()
    path = tmp_path / "g.nnspec"
    path.write_text(text + "\ncompress small = tiny_gpt {\n    quantize(int4, group=16) on attention\n"
                           "    quantize(int8) on embedding\n    quantize(int4, group=32) on linear\n}\n")
    graph = compile_graph(path, "small")
    ops = {n.op for n in graph.nodes() if n.params}
    assert ops <= {"quant_attention", "quant_embedding", "quant_linear", "rmsnorm"}, ops
    torch.manual_seed(0)
    base = compile_graph(path, "tiny_gpt")
    _, dense = python_module(base, "torch")
    _, model = python_module(graph, "torch")
    model.load_state_dict(convert_weights(graph, dense.state_dict()))
    model.eval()
    dense_bytes = totals(summarize(base))[1]
    after = totals(summarize(graph))[1]
    assert after == stored_bytes(model.state_dict()) and after < dense_bytes / 4
    print(f"tiny_gpt: {dense_bytes:,} -> {after:,} weight bytes")
    inputs = example_inputs(graph, int_high={"tokens": 128, "positions": 2})
    inputs[1] = torch.arange(inputs[1].shape[0])
    assert_targets_agree(tmp_path, graph, model, inputs)


@pytest.mark.parametrize("options", ["causal=true", "", "kv_heads=2", "rotary=\"rotate_half\"",
                                     "rotary=\"interleaved\", causal=true", "qkv=\"separate\", bias=false"])
@pytest.mark.parametrize("quantized", [False, True])
def test_attention_onnx_graph_has_no_unused_values(tmp_path, options, quantized):
    """Every value the onnx template makes is used: an unused constant became an initializer that
    onnxruntime warned about at every load ("Removing initializer 'a__axis2'")."""
    import onnx

    base = f"model net() {{\n    input x: f32[B, 5, 16]\n    output y = attention(x, 4, {options})\n}}\n"
    graph = compile_graph(compressed(tmp_path, "    quantize(int8) on attention\n", base), "small" if quantized
                          else "net")
    proto = onnx.load_from_string(backends()["onnx"].emit(graph).data)
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    unused = [o for n in proto.graph.node for o in n.output if o not in used]
    assert unused == [] and [t.name for t in proto.graph.initializer if t.name not in used] == []


def test_quantize_attention_with_accuracy_level_is_a_located_error(tmp_path):
    path = compressed(tmp_path, "    quantize(int4, accuracy_level=4) on attention\n", ATTENTION)
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "small")
    assert info.value.code == "E0808" and "accuracy_level=4" in info.value.message
    assert info.value.span is not None and info.value.span.line == 4


@pytest.mark.parametrize("stages,message", [
    ("    quantize(int4) on linear\n    sparsity(pattern=2:4) on quant_linear\n", "`sparsity` cannot follow `quantize`"),
    ("    quantize(int4) on linear\n    lowrank(rank=4) on \"h_linear\"\n", "`lowrank` cannot follow `quantize`"),
    ("    codebook(k=4) on linear\n    prune(0.5) on codebook_linear\n", "`prune` cannot follow `codebook`"),
])
def test_other_stages_after_a_compressed_layer_name_both_stages(tmp_path, stages, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, stages), "small")
    err = info.value
    assert err.code == "E0802" and message in err.message, err.render()
    assert err.span is not None and err.span.line == 8 and "apply `" in (err.help or "")


# ------------------------------------------------------------------ embedding tables
EMBEDDING = """\
model net(v: int = 50, d: int = 15) {
    input ids: i64[B, T]
    e = embedding(ids, v, d)
    output y = linear(e, 8)
}
"""


@pytest.mark.parametrize("quant", ["int8", "int4", "int4, group=4, symmetric=false", "int8, group=5"])
def test_quantized_embedding_dequantizes_the_gathered_rows_on_every_target(tmp_path, quant):
    path = compressed(tmp_path, f"    quantize({quant}) on embedding\n", EMBEDDING)
    dense, graph, model = convert(path)
    node = graph.node("e")
    assert node.op == "quant_embedding" and set(model.state_dict()) >= {"e.qweight", "e.scale"}
    a = node.attrs
    table = dequantize_weight(quantize_weight(dense.e.weight, a.bits, a.group, a.symmetric), a.bits, a.group,
                              a.symmetric, 15)
    ids = torch.tensor([[3, 49, 0, 3], [17, 17, 2, 48]])
    with torch.no_grad():
        torch.testing.assert_close(model.e(ids), table[ids], rtol=0, atol=0)
        assert float((model.e(ids) - dense.e(ids)).abs().max()) < (0.5 if a.bits == 4 else 0.05)
    after = totals(summarize(graph))[1]
    assert after == stored_bytes(model.state_dict())
    assert_targets_agree(tmp_path, graph, model, [ids])


def test_quantize_refuses_a_shared_embedding_table(tmp_path):
    shared = """\
model net(v: int = 50, d: int = 16) {
    input ids: i64[B, T]
    wte = parameter([v, d])
    e = embedding(ids, weight=wte)
    output y = linear(e, 8)
}
"""
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, "    quantize(int8) on embedding\n", shared), "small")
    assert info.value.code == "E0808" and "a table it does not own" in info.value.message
    assert info.value.span is not None and info.value.span.line == 4


# ------------------------------------------------------------------ convolutions
CONV = """\
model net(c: int = 3) {
    input x: f32[B, c, 9, 9]
    input s: f32[B, 4, 11]
    h = relu(conv2d(x, 8, 3, padding=1))
    g = conv2d(h, 8, [3, 1], stride=2, groups=2, bias=false)
    q = conv1d(s, 6, 3, dilation=2)
    output y = linear(flatten(g, 1), 5)
    output z = q
}
"""


@pytest.mark.parametrize("quant", ["int8", "int4", "int4, symmetric=false", "int8, onnx=\"standard\""])
def test_quantized_convolutions_agree_on_every_target(tmp_path, quant):
    path = compressed(tmp_path, f"    quantize({quant}) on conv2d\n    quantize({quant}) on conv1d\n", CONV)
    dense, graph, model = convert(path)
    assert [graph.node(n).op for n in ("h_conv2d", "g", "q")] == ["quant_conv2d", "quant_conv2d", "quant_conv1d"]
    a = graph.node("g").attrs
    w = dense.g.weight.detach()
    # one scale per output channel over its flattened [in/groups, kh, kw] weights
    expected = dequantize_weight(quantize_weight(w.reshape(8, -1), a.bits, None, a.symmetric), a.bits, None,
                                 a.symmetric, 12).view_as(w)
    torch.testing.assert_close(model.g.dequantized(), expected, rtol=0, atol=0)
    assert model.state_dict()["g.scale"].shape == (8, 1)
    assert totals(summarize(graph))[1] == stored_bytes(model.state_dict())
    assert_targets_agree(tmp_path, graph, model)
    inputs = example_inputs(graph)
    for q, d in zip(outputs(model, inputs), outputs(dense, inputs), strict=True):
        assert float((q - d).norm() / d.norm()) < (0.2 if a.bits == 4 else 0.02)


@pytest.mark.parametrize("stage,message", [
    ("    quantize(int4, group=8) on conv2d\n", "group=8 has nothing to choose"),
    ("    quantize(int8, accuracy_level=4) on conv1d\n", "accuracy_level has nothing to choose"),
])
def test_quantize_options_a_convolution_cannot_take_are_located_errors(tmp_path, stage, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, stage, CONV), "small")
    assert info.value.code == "E0808" and message in info.value.message, info.value.render()
    assert info.value.span is not None and info.value.span.line in (4, 6)
