"""tensor_train on embedding tables (TT-Embedding) and convolutions: the factored layers on every target.

At a bond at least each cut's full TT rank the train reproduces the table exactly, also with a
prime vocabulary padded to balanced modes; the error falls as the bond grows; no target forms the
table; out-of-range ids fail as nn.Embedding's do.
"""

from __future__ import annotations

import pytest
import torch

from specc.compiler import compile_graph
from specc.summary import summarize
from specc.transforms import convert_weights
from specc.transforms.tensor_train import padded_modes, tt_weight
from targets import outputs_on_every_target, python_module, run_onnx
from specc.codegen import backends

BASE = """\
model emb(vocab: int = {vocab}, d: int = 24) {{
    input ids: i64[B, T]
    output y = embedding(ids, vocab, d)
}}
compress small = emb {{
    tensor_train(bond={bond}, cores={cores}) on embedding
}}
"""


def _converted(tmp_path, vocab: int, bond: int, cores: int = 2, tt_rank: int | None = None):
    """(dense module, compressed graph, converted state); with `tt_rank`, the dense table is the first
    `vocab` rows of a random train of that rank over the compressed layer's modes."""
    path = tmp_path / f"tte_{vocab}_{bond}_{cores}.nnspec"
    path.write_text(BASE.format(vocab=vocab, bond=bond, cores=cores))
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "emb"), "torch")
    graph = compile_graph(path, "small")
    if tt_rank is not None:
        a = graph.node("y").attrs
        bonds = [1] + [tt_rank] * (len(a.vocab_modes) - 1) + [1]
        train = [torch.randn(bonds[k], v, e, bonds[k + 1]) for k, (v, e) in enumerate(zip(a.vocab_modes, a.dim_modes))]
        with torch.no_grad():
            dense.y.weight.copy_(tt_weight(train)[:vocab])
    state = convert_weights(graph, dense.state_dict())
    return dense.eval(), graph, state


@pytest.mark.parametrize("vocab", [96, 97])  # 96 = 12 x 8 exactly; 97 is prime: padded to 10 x 10
def test_a_table_of_low_tt_rank_is_reproduced_on_every_target(tmp_path, vocab):
    # rank 2, and at most 3 once the padding rows are zeroed: a bond of 4 holds it exactly
    dense, graph, state = _converted(tmp_path, vocab, bond=4, tt_rank=2)
    assert graph.node("y").op == "tt_embedding"
    ids = torch.randint(0, vocab, (3, 7))
    ids[0, 0], ids[0, 1] = 0, vocab - 1
    with torch.no_grad():
        want = dense(ids)
    for target, (got,) in outputs_on_every_target(graph, [ids], state, tmp_path).items():
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=target)


def test_the_error_falls_as_the_bond_grows_and_the_train_is_smaller(tmp_path):
    ids = torch.arange(96).view(8, 12)
    errors, sizes = [], []
    for bond in (1, 2, 4, 8):
        dense, graph, state = _converted(tmp_path, 96, bond)
        _, model = python_module(graph, "torch")
        model.load_state_dict(state)
        with torch.no_grad():
            errors.append(float((model(ids) - dense(ids)).norm() / dense(ids).norm()))
        sizes.append(next(r.params for r in summarize(graph) if r.name == "y"))
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0], errors
    assert all(s < 96 * 24 for s in sizes), sizes


