"""The compression transforms beyond lowrank: quantize, sparsity, prune, codebook, tensor_train, merge_experts.

Exact cases, error that falls as the budget grows, SQNR bounds, the mixed-bit
allocator against brute force, all targets on converted weights, and the issue's
bar measured with specc.summary on the example specs.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from specc.codegen import backends
from specc.compiler import compile_graph, load_program
from specc.diagnostics import SpeccError
from specc.ops.tt_linear import TTLinearAttrs
from specc.summary import summarize, totals
from specc.transforms import Transform, convert_weights
from specc.transforms._layers import sqnr_db
from specc.transforms.codebook import kmeans
from specc.transforms.quantize import allocate_bits, dequantize_weight, quantize_weight
from specc.transforms.tensor_train import modes, tt_ranks, tt_svd, tt_weight
from targets import ROOT, as_tuple, example_inputs, python_module, run_onnx

BASE = """\
model net(d: int = 32) {
    input x: f32[B, d]
    h = relu(linear(x, 48))
    output logits = linear(h, 12)
}
"""
HAS_ALLOCATE = "allocate" in Transform.__dataclass_fields__


def compressed(tmp_path: Path, stages: str, base: str = BASE, name: str = "c") -> Path:
    path = tmp_path / f"{name}.nnspec"
    path.write_text(base + "compress small = " + base.split()[1].split("(")[0] + " {\n" + stages + "}\n")
    return path


def convert(path: Path, small: str = "small", seed: int = 0, dense_hook=None):
    """(dense module, compressed graph, compressed module with converted weights) for a spec's base model."""
    graph = compile_graph(path, small)
    base = load_program(path)[1].definitions[graph.base_name]  # maybe imported from another file
    torch.manual_seed(seed)
    _, dense = python_module(compile_graph(base.span.source.path, graph.base_name), "torch")
    if dense_hook is not None:
        with torch.no_grad():
            dense_hook(dense)
    state = convert_weights(graph, dense.state_dict())
    _, model = python_module(graph, "torch")
    model.load_state_dict(state)  # strict: exactly the compressed model's keys and shapes
    return dense.eval(), graph, model.eval()


def outputs(model, inputs):
    with torch.no_grad():
        return as_tuple(model(*inputs))


# ------------------------------------------------------------------ exact cases
def test_every_2_4_group_keeps_exactly_its_two_largest_weights():
    dense, graph, model = convert(ROOT / "specs" / "mlp_sparse.nnspec", "mlp_sparse")
    for name in ("h_linear", "logits"):
        original = getattr(dense, name).weight.detach().view(-1, 4)
        sparse = getattr(model, name).dense_weight().detach().view(-1, 4)
        assert ((sparse == 0).sum(-1) == 2).all(), name
        kept = original.abs().topk(2, dim=-1).indices
        assert torch.equal(sparse.gather(-1, kept), original.gather(-1, kept)), name
    # the compressed layers store exactly half of the weights (plus the biases)
    rows = {r.name: r for r in summarize(graph)}
    assert rows["h_linear"].params == 256 * 784 // 2 + 256 and rows["logits"].params == 10 * 256 // 2 + 10


