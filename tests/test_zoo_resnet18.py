"""specs/resnet18.nnspec against torchvision's resnet18, with its state dict loaded as it is.

torchvision does not import on this CPU build of torch, so the reference is torchvision's ResNet-18
written out in plain torch from its published code (torchvision/models/resnet.py: BasicBlock, ResNet
with layers [2, 2, 2, 2]), with the same module names and so the same state-dict keys. The test runs
the published widths (64 to 512 channels) on 64x64 images with 10 classes: small enough to be quick,
and every layer, key and shape is the real one.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specc.summary import summarize, totals
from targets import ROOT, compile_graph, outputs_on_every_target, python_module

SPEC = ROOT / "specs" / "resnet18.nnspec"
SMALL = {"num_classes": 10, "image_size": 64}


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (expansion 1, groups 1, base width 64, no dilation)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet(BasicBlock, [2, 2, 2, 2]), i.e. resnet18, with its init."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SMALL["image_size"], SMALL["image_size"], generator=torch.Generator().manual_seed(seed))


def trained_reference() -> ResNet:
    """A reference as after training: running statistics gathered from batches (not the 0/1 they start
    at), and batchnorm scales and shifts moved off 1/0, so every buffer and parameter is exercised."""
    torch.manual_seed(0)
    model = ResNet(num_classes=SMALL["num_classes"])
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the calibration batches
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for seed in range(2):
            model(_images(2, 100 + seed))
    return model.eval()


@pytest.fixture(scope="module")
def reference() -> ResNet:
    return trained_reference()


@pytest.fixture(scope="module")
def small():
    return compile_graph(SPEC, params=SMALL)


def test_state_dict_is_torchvisions(small, reference):
    """The keys, in order, and the shapes are the reference's; its state dict loads strictly as it is."""
    _, model = python_module(small, "torch")
    ours = model.state_dict()
    assert list(ours) == list(reference.state_dict())
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.state_dict().items()}
    assert "layer2.0.downsample.1.running_mean" in ours and "layer1.0.downsample.0.weight" not in ours
    model.load_state_dict(reference.state_dict(), strict=True)


def test_outputs_match_the_reference_and_every_target(small, reference, tmp_path):
    _, model = python_module(small, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    images = _images(2, 1)
    with torch.no_grad():
        expected = reference(images)
        got = model(images)
    assert expected.shape == (2, SMALL["num_classes"])
    assert expected.abs().max() > 0.1  # not a vanishing signal that would make any comparison pass
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    outputs = outputs_on_every_target(small, [images], reference.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(outputs[target][0], expected, rtol=1e-5, atol=1e-5)


def test_training_steps_lower_the_loss(small, reference):
    _, model = python_module(small, "torch")
    model.load_state_dict(reference.state_dict(), strict=True)
    model.train()
    images = _images(2, 2)
    labels = torch.tensor([3, 7])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_the_published_config_has_resnet18s_parameter_count():
    """The defaults (1000 classes, 224x224) count 11,689,512 parameters, torchvision's resnet18: from the
    IR without allocating a weight, and in the reference at the same config (on the meta device: no
    memory either)."""
    graph = compile_graph(SPEC)
    params, _, _ = totals(summarize(graph))
    assert params == 11_689_512
    with torch.device("meta"):
        assert sum(p.numel() for p in ResNet().parameters()) == params
