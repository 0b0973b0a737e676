"""Hand-written PyTorch versions of some specs, as a person would write them, for bench/run.py.

Their state-dict keys match specc's generated modules, so the same weights load
into both and the timings compare like with like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h_linear = nn.Linear(784, 256)
        self.logits = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.dropout(F.relu(self.h_linear(x)), 0.1, self.training))


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h_relu_conv2d = nn.Conv2d(1, 6, 5, padding=2)
        self.h_relu_conv2d_1 = nn.Conv2d(6, 16, 5)
        self.h_linear = nn.Linear(400, 120)
        self.h_linear_1 = nn.Linear(120, 84)
        self.logits = nn.Linear(84, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.h_relu_conv2d(image)), 2)
        h = F.max_pool2d(F.relu(self.h_relu_conv2d_1(h)), 2)
        h = F.relu(self.h_linear(h.flatten(1)))
        return self.logits(F.relu(self.h_linear_1(h)))


class Ffn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.h_linear_layernorm = nn.LayerNorm(64)
        self.h_linear = nn.Linear(64, 256)
        self.y_mul_linear = nn.Linear(256, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.gelu(self.h_linear(self.h_linear_layernorm(x))), 0.1, self.training)
        return x + 0.5 * self.y_mul_linear(h)


MODELS = {"mlp": Mlp, "lenet": LeNet, "ffn": Ffn}
