"""Parameters as values: `parameter(...)` tensors, buffers, and weights tied through `embedding(ids, weight=w)`.

A GPT-2-like model whose head is its embedding table must own that table once (one tensor, counted
once, trained from both uses, one ONNX initializer); each init must give the numbers it names; bad
shapes and inits are located errors.
"""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn.functional as F

from specc.codegen import backends
from specc.diagnostics import SpeccError
from specc.summary import summarize, totals
from targets import compile_graph, python_module, run_onnx

VOCAB, D = 11, 8
TIED = f"""model tied(vocab: int = {VOCAB}, d: int = {D}) {{
    input ids: i64[B, T]
    wte = parameter([vocab, d])
    h = embedding(ids, weight=wte)
    h = h + linear(h, d)
    output logits = matmul(h, transpose(wte, 0, 1))
}}
"""


def _graph(tmp_path, text: str, name: str = "m"):
    spec = tmp_path / f"{name}.nnspec"
    spec.write_text(text)
    return compile_graph(spec)


def _error(tmp_path, body: str, inputs: str = "x: f32[B, 8]") -> SpeccError:
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, f"model m(d: int = 4) {{\n    input {inputs}\n{body}\n}}\n")
    return info.value


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tied(tmp_path):
    graph = _graph(tmp_path, TIED, "tied")
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    return graph, model


def test_a_tied_table_is_one_parameter_counted_once(tied):
    graph, model = tied
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["wte"] == (VOCAB, D)
    assert list(shapes.values()).count((VOCAB, D)) == 1, shapes  # no second table for the embedding or head
    assert "wte" in model.state_dict()
    count = sum(p.numel() for p in model.parameters())
    assert count == VOCAB * D + D * D + D
    assert totals(summarize(graph))[0] == count


def test_gradients_reach_the_table_from_both_uses(tied):
    graph, model = tied
    ids = _ids()
    model(ids).square().sum().backward()
    # the same computation with the two uses of the table as separate leaves: their gradients add up
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    (linear,) = [k[:-len(".weight")] for k in weights if k.endswith(".weight")]
    table, head = (weights["wte"].clone().requires_grad_() for _ in range(2))
    h = F.embedding(ids, table)
    h = h + F.linear(h, weights[f"{linear}.weight"], weights[f"{linear}.bias"])
    (h @ head.T).square().sum().backward()
    assert table.grad.abs().sum() > 0 and head.grad.abs().sum() > 0
    torch.testing.assert_close(model.wte.grad, table.grad + head.grad)


def test_a_training_step_lowers_the_loss(tied):
    _, model = tied
    ids, targets = _ids(1), _ids(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(ids).reshape(-1, VOCAB), targets.reshape(-1))

    before = loss()
    before.backward()
    optimizer.step()
    assert loss().item() < before.item()


def test_targets_agree_and_onnx_stores_the_table_once(tied, tmp_path):
    graph, model = tied
    ids = _ids()
    with torch.no_grad():
        expected = model(ids)
        _, triton_model = python_module(graph, "triton")
        triton_model.load_state_dict(model.state_dict())
        torch.testing.assert_close(triton_model(ids), expected, rtol=1e-5, atol=1e-5)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    data = backends()["onnx"].emit(graph, weights=weights).data
    got = torch.from_numpy(run_onnx(data, graph, [ids])[0])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    tables = [i for i in onnx.load_from_string(data).graph.initializer if list(i.dims) == [VOCAB, D]]
    assert len(tables) == 1


def test_a_buffer_is_state_but_not_a_parameter(tmp_path):
    graph = _graph(tmp_path, "model m() {\n    input x: f32[B, 8]\n"
                             "    output y = x * parameter([8], init=\"ones\", trainable=false) + parameter([8])\n}\n")
    _, model = python_module(graph, "torch")
    buffers = [n.name for n in graph.nodes() if n.op == "parameter" and not n.attrs.trainable]
    assert buffers and set(buffers) <= set(model.state_dict()) and set(buffers) == {n for n, _ in model.named_buffers()}
    assert not set(buffers) & {n for n, _ in model.named_parameters()}
    assert totals(summarize(graph))[0] == sum(p.numel() for p in model.parameters()) == 8


