"""Pointwise activations: same shape in, same shape out, fusible."""

from __future__ import annotations

from typing import Literal

from . import NoAttrs, OpAttrs, OpDef, float_input, register

_DOCS = {
    "relu": "max(x, 0)",
    "silu": "x * sigmoid(x) (a.k.a. swish)",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "hyperbolic tangent",
}

for _name, _doc in _DOCS.items():
    register(OpDef(_name, _doc, ("x",), NoAttrs, infer=float_input, elementwise=True))


class GeluAttrs(OpAttrs):
    approximate: Literal["none", "tanh"] = "none"


register(OpDef("gelu", "x * Phi(x): the exact (erf) form, or approximate=\"tanh\", as torch.nn.GELU", ("x",),
               GeluAttrs, infer=float_input, elementwise=True))
