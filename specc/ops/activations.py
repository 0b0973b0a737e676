"""Pointwise activations: same shape in, same shape out, fusible."""

from __future__ import annotations

from . import NoAttrs, OpDef, float_input, register

_DOCS = {
    "relu": "max(x, 0)",
    "gelu": "x * Phi(x), the exact (erf) form, as torch.nn.GELU()",
    "silu": "x * sigmoid(x) (a.k.a. swish)",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "hyperbolic tangent",
}

for _name, _doc in _DOCS.items():
    register(OpDef(_name, _doc, ("x",), NoAttrs, infer=float_input, elementwise=True))
