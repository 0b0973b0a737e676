"""specs/llama.nnspec against transformers' LlamaForCausalLM: the reference's state_dict() loads as it is
(strict, no key mapping), logits agree in eval on torch, triton (interpreter) and onnx, a training step
lowers the loss, greedy decoding matches generate(), and the published LLaMA-7B config has its parameter
count (counted from the IR, nothing allocated)."""

from __future__ import annotations

import pytest
import torch

from specc.summary import summarize, totals
from causal_lm import (assert_greedy_decoding_matches_generate, assert_logits_match_on_every_target,
                       assert_training_lowers_the_loss)
from targets import ROOT, compile_graph, python_module

transformers = pytest.importorskip("transformers")

SPEC = ROOT / "specs" / "llama.nnspec"
# grouped-query (2 kv heads for 4), and eps and theta away from the spec's defaults so that -p must reach them
TINY = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 500000.0}


def _config(**params):
    """A LlamaConfig with the spec's parameters (rope_theta lives in rope_parameters in transformers 5)."""
    theta = params.pop("rope_theta", 10000.0)
    config = transformers.LlamaConfig(**params, rope_parameters={"rope_type": "default", "rope_theta": theta},
                                      tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                                      max_position_embeddings=64, bos_token_id=None, eos_token_id=None,
                                      pad_token_id=None)
    config._attn_implementation = "eager"
    return config


@pytest.fixture(scope="module")
def tiny():
    """(graph, reference in eval, generated torch module in eval with the reference's weights)."""
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(_config(**TINY)).eval()
    graph = compile_graph(SPEC, params=TINY)
    _, model = python_module(graph, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    return graph, reference, model.eval()


def test_keys_and_shapes_are_transformers(tiny):
    """The same keys (in the spec's data-flow order: the norms come before the attention they feed,
    where LlamaDecoderLayer registers them after) with the same shapes."""
    _, reference, model = tiny
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert "model.layers.1.self_attn.k_proj.weight" in model.state_dict()
    assert model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape == (16, 32)  # 2 kv heads of 8


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


def test_the_published_config_has_llama_7bs_parameter_count():
    """The spec's defaults are LLaMA-7B's config: counted from the IR, and from LlamaForCausalLM built on
    the meta device (neither allocates 27 GB of weights)."""
    params, _, _ = totals(summarize(compile_graph(SPEC)))
    with torch.device("meta"):
        reference = transformers.LlamaForCausalLM(_config(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                                          num_hidden_layers=32, num_attention_heads=32,
                                                          num_key_value_heads=32, rms_norm_eps=1e-6))
    assert params == sum(p.numel() for p in reference.parameters()) == 6_738_415_616
