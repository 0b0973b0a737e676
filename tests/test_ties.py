"""`tie target = source`: one parameter under two state-dict keys, as GPT-2's checkpoint has its head and embedding.

What a tie must give: the generated module holds one tensor (the same Parameter object at both places),
`parameters()` and `specc summary` count it once, a checkpoint listing both keys loads strictly, a
training step updates the one tensor from both uses (as a hand-written model with one leaf would), and
the triton and onnx targets compute what torch does. Bad ties are located E0232 errors.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from specc.diagnostics import SpeccError
from specc.summary import summarize, totals
from targets import compile_graph, outputs_on_every_target, python_module

VOCAB, D = 7, 6
TIED = f"""block body(ids, vocab: int, d: int) {{
    wte = embedding(ids, vocab, d)
    return layernorm(wte) as ln_f
}}
model tied(vocab: int = {VOCAB}, d: int = {D}) {{
    input ids: i64[B, T]
    transformer = body(ids, vocab, d)
    output logits = linear(transformer, vocab, bias=false) as lm_head
    tie lm_head.weight = transformer.wte.weight
}}
"""
PARAMS = VOCAB * D + 2 * D  # the table once, and the layernorm's weight and bias


def _graph(tmp_path, text: str, name: str = "m"):
    spec = tmp_path / f"{name}.nnspec"
    spec.write_text(text)
    return compile_graph(spec)


def _error(tmp_path, text: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, text)
    return info.value


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(seed))


def _checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """What GPT2LMHeadModel.state_dict() looks like: the one table under both keys."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(VOCAB, D, generator=g)
    return {"transformer.wte.weight": table, "transformer.ln_f.weight": torch.randn(D, generator=g),
            "transformer.ln_f.bias": torch.randn(D, generator=g), "lm_head.weight": table}


def _reference(ids, table, weight, bias):
    h = F.layer_norm(F.embedding(ids, table), (D,), weight, bias, eps=1e-5)
    return F.linear(h, table)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return _graph(tmp_path_factory.mktemp("tied"), TIED, "tied")


@pytest.mark.parametrize("target", ["torch", "triton"])
def test_the_two_keys_are_one_parameter(graph, target):
    _, model = python_module(graph, target)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p.numel() for p in model.parameters()) == PARAMS
    assert "lm_head.weight" not in dict(model.named_parameters())
    state = model.state_dict()
    assert set(state) == set(_checkpoint())  # the checkpoint's keys, both of the table's among them
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()


def test_the_summary_counts_a_tied_parameter_once(graph, tmp_path):
    assert totals(summarize(graph))[0] == PARAMS
    spec = tmp_path / "tied.nnspec"
    spec.write_text(TIED)
    out = subprocess.run([sys.executable, "-m", "specc.cli", "summary", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    total = re.search(r"total\s*│[^│]*│[^│]*│\s*([\d,]+)\s*│", out.stdout)
    assert total and int(total.group(1).replace(",", "")) == PARAMS, out.stdout


def test_a_checkpoint_with_both_keys_loads_strictly_on_every_target(graph, tmp_path):
    state = _checkpoint()
    ids = _ids()
    want = _reference(ids, state["transformer.wte.weight"], state["transformer.ln_f.weight"],
                      state["transformer.ln_f.bias"])
    for target, (got,) in outputs_on_every_target(graph, [ids], state, tmp_path).items():
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m: f"{target}: {m}")


def _initializers(graph, weights=None) -> dict:
    import onnx
    from onnx import numpy_helper

    from specc.codegen import backends

    model = onnx.load_from_string(backends()["onnx"].emit(graph, weights=weights).data)
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_the_onnx_model_made_from_a_seed_is_tied_too(graph):
    """Without a checkpoint the ONNX weights come from the seeded torch module: head and table are equal."""
    tables = [w for w in _initializers(graph).values() if w.shape == (VOCAB, D)]
    assert tables and all((w == tables[0]).all() for w in tables)


def test_the_onnx_model_holds_a_tied_table_once(graph):
    tables = [name for name, w in _initializers(graph).items() if w.shape == (VOCAB, D)]
    assert len(tables) == 1, tables


def test_a_training_step_updates_the_one_table_from_both_uses(graph):
    state = _checkpoint(1)
    _, model = python_module(graph, "torch")
    model.load_state_dict(state, strict=True)
    ids, labels = _ids(2), _ids(3)
    lr = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss = F.cross_entropy(model(ids).reshape(-1, VOCAB), labels.reshape(-1))
    loss.backward()
    optimizer.step()

    # the same step by hand, on one leaf used by the embedding and the head
    table, weight, bias = (state[k].clone().requires_grad_() for k in
                           ("transformer.wte.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"))
    ref_loss = F.cross_entropy(_reference(ids, table, weight, bias).reshape(-1, VOCAB), labels.reshape(-1))
    ref_loss.backward()
    torch.testing.assert_close(loss.detach(), ref_loss.detach())
    assert model.lm_head.weight is model.transformer.wte.weight
    torch.testing.assert_close(model.transformer.wte.weight.detach(), (table - lr * table.grad).detach())
    torch.testing.assert_close(model.transformer.ln_f.weight.detach(), (weight - lr * weight.grad).detach())
    new_loss = F.cross_entropy(model(ids).reshape(-1, VOCAB), labels.reshape(-1))
    assert new_loss < loss


def test_a_head_tied_to_a_parameter_value(tmp_path):
    graph = _graph(tmp_path, f"""model m(vocab: int = {VOCAB}, d: int = {D}) {{
    input ids: i64[B, T]
    wte = parameter([vocab, d])
    output logits = linear(embedding(ids, weight=wte), vocab, bias=false) as lm_head
    tie lm_head.weight = wte
}}
""")
    _, model = python_module(graph, "torch")
    assert model.lm_head.weight is model.wte
    assert sum(p.numel() for p in model.parameters()) == totals(summarize(graph))[0] == VOCAB * D
    table = torch.randn(VOCAB, D, generator=torch.Generator().manual_seed(4))
    state = {"wte": table, "lm_head.weight": table}
    ids = _ids(5)
    for target, (got,) in outputs_on_every_target(graph, [ids], state, tmp_path).items():
        torch.testing.assert_close(got, F.embedding(ids, table) @ table.T, atol=1e-5, rtol=1e-5,
                                   msg=lambda m: f"{target}: {m}")


def test_ties_between_iterations_of_a_repeat(tmp_path):
    """Keys with an index segment are written as strings; the loop's ModuleList is indexed by int."""
    graph = _graph(tmp_path, """model m() {
    input x: f32[B, 4]
    output y = repeat 3 { linear(_, 4) as fc } (x) as layers
    tie "layers.1.fc.weight" = "layers.0.fc.weight"
    tie "layers.2.fc.weight" = "layers.0.fc.weight"
}
""")
    g = torch.Generator().manual_seed(6)
    w = torch.randn(4, 4, generator=g)
    biases = [torch.randn(4, generator=g) for _ in range(3)]
    state = {f"layers.{i}.fc.{k}": v for i in range(3) for k, v in (("weight", w), ("bias", biases[i]))}
    for target in ("torch", "triton"):
        _, model = python_module(graph, target)
        assert model.layers[2].fc.weight is model.layers[1].fc.weight is model.layers[0].fc.weight
        assert sum(p.numel() for p in model.parameters()) == 16 + 3 * 4
    assert totals(summarize(graph))[0] == 16 + 3 * 4
    x = torch.randn(2, 4, generator=g)
    want = x
    for b in biases:
        want = F.linear(want, w, b)
    for target, (got,) in outputs_on_every_target(graph, [x], state, tmp_path).items():
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m: f"{target}: {m}")