def test_learned_masks_sample_n_of_m_in_training_and_freeze_to_nm_linear(tmp_path):
    learn = "    sparsity(pattern=2:4, learnable=true) on linear\n"
    _, _, learner = convert(compressed(tmp_path, learn, name="learn"))
    layer = learner.h_linear
    layer.train()
    mask = layer.mask()
    assert ((mask.view(-1, 4).sum(-1) == 2).all())
    mask.sum().backward()  # straight-through: the sampled mask's gradient reaches the logits
    assert layer.logits.grad is not None and layer.logits.grad.abs().sum() > 0
    layer.eval()  # inference: the argmax masks, which start as the magnitude masks
    _, _, frozen = convert(compressed(tmp_path, learn + "    sparsity(pattern=2:4) on nm_mask_linear\n", name="frozen"))
    _, _, magnitude = convert(compressed(tmp_path, "    sparsity(pattern=2:4) on linear\n", name="magnitude"))
    x = torch.randn(4, 32)
    torch.testing.assert_close(outputs(learner, [x]), outputs(frozen, [x]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outputs(frozen, [x]), outputs(magnitude, [x]), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_prune_zeroes_exactly_the_amount(tmp_path, method):
    dense, _, model = convert(compressed(tmp_path, f"    prune(amount=0.25, method={method}) on \"h_linear\"\n"))
    weight = model.h_linear.weight.detach()
    mask = weight != 0  # the zeros are the mask: none is stored
    assert set(model.h_linear.state_dict()) == {"weight", "bias"}
    assert int((~mask).sum()) == round(0.25 * 48 * 32) and torch.equal(weight[~mask], torch.zeros(int((~mask).sum())))
    original = dense.h_linear.weight.detach()
    if method == "magnitude":
        assert original[~mask].abs().max() <= original[mask].abs().min()
    else:  # seeded: the same seed prunes the same weights, another seed others
        _, _, again = convert(compressed(tmp_path, "    prune(amount=0.25, method=random) on \"h_linear\"\n", name="a"))
        _, _, other = convert(compressed(tmp_path, "    prune(0.25, random, seed=1) on \"h_linear\"\n", name="b"))
        assert torch.equal(again.h_linear.weight != 0, mask) and not torch.equal(other.h_linear.weight != 0, mask)


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
], ids=["adamw decay", "sgd momentum"])
def test_pruned_weights_stay_exactly_zero_in_training(tmp_path, optimizer):
    """No mask is stored: the training forward's `weight * (weight != 0)` gives a pruned weight a zero
    gradient, so neither AdamW's decoupled decay nor SGD's momentum moves it, while the kept ones learn."""
    _, _, model = convert(compressed(tmp_path, "    prune(amount=0.5) on \"h_linear\"\n"))
    layer = model.h_linear
    pruned = layer.weight.detach() == 0
    kept = layer.weight.detach().clone()
    assert int(pruned.sum()) == round(0.5 * 48 * 32)
    model.train()
    opt = optimizer(model.parameters())
    torch.manual_seed(1)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(16, 32)).square().mean().backward()
        assert torch.equal(layer.weight.grad[pruned], torch.zeros(int(pruned.sum())))
        opt.step()
    weight = layer.weight.detach()
    assert torch.equal(weight[pruned], torch.zeros(int(pruned.sum())))
    assert bool((weight[~pruned] != kept[~pruned]).all())  # the kept weights did train (none to exactly 0)


def test_pruned_inference_is_the_dense_matmul_of_the_stored_weight(tmp_path):
    """Eval (and no_grad) forward is F.linear with the stored weight: what a dense layer computes and holds;
    with autograd on, the same value."""
    _, _, model = convert(compressed(tmp_path, "    prune(amount=0.5) on \"h_linear\"\n"))
    layer, x = model.h_linear, torch.randn(7, 32)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)
    assert torch.equal(layer(x).detach(), expected.detach()) and layer(x).requires_grad


def test_summary_has_no_slower_than_dense_note_for_prune(tmp_path):
    from specc.summary import speed_notes

    assert speed_notes(compile_graph(compressed(tmp_path, "    prune(0.5) on linear\n"), "small")) == []


def test_codebook_with_enough_centroids_is_lossless(tmp_path):
    levels = torch.tensor([-0.3, -0.1, 0.0, 0.2, 0.5])

    def five_values(dense):
        dense.h_linear.weight.copy_(levels[torch.randint(0, 5, (48, 32))])

    dense, _, model = convert(compressed(tmp_path, "    codebook(k=8) on \"h_linear\"\n"), dense_hook=five_values)
    assert model.h_linear.codes.dtype == torch.uint8
    x = torch.randn(5, 32)
    torch.testing.assert_close(outputs(model, [x]), outputs(dense, [x]), rtol=0, atol=0)


