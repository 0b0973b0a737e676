"""specs/unet.nnspec: the U-Net compiles on every target, the targets agree, and it trains."""

from __future__ import annotations

import pytest
import torch

from targets import ROOT, compile_graph, outputs_on_every_target, python_module

SPEC = ROOT / "specs" / "unet.nnspec"
SMALL = {"base": 4, "image_size": 32}


@pytest.fixture(scope="module")
def small():
    graph = compile_graph(SPEC, params=SMALL)
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    return graph, model.eval()


def test_the_published_config_has_the_papers_parameter_count():
    """base=64, depth 4: the 31.0M parameters of the paper's layout with padded convs (and 3 -> 1 channels)."""
    _, model = python_module(compile_graph(SPEC, params={"base": 64}), "torch")
    assert sum(p.numel() for p in model.parameters()) == 31_031_745


def test_targets_agree_and_keep_the_image_size(small, tmp_path):
    graph, model = small
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(image)
    assert expected.shape == (1, 1, 32, 32)

    got = outputs_on_every_target(graph, [image], model.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], expected, rtol=1e-4, atol=1e-4)


def test_training_steps_lower_the_loss(small):
    graph, _ = small
    torch.manual_seed(0)
    _, model = python_module(graph, "torch")
    model.train()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 32, 32, generator=gen)
    masks = (images.mean(dim=1, keepdim=True) > 0).float()  # a target the skip connections can reach
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