def test_a_tie_to_a_layer_named_like_an_index(tmp_path):
    graph = _graph(tmp_path, """block blk(x) {
    return linear(x, 4) as "0"
}
model m() {
    input x: f32[B, 4]
    output y = linear(blk(x) as "1", 4) as "0"
    tie "0.weight" = "1.0.weight"
}
""")
    _, model = python_module(graph, "torch")
    assert model["0"].weight is model["1"]["0"].weight


# ------------------------------------------------------------------------------------------- errors

ERRORS = """block body(ids, vocab: int, d: int) {
    wte = embedding(ids, vocab, d)
    return batchnorm(layernorm(wte) as ln_f) as bn
}
model tied(vocab: int = 6, d: int = 6) {
    input ids: i64[B, 6]
    transformer = body(ids, vocab, d)
    logits = linear(transformer, vocab, bias=false) as lm_head
    output out = linear(logits, vocab, bias=false) as other
%s
}
"""


@pytest.mark.parametrize("ties, line, col, words", [
    # an unknown key, with the close one
    (["tie lm_head.weight = transformer.wte.weigth"], 10, 26, ["`transformer.wte.weigth`", "not a parameter"]),
    (["tie lm_haed.weight = transformer.wte.weight"], 10, 9, ["`lm_haed.weight`", "not a parameter"]),
    (["tie lm_head.weight = transformer.ln_f.weight"], 10, 5, ["shapes differ", "[6, 6]", "[6]"]),
    (["tie transformer.bn.running_mean = transformer.bn.running_var"], 10, 9, ["buffer"]),
    (["tie lm_head.weight = transformer.bn.running_mean"], 10, 26, ["buffer"]),
    (["tie lm_head.weight = lm_head.weight"], 10, 5, ["tied to itself"]),
    (["tie lm_head.weight = transformer.wte.weight", "tie lm_head.weight = other.weight"], 11, 9, ["tied twice"]),
    (["tie other.weight = lm_head.weight", "tie lm_head.weight = transformer.wte.weight"], 10, 24,
     ["`lm_head.weight`", "itself tied"]),
])
def test_bad_ties_are_located_e0232(tmp_path, ties, line, col, words):
    err = _error(tmp_path, ERRORS % "\n".join(f"    {t}" for t in ties))
    assert err.code == "E0232"
    assert (err.span.line, err.span.col) == (line, col), err.render()
    for word in words:
        assert word in err.message, err.message


def test_an_unknown_key_suggests_the_close_one(tmp_path):
    err = _error(tmp_path, ERRORS % "    tie lm_head.weight = transformer.wte.weigth")
    assert err.help and "`transformer.wte.weight`" in err.help


def test_several_keys_tied_to_one_source_are_fine(tmp_path):
    graph = _graph(tmp_path, ERRORS % "    tie lm_head.weight = transformer.wte.weight\n"
                                      "    tie other.weight = transformer.wte.weight")
    _, model = python_module(graph, "torch")
    assert model.other.weight is model.lm_head.weight is model.transformer.wte.weight
    assert sum(p.numel() for p in model.parameters()) == totals(summarize(graph))[0] == 36 + 2 * 6 + 2 * 6


def test_a_tie_inside_a_block_is_e0211(tmp_path):
    err = _error(tmp_path, """block body(ids) {
    wte = embedding(ids, 6, 4)
    tie wte.weight = wte.weight
    return wte
}
model m() {
    input ids: i64[B, T]
    output y = body(ids)
}
""")
    assert err.code == "E0211" and (err.span.line, err.span.col) == (3, 5), err.render()
    assert any("called here" in n.message and n.span.line == 8 for n in err.notes)