def test_full_bond_tensor_train_reconstructs():
    w = torch.randn(12, 30, dtype=torch.float64)
    in_modes, out_modes = modes(30, 3), modes(12, 3)
    assert in_modes == (5, 3, 2) and out_modes == (3, 2, 2)
    attrs = TTLinearAttrs(out_features=12, in_modes=in_modes, out_modes=out_modes,
                          ranks=tt_ranks(in_modes, out_modes, 10**6))
    torch.testing.assert_close(tt_weight(tt_svd(w, attrs)), w, rtol=1e-12, atol=1e-12)


def test_tensor_train_layer_reproduces_a_low_tt_rank_weight(tmp_path):
    path = compressed(tmp_path, "    tensor_train(bond=3, cores=3) on \"h_linear\"\n")
    graph = compile_graph(path, "small")
    attrs = graph.node("h_linear").attrs  # 48 = 4*4*3 outputs, 32 = 4*4*2 inputs

    def tt_rank_3(dense):
        cores = [torch.randn(shape, dtype=torch.float64) for shape in attrs.core_shapes()]
        dense.h_linear.weight.copy_(tt_weight(cores))

    dense, _, model = convert(path, dense_hook=tt_rank_3)
    x = torch.randn(5, 32)
    torch.testing.assert_close(outputs(model, [x]), outputs(dense, [x]), rtol=1e-4, atol=1e-4)


MOE = """\
model moe_net(d: int = 16) {
    input x: f32[B, T, d]
    output y = moe(x, 8, 2, 24)
}
"""


