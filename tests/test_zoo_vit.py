"""specs/vit.nnspec against transformers' ViTForImageClassification: the reference's state_dict() loads
into the generated module strictly and as it is, the logits match, the triton (interpreter) and ONNX
targets agree, it trains, and the published ViT-B/16 config has the reference's parameter count."""

from __future__ import annotations

import pytest
import torch

from specc.summary import summarize, totals
from targets import ROOT, compile_graph, outputs_on_every_target, python_module

transformers = pytest.importorskip("transformers")

SPEC = ROOT / "specs" / "vit.nnspec"
TINY = {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "num_labels": 10}


def _reference(**config) -> torch.nn.Module:
    return transformers.ViTForImageClassification(
        transformers.ViTConfig(**config, attn_implementation="eager")).eval()


@pytest.fixture(scope="module")
def tiny():
    """The compiled tiny spec and a seeded reference whose every tensor is random, not its init: the
    class token and positions, and the layernorms' ones and zeros too, so a swapped or misplaced tensor
    shows in the logits."""
    torch.manual_seed(0)
    reference = _reference(**TINY)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.3)
    return compile_graph(SPEC, params=TINY), reference


def _images(seed: int, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, TINY["num_channels"], TINY["image_size"], TINY["image_size"],
                       generator=torch.Generator().manual_seed(seed))


def test_the_reference_state_dict_loads_as_it_is_and_the_logits_match(tiny):
    graph, reference = tiny
    _, model = python_module(graph, "torch")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in reference.state_dict().items()}  # transformers' keys
    model.load_state_dict(reference.state_dict(), strict=True)
    images = _images(1)
    with torch.no_grad():
        expected = reference(pixel_values=images).logits
        got = model.eval()(images)
    assert got.shape == (3, TINY["num_labels"])
    assert expected.abs().max() > 0.1  # logits that carry the weights, not a near-constant
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [
    {"image_size": 24, "patch_size": 6, "num_channels": 1, "hidden_size": 24, "num_hidden_layers": 1,
     "num_attention_heads": 2, "intermediate_size": 40, "layer_norm_eps": 0.5, "num_labels": 3},
    {"image_size": 16, "patch_size": 16, "num_channels": 3, "hidden_size": 16, "num_hidden_layers": 3,
     "num_attention_heads": 1, "intermediate_size": 16, "num_labels": 2},
], ids=["one-channel", "one-patch"])
def test_other_configs_load_and_match(config):
    """-p reproduces any ViTConfig: channels, patch grid, heads, depth and eps are the config's names
    (an eps of 0.5 is large enough to show in the logits if any layernorm ignored it)."""
    torch.manual_seed(1)
    reference = _reference(**config)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.3)
    _, model = python_module(compile_graph(SPEC, params=config), "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, config["num_channels"], config["image_size"], config["image_size"],
                         generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), reference(pixel_values=images).logits,
                                   rtol=1e-5, atol=1e-5)


def test_triton_and_onnx_agree_with_the_reference(tiny, tmp_path):
    graph, reference = tiny
    images = _images(2, batch=2)
    with torch.no_grad():
        expected = reference(pixel_values=images).logits
    got = outputs_on_every_target(graph, [images], reference.state_dict(), tmp_path)
    for target in ("torch", "triton", "onnx"):
        torch.testing.assert_close(got[target][0], expected, rtol=1e-5, atol=1e-5, msg=target)


def test_training_steps_lower_the_loss(tiny):
    graph, _ = tiny
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    model.train()
    images = _images(3, batch=8)
    labels = torch.arange(8) % TINY["num_labels"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert model.vit.embeddings.cls_token.grad.abs().sum() > 0  # the free parameters are trained too


def test_the_tiny_config_counts_what_the_reference_owns(tiny):
    graph, reference = tiny
    assert totals(summarize(graph))[0] == sum(p.numel() for p in reference.parameters())


def test_vit_b16_has_the_published_parameter_count():
    """The spec's defaults are ViT-B/16 at 224x224 with 1000 labels: counted from the IR, without
    allocating, and from the reference built on torch's meta device."""
    ours = totals(summarize(compile_graph(SPEC)))[0]
    with torch.device("meta"):
        reference = _reference(num_labels=1000)
    assert ours == sum(p.numel() for p in reference.parameters()) == 86_567_656