def test_padded_modes_are_balanced_and_cover_the_vocabulary():
    for size, count in ((97, 2), (50257, 3), (1000, 3), (7, 2)):
        factors = padded_modes(size, count)
        product = 1
        for f in factors:
            product *= f
        assert product >= size and max(factors) - min(factors) <= max(2, max(factors) // 4), (size, factors)


def test_out_of_range_ids_fail_on_torch_and_onnx(tmp_path):
    _, graph, state = _converted(tmp_path, 97, bond=4)
    _, model = python_module(graph, "torch")
    model.load_state_dict(state)
    with pytest.raises(IndexError):
        model(torch.tensor([[97]]))  # a padding row: not in the vocabulary
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    data = backends()["onnx"].emit(graph, weights=weights).data
    with pytest.raises(Exception, match="(?i)indices|out of bounds|index"):
        run_onnx(data, graph, [torch.tensor([[97]])])


def test_a_shared_table_is_kept_with_a_warning(tmp_path):
    path = tmp_path / "tied.nnspec"
    path.write_text("""\
model tied(vocab: int = 96, d: int = 24) {
    input ids: i64[B, T]
    wte = parameter([vocab, d])
    h = embedding(ids, weight=wte)
    output logits = matmul(h, transpose(wte, 0, 1))
}
compress small = tied {
    tensor_train(bond=4) on embedding
}
""")
    (plan,) = compile_graph(path, "small").plan
    assert plan.kept and plan.warning is not None and "weight=" in plan.warning.message


# ------------------------------------------------------------------ convolutions
CONV = """\
model net(c: int = 8) {{
    input x: f32[B, c, 10, 10]
    h = relu(conv2d(x, 16, 3, padding=1))
    g = conv2d(h, 16, 3, groups=2)
    output y = conv1d(reshape(g, [B, 16, 64]), 8, 4, stride=2, bias=false)
}}
compress small = net {{
    tensor_train(bond={bond}, cores=2) on conv2d
    tensor_train(bond={bond}, cores=2) on conv1d
}}
"""


def test_weights_of_low_tt_rank_are_reproduced_on_every_target(tmp_path):
    path = tmp_path / "conv.nnspec"
    path.write_text(CONV.format(bond=2))
    torch.manual_seed(0)
    _, dense = python_module(compile_graph(path, "net"), "torch")
    graph = compile_graph(path, "small")
    assert {graph.node(p.layer).op for p in graph.plan} == {"tt_conv1d", "tt_conv2d"}, [p.note for p in graph.plan]
    state = dense.state_dict()
    for plan in graph.plan:  # each weight a random train of rank 2 over its compressed layer's modes
        a = graph.node(plan.layer).attrs
        (o1, o2), (i1, i2) = a.out_modes, a.in_modes
        train = [0.3 * torch.randn(1, o1, i1, 2), 0.3 * torch.randn(2, o2, i2, 1)]
        state[plan.layer + ".weight"] = tt_weight(train).reshape(state[plan.layer + ".weight"].shape)
    dense.load_state_dict(state)
    converted = convert_weights(graph, state)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        want = dense.eval()(x)
    for target, (got,) in outputs_on_every_target(graph, [x], converted, tmp_path).items():
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=target)


def test_a_small_bond_stores_less_and_trains(tmp_path):
    path = tmp_path / "conv.nnspec"
    path.write_text(CONV.format(bond=2))
    graph = compile_graph(path, "small")
    rows = {r.name: r.params for r in summarize(graph)}
    dense_rows = {r.name: r.params for r in summarize(compile_graph(path, "net"))}
    assert sum(rows.values()) < sum(dense_rows.values()), (rows, dense_rows)
    _, model = python_module(graph, "torch")
    loss = model(torch.randn(2, 8, 10, 10)).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_train_of_mismatched_lengths_is_a_located_error_naming_the_arguments(tmp_path):
    path = tmp_path / "bad.nnspec"
    path.write_text("model m() {\n    input x: f32[B, 8]\n    output y = tt_linear(x, 4, [8], [4], [])\n}\n")
    from specc.diagnostics import SpeccError
    with pytest.raises(SpeccError) as info:
        compile_graph(path)
    assert info.value.message == ("invalid arguments for tt_linear(): a train of d >= 2 cores needs d in_modes, "
                                  "d out_modes and d-1 ranks, got 1, 1 and 0")
    assert info.value.span.line == 3