def test_merging_identical_experts_is_a_no_op(tmp_path):
    def identical(dense):
        for name in ("w1", "b1", "w2", "b2"):
            p = getattr(dense.y, name)
            p.copy_(p[:1].expand_as(p))

    dense, _, model = convert(compressed(tmp_path, "    merge_experts(groups=2) on moe\n", MOE), dense_hook=identical)
    assert model.y.w1.shape == (2, 24, 16)  # the other 6 experts are gone, not aliased
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(outputs(model, [x]), outputs(dense, [x]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ error falls as the budget grows
def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_error_falls_as_bits_k_and_bond_grow():
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    by_bits = [_relative_error(dequantize_weight(quantize_weight(w, bits, 16, True), bits, 16, True, 64), w)
               for bits in (4, 8)]
    by_k = []
    for k in (2, 4, 16, 64):
        centroids, codes = kmeans(w.reshape(-1, 1), k)
        by_k.append(_relative_error(centroids[codes].view_as(w), w))
    in_modes, out_modes = modes(64, 3), modes(48, 3)
    by_bond = [_relative_error(tt_weight(tt_svd(w, TTLinearAttrs(out_features=48, in_modes=in_modes,
                                                                out_modes=out_modes,
                                                                ranks=tt_ranks(in_modes, out_modes, bond)))), w)
               for bond in (1, 2, 4, 8, 16)]
    for errors in (by_bits, by_k, by_bond):
        assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert by_bits[-1] > 0 and by_k[-1] > 0 and by_bond[-1] > 0


@pytest.mark.parametrize("bits,group,symmetric,floor", [(8, None, True, 20), (8, 128, False, 20),
                                                        (4, 128, True, 18), (4, 128, False, 18)])
def test_sqnr_on_gaussian_weights(bits, group, symmetric, floor):
    torch.manual_seed(0)
    w = torch.randn(256, 1024)
    state = quantize_weight(w, bits, group, symmetric)
    assert state["qweight"].shape == (256, 512 if bits == 4 else 1024)
    assert sqnr_db(w, dequantize_weight(state, bits, group, symmetric, 1024)) >= floor


def test_int4_packing_round_trips_odd_widths_and_ragged_groups():
    levels = torch.arange(-7, 8, dtype=torch.float32)  # exactly representable with scale 1
    w = levels[torch.randint(0, 15, (5, 13))]
    w[:, [0, 5, 10]] = 7.0  # every group's range is the whole grid: scale 1
    state = quantize_weight(w, 4, 5, True)
    assert state["qweight"].shape == (5, 7) and state["scale"].shape == (5, 3)
    torch.testing.assert_close(dequantize_weight(state, 4, 5, True, 13), w, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ mixed precision
def test_mixed_bit_allocation_equals_brute_force():
    rng = random.Random(0)
    for trial in range(30):
        layers = rng.randint(1, 7)
        options = (2, 4, 8) if trial % 2 else (4, 8)
        costs = [{b: rng.random() / b for b in options} for _ in range(layers)]
        sizes = [{b: rng.randint(1, 40) * b for b in options} for _ in range(layers)]
        budget = rng.randint(0, sum(max(s.values()) for s in sizes))
        feasible = [c for c in itertools.product(options, repeat=layers)
                    if sum(s[b] for s, b in zip(sizes, c)) <= budget]
        got = allocate_bits(costs, sizes, budget)
        if not feasible:
            assert got is None
            continue
        best = min(feasible, key=lambda c: sum(cost[b] for cost, b in zip(costs, c)))
        assert got == list(best), (trial, got, best)


@pytest.mark.skipif(not HAS_ALLOCATE, reason="needs the Transform.allocate hook in specc/transforms/__init__.py")
def test_mixed_quantization_meets_its_budget(tmp_path):
    base = BASE.replace("h = relu(linear(x, 48))", "h = relu(linear(x, 256))\n    h = relu(linear(h, 48))")
    plan = compile_graph(compressed(tmp_path, "    quantize(mixed, budget=0.2, group=16) on linear\n", base),
                         "small").plan
    # int4 everywhere fits with room to spare for int8 on the small last layer only
    assert {p.layer: p.note.split()[0] for p in plan} == {"h_linear": "int4", "h_linear_1": "int4", "logits": "int8"}
    _, graph, model = convert(compressed(tmp_path, "    quantize(mixed, budget=0.2, group=16) on linear\n", base))
    dense_bytes = 4 * (256 * 32 + 48 * 256 + 12 * 48)
    stored = sum(r.weight_bytes - 4 * r.type.shape[-1] for r in summarize(graph) if r.op == "quant_linear")
    assert stored <= 0.2 * dense_bytes
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, "    quantize(mixed, budget=0.05) on linear\n"), "small")
    assert info.value.code == "E0808" and "even int4 everywhere" in info.value.message


# ------------------------------------------------------------------ every target, converted weights
TARGET_CASES = [
    ("mlp_int4.nnspec", "mlp_int4", None),
    ("mlp_sparse.nnspec", "mlp_sparse", None),
    ("moe_merge.nnspec", "moe_block_2_lowrank", None),
    (None, "small", "    quantize(int8, symmetric=false) on \"h_linear\"\n    codebook(k=4, dim=2) on \"logits\"\n"),
    (None, "small", "    tensor_train(bond=2) on \"h_linear\"\n    prune(0.5) on \"logits\"\n"),
    (None, "small", "    quantize(int4, group=10) on linear\n"),
]


def count_launches(module) -> list[str]:
    """Record each call of the fused quant / low-rank kernels' autograd Functions in a generated triton module."""
    launches: list[str] = []
    for name in ("_QuantMatmul", "_LowRankMatmul"):
        if hasattr(module, name):
            function = getattr(module, name)
            function.apply = (lambda apply, name: lambda *a: launches.append(name) or apply(*a))(function.apply, name)
    return launches


@pytest.mark.parametrize("spec,model,stages", TARGET_CASES, ids=[f"{m}{i}" for i, (_, m, _) in enumerate(TARGET_CASES)])
def test_all_targets_agree_on_converted_weights(tmp_path, spec, model, stages):
    path = ROOT / "specs" / spec if spec else compressed(tmp_path, stages)
    _, graph, reference = convert(path, model)
    inputs = example_inputs(graph)
    expected = outputs(reference, inputs)
    module, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(reference.state_dict())
    triton_model.eval()
    launches = count_launches(module)
    got = outputs(triton_model, inputs)
    assert bool(launches) == any(n.op == "quant_linear" for n in graph.nodes())
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    onnx_out = run_onnx(backends()["onnx"].emit(graph, weights=weights).data, graph, inputs)
    for e, t, o in zip(expected, got, onnx_out, strict=True):
        torch.testing.assert_close(t, e, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(o), e, rtol=1e-5, atol=1e-5)


def test_fused_kernels_have_torch_gradients(tmp_path):
    spec = tmp_path / "k.nnspec"
    spec.write_text("model k() {\n    input x: f32[B, T, 20]\n"
                    "    output y = lowrank_linear(quant_linear(x, 24, 4, group=8), 9, 4)\n}\n")
    graph = compile_graph(spec)
    _, reference = python_module(graph, "torch")
    module, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(reference.state_dict())
    launches = count_launches(module)
    grads = []
    for m in (reference, triton_model):
        x = example_inputs(graph)[0].requires_grad_()
        y = m(x)
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
        grads.append(torch.autograd.grad(loss, [x, *m.parameters()]))
    assert launches == ["_QuantMatmul", "_LowRankMatmul"]
    for g, e in zip(*grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the bar, measured by specc summary
def _bytes(spec: str, model: str | None = None) -> int:
    return totals(summarize(compile_graph(ROOT / "specs" / spec, model)))[1]


def test_int4_example_is_at_least_4x_smaller():
    assert _bytes("mlp.nnspec") >= 4 * _bytes("mlp_int4.nnspec")


def test_sparse_example_has_exactly_half_zeros():
    _, _, model = convert(ROOT / "specs" / "mlp_sparse.nnspec", "mlp_sparse")
    weights = torch.cat([model.h_linear.dense_weight().flatten(), model.logits.dense_weight().flatten()])
    assert int((weights == 0).sum()) * 2 == weights.numel()


@pytest.mark.parametrize("model", ["moe_block_2", "moe_block_2_lowrank"])
def test_moe_example_merges_8_experts_into_2_with_70_percent_fewer_expert_parameters(model):
    def expert_params(graph) -> int:
        (row,) = [r for r in summarize(graph) if r.op.startswith("moe")]
        return row.params - 8 * 64  # the router is kept whole
    merged = compile_graph(ROOT / "specs" / "moe_merge.nnspec", model)
    assert merged.node("y_moe").attrs.groups == 2
    assert expert_params(merged) <= 0.3 * expert_params(compile_graph(ROOT / "specs" / "moe_block.nnspec"))


def test_compress_command_merges_experts_by_calibration_usage(tmp_path):
    spec = compressed(tmp_path, "    merge_experts(groups=2) on moe\n", MOE)
    _, dense = python_module(compile_graph(spec, "moe_net"), "torch")
    with torch.no_grad():  # router e looks along axis e; the calibration tokens point along axes 3 and 5
        dense.y.router.copy_(4 * torch.eye(8, 16))
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    tokens = 0.1 * torch.randn(2, 32, 16)
    tokens[0, :, 3] += 3
    tokens[1, :, 5] += 3
    torch.save(tokens, tmp_path / "calib.pt")
    out = tmp_path / "small.pt"
    result = subprocess.run([sys.executable, "-m", "specc.cli", "compress", str(spec), "--model", "small",
                             "--weights", str(tmp_path / "dense.pt"), "--calib", str(tmp_path / "calib.pt"),
                             "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    state = torch.load(out)
    groups = state["y.expert_group"].tolist()
    assert groups[3] != groups[5]  # the two most used experts lead the two groups
    assert state["y.w1"].shape == (2, 24, 16) and state["y.w2"].shape == (2, 16, 24)
    _, small = python_module(compile_graph(spec, "small"), "torch")
    small.load_state_dict(state)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("stage,code,message", [
    ('    sparsity(pattern=2:4) on "h_linear"\n', None, None),
    ('    sparsity(pattern=2:5) on "h_linear"\n', "E0808", "layer `h_linear`: pattern 2:5 groups m=5 input features"),
    ('    sparsity(pattern=4:4) on linear\n', "E0302", "pattern 4:4 must keep 1 <= n < m <= 16"),
    ('    quantize(int5) on linear\n', "E0302", "invalid `format` for quantize()"),
    ('    quantize(int4, budget=0.5) on linear\n', "E0302", "`budget` goes with `mixed`"),
    ('    codebook(k=4, dim=5) on "h_linear"\n', "E0808", "subvectors of dim=5 do not tile its 32 input features"),
    ('    tensor_train(bond=4, cores=1) on linear\n', "E0302", "invalid `cores` for tensor_train()"),
    ('    prune(amount=1.5) on linear\n', "E0302", "invalid `amount` for prune()"),
    ('    merge_experts(groups=2) on linear\n', "E0802", "`merge_experts` rewrites moe layers"),
])
def test_transform_errors(tmp_path, stage, code, message):
    path = compressed(tmp_path, stage)
    if code is None:
        compile_graph(path, "small")
        return
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "small")
    assert info.value.code == code and message in info.value.message, info.value.render()


def test_merge_experts_sparse_needs_rank(tmp_path):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, "    merge_experts(groups=2, sparse=0.1) on moe\n", MOE), "small")
    assert info.value.code == "E0302" and "give rank > 0" in info.value.message


@pytest.mark.parametrize("stage,message", [
    ("    lowrank(rank=0) on linear\n", "invalid `rank` for lowrank(): 0 should be greater than 0"),
    ("    lowrank(rank=false) on linear\n", "invalid `rank` for lowrank(): false should be a valid integer"),
    ("    prune(amount=1.0) on linear\n", "invalid `amount` for prune(): 1.0 should be less than 1"),
    ("    prune(amount=1) on linear\n", "invalid `amount` for prune(): 1 should be less than 1"),
    ("    prune(amount=0) on linear\n", "invalid `amount` for prune(): 0 should be greater than 0"),
    # a boolean argument of the same call evaluated first must not turn the 0 into `false`
    ("    lowrank(ordered=false, rank=0) on linear\n", "invalid `rank` for lowrank(): 0 should be greater than 0"),
    ("    prune(amount=1, method=magnitude) on linear\n", "invalid `amount` for prune(): 1 should be less than 1"),
])
def test_argument_errors_show_the_number_given(tmp_path, stage, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, stage), "small")
    assert info.value.code == "E0302" and info.value.message == message, info.value.render()


