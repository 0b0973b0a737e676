"""Sample invocations of every op, for the op x target parity matrix (like PyTorch's OpInfo).

Each module in this package defines `SAMPLES: dict[str, list[Sample]]` for a
family of ops; `all_samples()` merges them. `tests/test_op_matrix.py` fails for
any registered op without samples.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """A one-op model: `inputs` are `name: type` declarations, `expr` computes the output."""

    expr: str
    inputs: tuple[str, ...] = ("x: f32[B, 8]",)
    int_high: dict[str, int] = field(default_factory=dict)  # integer inputs are drawn from [0, high)
    atol: float = 1e-5
    train: bool = False  # also compare in training mode (ops whose train/eval differ, deterministically)

    def spec(self, name: str = "sample") -> str:
        lines = [f"model {name}() {{"] + [f"    input {decl}" for decl in self.inputs]
        lines += [f"    output y = {self.expr}", "}"]
        return "\n".join(lines) + "\n"


def all_samples() -> dict[str, list[Sample]]:
    merged: dict[str, list[Sample]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for op, samples in module.SAMPLES.items():
            merged.setdefault(op, []).extend(samples)
    return merged
