"""Shape inference, errors, parameters, flops and semantics of rmsnorm, embedding, attention and moe.

The op matrix (tests/op_samples/sequence.py) checks that the targets agree with
each other; here the torch module is also checked against straightforward
re-implementations of each op's definition, since agreement alone would not
catch a shared misunderstanding (head layout, mask direction, gate renormalization).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from specc import ops
from specc.codegen import backends
from specc.diagnostics import SpeccError
from specc.ir import Graph
from targets import compile_graph, python_module, run_onnx


def _compile(tmp_path, expr: str, *inputs: str) -> Graph:
    lines = ["model m() {"] + [f"    input {decl}" for decl in inputs] + [f"    output y = {expr}", "}"]
    spec = tmp_path / "m.nnspec"
    spec.write_text("\n".join(lines) + "\n")
    return compile_graph(spec)


def _output(graph: Graph):
    return graph.node(graph.outputs["y"])


def _error(tmp_path, expr: str, *inputs: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        _compile(tmp_path, expr, *inputs)
    return info.value


def _onnx(graph: Graph, model: torch.nn.Module, tmp_path, *inputs: torch.Tensor) -> torch.Tensor:
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    return torch.from_numpy(run_onnx(backends()["onnx"].emit(graph, weights=weights).data, graph, list(inputs))[0])


@pytest.mark.parametrize("expr,inputs,expected", [
    ("rmsnorm(x)", ("x: f32[B, 8]",), "f32[B, 8]"),
    ("rmsnorm(x, affine=false)", ("x: f64[B, T, 4]",), "f64[B, T, 4]"),
    ("embedding(ids, 10, 8)", ("ids: i64[B, T]",), "f32[B, T, 8]"),
    ("embedding(ids, 10, 3)", ("ids: i32[B]",), "f32[B, 3]"),
    ("embedding(ids, 10, 3)", ("ids: i64[]",), "f32[3]"),
    ("attention(x, 4, causal=true)", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("attention(x, 1)", ("x: f32[2, 2*T, 6]",), "f32[2, 2*T, 6]"),
    ("moe(x, 4, 2, 16)", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("moe(x, 4, 4, 16)", ("x: f32[8]",), "f32[8]"),
    ("moe(x, 4, 2, 16, expert=\"swiglu\")", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("moe(x, 4, 2, 16).router_logits", ("x: f32[B, T, 8]",), "f32[B, T, 4]"),
    ("moe(x, 3, 1, 4, expert=\"swiglu\", logits=l).router_logits", ("x: f64[B, 8]", "l: f64[B, 3]"), "f64[B, 3]"),
])
def test_inferred_types(tmp_path, expr, inputs, expected):
    assert str(_output(_compile(tmp_path, expr, *inputs)).type) == expected


@pytest.mark.parametrize("expr,inputs,code,parts", [
    ("rmsnorm(x)", ("x: i64[B, 8]",), "E0403", ["floating-point", "`x` (i64[B, 8])"]),
    ("rmsnorm(x)", ("x: f32[B, T]",), "E0401", ["normalized dim (last) must be a static size", "`x` (f32[B, T])"]),
    ("rmsnorm(x)", ("x: f32[]",), "E0401", ["at least one dim", "`x` (f32[])"]),
    ("embedding(x, 10, 4)", ("x: f32[B, T]",), "E0403", ["integer ids (i64 or i32)", "`x` (f32[B, T])"]),
    ("embedding(ids, 10, 4)", ("ids: bool[B]",), "E0403", ["`ids` (bool[B])"]),
    ("attention(x, 3)", ("x: f32[B, T, 8]",), "E0402", ["heads=3 does not divide", "dim 8", "`x` (f32[B, T, 8])"]),
    ("attention(x, 2)", ("x: f32[B, 8]",), "E0401", ["[batch, sequence, features]", "`x` (f32[B, 8]) of rank 2"]),
    ("attention(x, 2)", ("x: f32[B, 8, T]",), "E0401", ["feature dim (last) must be a static size",
                                                         "`x` (f32[B, 8, T])"]),
    ("attention(x, 2)", ("x: i32[B, T, 8]",), "E0403", ["floating-point", "`x` (i32[B, T, 8])"]),
    ("moe(x, 2, 3, 8)", ("x: f32[B, 8]",), "E0401", ["top_k=3 is more than experts=2"]),
    ("moe(x, 4, 2, 8)", ("x: f32[B, T]",), "E0401", ["feature dim (last) must be a static size", "`x` (f32[B, T])"]),
    ("moe(x, 4, 2, 8)", ("x: i64[B, 8]",), "E0403", ["floating-point", "`x` (i64[B, 8])"]),
    ("moe(x, 4, 2, 8, logits=l)", ("x: f32[B, 8]", "l: f32[B, 3]"), "E0402",
     ["router logits `l` (f32[B, 3]) must be shaped as `x` (f32[B, 8])", "experts (4)"]),
    ("moe(x, 4, 2, 8, expert=\"swiglu\", logits=l)", ("x: f32[B, 8]", "l: f64[B, 4]"), "E0403",
     ["dtype mismatch", "`l` (f64[B, 4])"]),
])
def test_errors_name_operands_and_shapes(tmp_path, expr, inputs, code, parts):
    err = _error(tmp_path, expr, *inputs)
    assert err.code == code, err.message
    for part in parts:
        assert part in err.message, err.message


@pytest.mark.parametrize("expr,attr", [("attention(x, 0)", "heads"), ("moe(x, 0, 1, 4)", "experts"),
                                       ("moe(x, 2, 1, hidden=-1)", "hidden"), ("embedding(ids, 10, 0)", "dim"),
                                       ("rmsnorm(x, eps=0)", "eps"), ("moe(x, 2, 1, 4, expert=\"relu\")", "expert")])
def test_attributes_out_of_range_are_rejected(tmp_path, expr, attr):
    err = _error(tmp_path, expr, "x: f32[B, T, 8]", "ids: i64[B]")
    assert err.code == "E0302" and f"`{attr}`" in err.message, err.message


@pytest.mark.parametrize("expr,inputs", [
    ("rmsnorm(x)", ("x: f32[B, 8]",)),
    ("rmsnorm(x, affine=false)", ("x: f32[B, 8]",)),
    ("embedding(ids, 10, 8)", ("ids: i64[B, T]",)),
    ("attention(x, 2)", ("x: f32[B, T, 8]",)),
    ("attention(x, 2, bias=false)", ("x: f32[B, T, 8]",)),
    ("moe(x, 4, 2, 16)", ("x: f32[B, T, 8]",)),
    ("moe(x, 4, 2, 16, logits=l)", ("x: f32[B, T, 8]", "l: f32[B, T, 4]")),
    ("moe(x, 4, 2, 16, expert=\"swiglu\")", ("x: f32[B, T, 8]",)),
    ("moe(x, 4, 2, 16, expert=\"swiglu\", logits=l)", ("x: f32[B, T, 8]", "l: f32[B, T, 4]")),
])
def test_declared_params_are_the_torch_state_dict(tmp_path, expr, inputs):
    """Same keys, shapes and order: the ONNX initializers and parameter counts depend on it."""
    graph = _compile(tmp_path, expr, *inputs)
    node = _output(graph)
    _, model = python_module(graph, "torch")
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert state == {f"{node.name}.{p}": spec.shape for p, spec in node.params.items()}
    assert list(state) == [f"{node.name}.{p}" for p in node.params]


def test_param_shapes(tmp_path):
    graph = _compile(tmp_path, "moe(x, 4, 2, 16)", "x: f32[B, 8]")
    assert {p: s.shape for p, s in _output(graph).params.items()} == {
        "router": (4, 8), "w1": (4, 16, 8), "b1": (4, 16), "w2": (4, 8, 16), "b2": (4, 8)}
    graph = _compile(tmp_path, "moe(x, 4, 2, 16, expert=\"swiglu\")", "x: f32[B, 8]")
    assert {p: s.shape for p, s in _output(graph).params.items()} == {
        "gate.weight": (4, 8), "experts.gate_up_proj": (4, 32, 8), "experts.down_proj": (4, 8, 16)}
    graph = _compile(tmp_path, "moe(x, 4, 2, 16, expert=\"swiglu\", logits=l)", "x: f32[B, 8]", "l: f32[B, 4]")
    assert {p: s.shape for p, s in _output(graph).params.items()} == {
        "gate_up_proj": (4, 32, 8), "down_proj": (4, 8, 16)}
    graph = _compile(tmp_path, "attention(x, 2)", "x: f32[B, T, 8]")
    assert {p: s.shape for p, s in _output(graph).params.items()} == {
        "qkv.weight": (24, 8), "qkv.bias": (24,), "out.weight": (8, 8), "out.bias": (8,)}
    graph = _compile(tmp_path, "embedding(ids, 10, 8)", "ids: i32[B]")
    assert _output(graph).params["weight"].dtype == "f32"


def _flops(graph: Graph) -> object:
    node = _output(graph)
    return ops.get(node.op).flops(ops.InferContext(graph, node))


@pytest.mark.parametrize("expr,inputs,expected", [
    ("rmsnorm(x)", ("x: f32[B, 8]",), "32*B"),
    ("embedding(ids, 10, 8)", ("ids: i64[B, T]",), "0"),
    # 2*B*T*8*(3*8 + 8) for the projections, 2 * 2*B*T*T*8 for q k^T and weights @ v
    ("attention(x, 2)", ("x: f32[B, T, 8]",), "32*B*T*T + 512*B*T"),
    # per token: router 2*8*4, two experts of 2*(2*8*16)
    ("moe(x, 4, 2, 16)", ("x: f32[B, T, 8]",), "1088*B*T"),
    # per token: router 2*8*4, two swiglu experts of 3*(2*8*16); no router when the logits are given
    ("moe(x, 4, 2, 16, expert=\"swiglu\")", ("x: f32[B, T, 8]",), "1600*B*T"),
    ("moe(x, 4, 2, 16, expert=\"swiglu\", logits=l)", ("x: f32[B, T, 8]", "l: f32[B, T, 4]"), "1536*B*T"),
])
def test_flops(tmp_path, expr, inputs, expected):
    assert str(_flops(_compile(tmp_path, expr, *inputs))) == expected


# --------------------------------------------------------------------- semantics
def test_rmsnorm_matches_its_definition(tmp_path):
    graph = _compile(tmp_path, "rmsnorm(x, eps=1e-2)", "x: f32[B, T, 8]")
    _, model = python_module(graph, "torch")
    with torch.no_grad():
        model.y.weight.uniform_(0.5, 2.0)
    x = torch.randn(3, 5, 8)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-2) * model.y.weight
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(_onnx(graph, model, tmp_path, x), expected.detach())


def test_embedding_takes_i32_ids_on_every_target(tmp_path):
    """The op matrix feeds only i64; i32 ids must give the same rows."""
    graph = _compile(tmp_path, "embedding(ids, 10, 4)", "ids: i32[B, T]")
    ids = torch.randint(0, 10, (3, 5), dtype=torch.int32)
    _, model = python_module(graph, "torch")
    expected = model.y.weight[ids.long()]
    _, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(model.state_dict())
    for m in (model, triton_model):
        torch.testing.assert_close(m(ids), expected)
    torch.testing.assert_close(_onnx(graph, model, tmp_path, ids), expected.detach())


def _reference_attention(x, model, heads, causal):
    """Attention written out: per head, softmax(q k^T / sqrt(hd) [+ causal mask]) v."""
    b, t, d = x.shape
    hd = d // heads
    q, k, v = model.qkv(x).split(d, dim=-1)
    out = []
    for h in range(heads):
        part = slice(h * hd, (h + 1) * hd)
        scores = q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(hd)
        if causal:
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        out.append(scores.softmax(-1) @ v[..., part])
    return model.out(torch.cat(out, dim=-1))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_its_definition_for_any_length(tmp_path, causal):
    graph = _compile(tmp_path, f"attention(x, 2, causal={'true' if causal else 'false'})", "x: f32[B, T, 8]")
    _, model = python_module(graph, "torch")
    model.eval()
    for t in (1, 4, 9):  # the ONNX mask is built from the run-time T
        x = torch.randn(2, t, 8)
        with torch.no_grad():
            expected = _reference_attention(x, model.y, 2, causal)
            torch.testing.assert_close(model(x), expected)
        torch.testing.assert_close(_onnx(graph, model, tmp_path, x), expected, rtol=1e-5, atol=1e-5)


def test_causal_attention_ignores_the_future(tmp_path):
    graph = _compile(tmp_path, "attention(x, 2, causal=true)", "x: f32[B, T, 8]")
    _, model = python_module(graph, "torch")
    x = torch.randn(1, 6, 8)
    changed = x.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def _reference_moe(x, moe, top_k):
    """Token by token: the top_k experts' MLP outputs, weighted by renormalized router probabilities."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(flat)
    for i, token in enumerate(flat):
        probs = (moe.router @ token).softmax(-1)
        top, index = probs.topk(top_k)
        for p, e in zip(top / top.sum(), index.tolist()):
            hidden = F.gelu(moe.w1[e] @ token + moe.b1[e])
            out[i] += p * (moe.w2[e] @ hidden + moe.b2[e])
    return out.reshape(x.shape)


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_moe_matches_its_definition(tmp_path, top_k):
    graph = _compile(tmp_path, f"moe(x, 4, {top_k}, 6)", "x: f32[B, T, 8]")
    _, model = python_module(graph, "torch")
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        expected = _reference_moe(x, model.y, top_k)
        torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(_onnx(graph, model, tmp_path, x), expected)