def test_sparsity_pattern_error_names_and_points_at_pattern(tmp_path):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, "    sparsity(pattern=0:4) on linear\n"), "small")
    err = info.value
    assert err.message.startswith("invalid `pattern` for sparsity(): pattern 0:4 must keep"), err.render()
    assert err.span.source.line(err.span.line)[err.span.col - 1:err.span.end_col - 1] == "0:4"


def test_merge_experts_needs_an_argument_check_named(tmp_path):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, "    merge_experts(groups=2, sparse=0.1) on moe\n", MOE), "small")
    assert info.value.message.startswith("invalid arguments for merge_experts(): "), info.value.render()


def test_lowrank_above_the_full_rank_keeps_the_layer_with_a_located_warning(tmp_path):
    from specc.transforms import warning_text

    graph = compile_graph(compressed(tmp_path, '    lowrank(rank=500) on "h_linear"\n'), "small")
    (plan,) = graph.plan
    assert plan.after == "linear" and plan.kept
    assert "rank=500 is not below its full rank 32 (32 -> 48)" in plan.note
    assert plan.warning is not None and plan.warning.span.line == 7  # the stage's line
    text = warning_text(plan)
    assert text.startswith(f"{plan.warning.span}: warning[E0809]: `lowrank` keeps layer `h_linear` as it is")
    # a rank below the full rank that would not save parameters is only a note, with the rank that would
    (plan,) = compile_graph(compressed(tmp_path, '    lowrank(rank=20) on "h_linear"\n'), "small").plan
    assert plan.kept and plan.warning is None and "saves only below rank 20" in plan.note
    assert not compile_graph(compressed(tmp_path, '    lowrank(rank=19) on "h_linear"\n'), "small").plan[0].kept