@pytest.mark.parametrize("init,check", [
    ('init="zeros"', lambda t: bool((t == 0).all())),
    ('init="ones"', lambda t: bool((t == 1).all())),
    ("", lambda t: abs(t.mean().item()) < 0.001 and abs(t.std().item() - 0.02) < 0.001),
    ("mean=3.0, std=0.5", lambda t: abs(t.mean().item() - 3.0) < 0.01 and abs(t.std().item() - 0.5) < 0.01),
    ('init="uniform", low=-1.0, high=3.0',
     lambda t: t.min() >= -1 and t.max() < 3 and abs(t.mean().item() - 1.0) < 0.02 and t.max() - t.min() > 3.99),
])
def test_each_init_gives_its_numbers(tmp_path, init, check):
    call = f"parameter([200, 500]{', ' + init if init else ''})"
    graph = _graph(tmp_path, f"model m() {{\n    input x: f32[2]\n    output p = {call}\n}}\n")
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    assert check(model.p.detach())


@pytest.mark.parametrize("body,at,parts", [
    ("parameter([B, 8])", "[B, 8]", ["`shape`", "`B` is symbolic", "compile time"]),
    ("parameter([0, 8])", "[0, 8]", ["`shape`", "positive ints"]),
    ("parameter(8)", "8", ["`shape`", "list of dims"]),
    ('parameter([8], init="zeros", std=1.0)', "std", ["`std`", 'init="normal" only']),
    ("parameter([8], low=0.0)", "low", ["`low`", 'init="uniform" only']),
    ('parameter([8], init="uniform", low=1.0, high=1.0)', "high", ["low < high"]),
    ("parameter([8], std=-0.1)", "std", ["std must be positive"]),
    ('parameter([8], init="xavier")', "init", ["`init`", "zeros"]),
    ("parameter([8], trainable=1)", "trainable", ["`trainable`"]),
])
def test_bad_parameters_are_located_errors(tmp_path, body, at, parts):
    """Each error points at the argument at fault (`at`: where its text starts)."""
    line = f"    output y = x + {body}"
    err = _error(tmp_path, line)
    assert (err.code, err.span.line, err.span.col) == ("E0302", 3, line.index(at, line.index("(")) + 1), err.message
    for part in parts:
        assert part in err.message, err.message


@pytest.mark.parametrize("body,code,parts", [
    ("    output y = embedding(ids, 12, weight=parameter([10, 4]))", "E0402", ["vocab=12", "f32[10, 4]"]),
    ("    output y = embedding(ids, dim=5, weight=parameter([10, 4]))", "E0402", ["dim=5", "f32[10, 4]"]),
    ("    output y = embedding(ids, weight=parameter([10]))", "E0402", ["[vocab, dim]", "f32[10]"]),
    ("    output y = embedding(ids, 10)", "E0303", ["`vocab` and `dim`", "weight="]),
    ("    output y = embedding(ids, weight=ids)", "E0402", ["[vocab, dim]", "`ids` (i64[B, T])"]),
])
def test_bad_tied_embeddings_are_located_errors(tmp_path, body, code, parts):
    err = _error(tmp_path, body, "ids: i64[B, T]")
    assert (err.code, err.span.line) == (code, 3), err.message
    for part in parts:
        assert part in err.message, err.message


def test_vit_style_class_token_and_positions(tmp_path):
    """ViT's free parameters: a zero class token expanded over the batch and prepended, positions added."""
    graph = _graph(tmp_path, """model vit_tokens(n: int = 4, d: int = 8) {
    input patches: f32[2, n, d]
    cls = parameter([1, 1, d], init="zeros")
    pos = parameter([1, n + 1, d])
    output tokens = concat([expand(cls, [2, -1, -1]), patches], dim=1) + pos
}
""", "vit_tokens")
    _, model = python_module(graph, "torch")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {"cls": (1, 1, 8), "pos": (1, 5, 8)}
    with torch.no_grad():
        model.cls.fill_(0.5)
    patches = torch.randn(2, 4, 8)
    expected = torch.cat([model.cls.expand(2, -1, -1), patches], dim=1) + model.pos
    torch.testing.assert_close(model(patches), expected)