def _reference_swiglu_moe(x, logits, gate_up, down, top_k):
    """Token by token: the top_k experts' down(silu(gate) * up), weighted by renormalized probabilities."""
    flat, flat_logits = x.reshape(-1, x.shape[-1]), logits.reshape(-1, logits.shape[-1])
    out = torch.zeros_like(flat)
    for i, token in enumerate(flat):
        top, index = flat_logits[i].softmax(-1).topk(top_k)
        for p, e in zip(top / top.sum(), index.tolist()):
            gate, up = (gate_up[e] @ token).chunk(2)
            out[i] += p * (down[e] @ (F.silu(gate) * up))
    return out.reshape(x.shape)


@pytest.mark.parametrize("routed", [False, True])
def test_swiglu_moe_matches_its_definition_and_returns_the_router_logits(tmp_path, routed):
    spec = tmp_path / "s.nnspec"
    logits = ", logits=l" if routed else ""
    spec.write_text(f"""model s() {{
    input x: f32[B, T, 8]
    input l: f32[B, T, 4]
    r = moe(x, 4, 2, 6, expert="swiglu"{logits})
    output y = r
    output z = r.router_logits
}}
""")
    graph = compile_graph(spec)
    _, model = python_module(graph, "torch")
    x, l = torch.randn(3, 5, 8), torch.randn(3, 5, 4)
    layer = model.r
    experts = layer if routed else layer.experts
    with torch.no_grad():
        want_logits = l if routed else x @ layer.gate.weight.t()
        expected = _reference_swiglu_moe(x, want_logits, experts.gate_up_proj, experts.down_proj, 2)
        y, z = model(x, l)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(z, want_logits)


def test_moe_initializes_like_linear_layers(tmp_path):
    graph = _compile(tmp_path, "moe(x, 4, 2, 100)", "x: f32[B, 16]")
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    for name, fan_in in (("router", 16), ("w1", 16), ("b1", 16), ("w2", 100), ("b2", 100)):
        p = getattr(model.y, name)
        bound = fan_in ** -0.5
        assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound, name


def test_sequence_ops_compile_fullgraph_and_train(tmp_path):
    spec = tmp_path / "lm.nnspec"
    spec.write_text("""model lm(vocab: int = 11, d: int = 8) {
    input ids: i64[B, T]
    h = embedding(ids, vocab, d)
    h = h + attention(rmsnorm(h), heads=2, causal=true)
    h = h + moe(rmsnorm(h, affine=false), 4, 2, 16)
    output logits = linear(h, vocab)
}
""")
    graph = compile_graph(spec)
    _, model = python_module(graph, "torch")
    ids = torch.randint(0, 11, (3, 5))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(ids), model(ids))
    model(ids).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