@pytest.mark.parametrize("stage,message,help", [
    ("    merge_experts(groups=9) on moe\n", "layer `y`: groups=9 is more than its 8 experts", "groups < 8"),
    ("    merge_experts(groups=2, rank=100) on moe\n", "rank=100 is more than min(hidden, d) = min(24, 16) = 16",
     "choose rank < 10"),
    ("    merge_experts(groups=2, rank=16) on moe\n",
     "rank=16 stores 640 parameters per merged matrix, not fewer than the 384 of a dense one (24 x 16)",
     "choose rank < 10"),
    ("    merge_experts(groups=2, rank=9, sparse=0.1) on moe\n",
     "rank=9 plus 38 sparse entries stores 398 parameters", "choose rank < 9"),
])
def test_merge_experts_refuses_groups_and_ranks_it_would_clamp(tmp_path, stage, message, help):
    with pytest.raises(SpeccError) as info:
        compile_graph(compressed(tmp_path, stage, MOE), "small")
    err = info.value
    assert err.code == "E0808" and message in err.message and help in err.help, err.render()


def test_merge_experts_at_a_rank_that_saves_and_groups_equal_to_experts(tmp_path):
    graph = compile_graph(compressed(tmp_path, "    merge_experts(groups=2, rank=9) on moe\n", MOE), "small")
    assert graph.node("y").attrs.rank == 9
    (plan,) = compile_graph(compressed(tmp_path, "    merge_experts(groups=8) on moe\n", MOE), "small").plan
    assert plan.kept and plan.warning is not None and "nothing to merge" in plan.warning.message


