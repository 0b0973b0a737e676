"""`expand` to a symbolic size: ViT's class token grows to the batch, `expand(cls, [B, -1, -1])`.

The size is known only at run time, so each target reads it from the model input that has the symbol;
the same generated code must then serve any batch size, in torch, triton and ONNX (a dynamic batch dim)
alike. A symbol that no input has cannot be read at run time: a located error naming it.
"""

from __future__ import annotations

import onnx
import pytest
import torch

from specc.codegen import backends
from specc.diagnostics import SpeccError
from targets import compile_graph, python_module, run_onnx

VIT = """model vit_tokens(d: int = 8) {
    input x: f32[B, 4, d]
    cls = parameter([1, 1, d], init="zeros")
    output tokens = concat([expand(cls, [B, -1, -1]), x], dim=1)
}
"""


def _graph(tmp_path, text: str):
    spec = tmp_path / "m.nnspec"
    spec.write_text(text)
    return compile_graph(spec)


def test_the_class_token_grows_to_the_batch_on_every_target(tmp_path):
    graph = _graph(tmp_path, VIT)
    assert str(graph.node(graph.outputs["tokens"]).type) == "f32[B, 5, 8]"
    _, reference = python_module(graph, "torch")
    cls = torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(0))
    reference.load_state_dict({"cls": cls})  # not the zeros init: each row must be the token's own values
    _, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(reference.state_dict())
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    model = onnx.load_from_string(backends()["onnx"].emit(graph, weights=weights).data)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"
    for batch in (2, 5):
        x = torch.randn(batch, 4, 8, generator=torch.Generator().manual_seed(batch))
        expected = torch.cat([cls.expand(batch, 1, 8), x], dim=1)
        with torch.no_grad():
            torch.testing.assert_close(reference(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(triton_model(x), expected, rtol=0, atol=0)
        (got,) = run_onnx(model.SerializeToString(), graph, [x])
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=0)


def test_a_symbol_no_input_has_is_a_located_error(tmp_path):
    text = VIT.replace("[B, -1, -1]", "[N, -1, -1]")
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, text)
    err = info.value
    assert err.code == "E0405"
    assert "symbolic size N" in err.message and "no model input has a dim N" in err.message
    line = text.splitlines()[3]
    assert (err.span.line, err.span.col) == (4, line.index("expand(") + 1)


def test_a_static_dim_still_cannot_grow(tmp_path):
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, "model m() {\n    input x: f32[B, 2, 8]\n    output y = expand(x, [B, B, -1])\n}\n")
    assert info.value.code == "E0405" and "from 2 to B" in info.value.message


ARANGE = """block pos(ids: i64[B, T], d: int) {
    return embedding(ids, 50, d) + embedding(arange(T), 16, d) as wpe
}
model m() {
    input tokens: i64[N, L]
    h = pos(tokens, 8)
    output y = h
    output p = arange(L, dtype="f32")
}
"""


def test_arange_of_a_symbolic_dim_counts_the_positions_on_every_target(tmp_path):
    """`arange(T)` of a dim a typed block parameter bound, and `arange(L)` of a model input's dim: the
    length is read at run time from the tensor that has it, in torch, triton and onnx alike."""
    from targets import outputs_on_every_target

    graph = _graph(tmp_path, ARANGE)
    tokens = torch.randint(0, 50, (2, 7))
    state = {"h.out_embedding.weight": torch.randn(50, 8), "h.wpe.weight": torch.randn(16, 8)}
    _, model = python_module(graph, "torch")
    assert set(model.state_dict()) == set(state)
    want_y = state["h.out_embedding.weight"][tokens] + state["h.wpe.weight"][torch.arange(7)]
    for target, (y, p) in outputs_on_every_target(graph, [tokens], state, tmp_path).items():
        torch.testing.assert_close(y, want_y, msg=lambda m: f"{target}: {m}")
        torch.testing.assert_close(p, torch.arange(7, dtype=torch.float32), msg=lambda m: f"{target}: {m}")


@pytest.mark.parametrize("expr, words", [("arange(1, L)", "counts positions"), ("arange(Q)", "undefined name")])
def test_a_symbolic_arange_that_cannot_be_read_is_an_error(tmp_path, expr, words):
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, f"model m() {{\n    input x: f32[N, L]\n    output y = {expr}\n}}\n")
    assert words in str(info.value) and info.value.span.line == 3
