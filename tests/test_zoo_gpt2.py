"""specs/gpt2.nnspec against transformers' GPT2LMHeadModel: the reference's state_dict() loads as it is
(strict, no key mapping), logits agree in eval on torch, triton (interpreter) and onnx, a training step
lowers the loss, greedy decoding matches generate(), and the published GPT-2 small config has its
parameter count (counted from the IR, nothing allocated)."""

from __future__ import annotations

import pytest
import torch

from specc.summary import summarize, totals
from causal_lm import (assert_greedy_decoding_matches_generate, assert_logits_match_on_every_target,
                       assert_training_lowers_the_loss)
from targets import ROOT, compile_graph, python_module

transformers = pytest.importorskip("transformers")

SPEC = ROOT / "specs" / "gpt2.nnspec"
# layer_norm_epsilon away from the default so that -p must reach every LayerNorm
TINY = {"vocab_size": 64, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4, "layer_norm_epsilon": 1e-4}


def _config(**params):
    config = transformers.GPT2Config(**params, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    config._attn_implementation = "eager"
    return config


@pytest.fixture(scope="module")
def tiny():
    """(graph, reference in eval, generated torch module in eval with the reference's weights)."""
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(_config(**TINY)).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affines, so that a misplaced one shows
        for name, p in reference.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    graph = compile_graph(SPEC, params=TINY)
    _, model = python_module(graph, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    return graph, reference, model.eval()


def test_keys_and_shapes_are_transformers(tiny):
    _, reference, model = tiny
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    # Conv1D keeps its weight [in, out]: c_attn maps 32 -> 96
    assert model.state_dict()["transformer.h.1.attn.c_attn.weight"].shape == (32, 96)


def test_logits_match_on_every_target(tiny, tmp_path):
    graph, reference, model = tiny
    assert_logits_match_on_every_target(graph, reference, model, TINY["vocab_size"], tmp_path)


def test_greedy_decoding_matches_generate(tiny):
    _, reference, model = tiny
    assert_greedy_decoding_matches_generate(reference, model, TINY["vocab_size"])


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    _, model = python_module(compile_graph(SPEC, params=TINY), "torch")
    assert_training_lowers_the_loss(model, TINY["vocab_size"])


def test_lm_head_is_the_token_embedding(tiny):
    """The tie makes lm_head.weight the very parameter transformer.wte.weight (as transformers ties them):
    counted once, and a training step moves both uses together."""
    _, reference, model = tiny
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert list(model.state_dict()) == list(reference.state_dict())  # both keys, as transformers saves them


def test_the_published_config_has_gpt2_smalls_parameter_count():
    """The spec's defaults are GPT-2 small: counted from the IR (the tied head counted once), and from
    GPT2LMHeadModel built on the meta device; neither allocates weights."""
    params, _, _ = totals(summarize(compile_graph(SPEC)))
    with torch.device("meta"):
        reference = transformers.GPT2LMHeadModel(_config())
    assert params == sum(p.numel() for p in reference.parameters()) == 124_439_808