@pytest.mark.parametrize("expr,inputs,message", [
    ("tt_linear(x, 6, [2, 3], [2, 3], [2])", "x: f32[B, 8]",
     "tt_linear: in_modes [2, 3] multiply to 6, but `x` (f32[B, 8]) has 8 input features"),
    ("tt_linear(x, 6, [2, 4], [2, 2], [2])", "x: f32[B, 8]", "out_modes [2, 2] multiply to 4, not out_features=6"),
    ("nm_linear(x, 4, 2, 4)", "x: f32[B, 6]", "nm_linear: m=4 does not divide the input features of `x` (f32[B, 6])"),
    ("nm_linear(x, 4, 4, 4)", "x: f32[B, 8]", "n=4 must be less than m=4"),
    ("quant_linear(x, 4, 4, group=16)", "x: f32[B, 8]", "group=16 is wider than the input features of `x`"),
    ("quant_linear(x, 4, 5)", "x: f32[B, 8]", "invalid `bits` for quant_linear()"),
    ("codebook_linear(x, 4, 16, 3)", "x: f32[B, 8]", "dim=3 does not divide the input features of `x` (f32[B, 8])"),
    ("moe_merged(x, 4, 5, 2, 8)", "x: f32[B, 8]", "groups=5 is more than experts=4"),
    ("moe_merged(x, 4, 2, 2, 8, rank=9)", "x: f32[B, 8]", "rank=9 is more than min(hidden, d) = 8"),
    ("masked_linear(x, 4)", "x: i64[B, 8]", "masked_linear: expects a floating-point tensor, got `x` (i64[B, 8])"),
])
def test_compressed_op_errors(tmp_path, expr, inputs, message):
    spec = tmp_path / "e.nnspec"
    spec.write_text(f"model e() {{\n    input {inputs}\n    output y = {expr}\n}}\n")
    with pytest.raises(SpeccError) as info:
        compile_graph(spec)
    assert message in info.value.message, info.value.render()
