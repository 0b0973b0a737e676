"""specs/mixtral_moe.nnspec against transformers' MixtralSparseMoeBlock, its state dict loaded as it is.

The reference is built from a tiny MixtralConfig with seeded random weights (the block alone does not
initialize its experts: they are torch.empty until a model's _init_weights runs). Its router logits are
the ones transformers records for the auxiliary loss: the `gate` module's first output, caught here
with a forward hook as transformers' OutputRecorder does.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

from specc.summary import summarize, totals
from targets import ROOT, compile_graph, outputs_on_every_target, python_module

SPEC = ROOT / "specs" / "mixtral_moe.nnspec"
TINY = {"hidden_size": 16, "intermediate_size": 12, "num_local_experts": 4, "num_experts_per_tok": 2}


def _reference() -> MixtralSparseMoeBlock:
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(MixtralConfig(**TINY))
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.3)
    return block.eval()


def _run_reference(block: MixtralSparseMoeBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's output and its router logits ([B * T, experts]), as transformers records them."""
    recorded = []
    hook = block.gate.register_forward_hook(lambda module, args, output: recorded.append(output[0]))
    try:
        y = block(x)
    finally:
        hook.remove()
    return y, recorded[0]


def _inputs(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, TINY["hidden_size"], generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny():
    return compile_graph(SPEC, params=TINY)


@pytest.fixture(scope="module")
def loaded(tiny):
    reference = _reference()
    _, model = python_module(tiny, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    return reference, model.eval()


def test_state_dict_is_mixtrals(tiny):
    _, model = python_module(tiny, "torch")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in _reference().state_dict().items()}
    assert list(ours.items()) == list(theirs.items())
    assert list(ours) == ["gate.weight", "experts.gate_up_proj", "experts.down_proj"]


@pytest.mark.parametrize("batch,length", [(3, 5), (1, 1)])
def test_outputs_and_router_logits_match_reference(loaded, batch, length):
    """(1, 1): one token picks 2 of the 4 experts, so experts without tokens are skipped."""
    reference, model = loaded
    x = _inputs(batch, length)
    with torch.no_grad():
        want_y, want_logits = _run_reference(reference, x)
        y, logits = model(x)
    assert logits.shape == (batch * length, TINY["num_local_experts"])
    torch.testing.assert_close(y, want_y, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, want_logits, rtol=0, atol=1e-5)


def test_only_routed_tokens_run_through_each_expert(loaded):
    """Each expert's matmul sees exactly the tokens that chose it (2 per token in all), not every token."""
    _, model = loaded
    x = _inputs(3, 5)
    rows = []
    original = F.linear

    def counting(inp, weight, *args, **kwargs):
        if weight.shape == (2 * TINY["intermediate_size"], TINY["hidden_size"]):
            rows.append(inp.shape[0])
        return original(inp, weight, *args, **kwargs)

    F.linear = counting
    try:
        with torch.no_grad():
            model(x)
    finally:
        F.linear = original
    assert sum(rows) == 15 * TINY["num_experts_per_tok"] and max(rows) < 15


@pytest.mark.parametrize("batch,length", [(3, 5), (1, 1)])
def test_triton_and_onnx_agree_with_torch(tiny, loaded, tmp_path, batch, length):
    reference, _ = loaded
    got = outputs_on_every_target(tiny, [_inputs(batch, length)], reference.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        for g, e in zip(got[target], got["torch"], strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_compiles_fullgraph_to_the_same_numbers(loaded):
    """Under torch.compile the experts run densely (no data-dependent shapes): same outputs."""
    _, model = loaded
    x = _inputs(3, 5)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, fullgraph=True, backend="eager")(x)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_gradients_match_reference_and_training_lowers_the_loss(tiny):
    reference = _reference().train()
    _, model = python_module(tiny, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    model.train()
    x, target = _inputs(3, 5), _inputs(3, 5, seed=2)
    F.mse_loss(reference(x), target).backward()
    F.mse_loss(model(x)[0], target).backward()
    ours = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=1e-4, atol=1e-6)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        y, logits = model(x)
        loss = F.mse_loss(y, target) + 0.01 * logits.square().mean()  # an auxiliary term on the router logits
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_parameter_count_at_mixtral_8x7b():
    """The published config (the spec's defaults, MixtralConfig's too): counted from the IR, the
    reference built on the meta device; neither allocates the 1.4 billion weights."""
    ours, _, _ = totals(summarize(compile_graph(SPEC)))
    with torch.device("meta"):
        reference = MixtralSparseMoeBlock(MixtralConfig())
    assert (reference.experts.num_experts, reference.experts.intermediate_dim, reference.top_k) == (8, 14336, 2)
    assert ours == sum(p.numel() for p in reference.parameters()) == 1_409_318_912


def test_the_moe_layer_with_its_own_router_is_a_mixtral_block(tmp_path):
    """Without `logits=` a swiglu moe layer holds the router itself: the layer is a MixtralSparseMoeBlock
    (keys gate.weight, experts.*), as the `mlp` of a Mixtral decoder layer would be."""
    spec = tmp_path / "layer.nnspec"
    spec.write_text("""model layer() {
    input x: f32[B, T, 16]
    r = moe(x, 4, 2, 12, expert="swiglu") as mlp
    output y = r
    output router_logits = r.router_logits
}
""")
    reference = _reference()
    _, model = python_module(compile_graph(spec), "torch")
    model.mlp.load_state_dict(reference.state_dict(), strict=True)
    x = _inputs(3, 5)
    with torch.no_grad():
        want_y, want_logits = _run_reference(reference, x)
        y, logits = model.eval()(x)
    torch.testing.assert_close(y, want_y, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits.reshape(-1, 4), want_logits, rtol=0, atol=1e-5)
