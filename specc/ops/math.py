"""Pointwise math functions and clamp: same shape in, same shape out, fusible.

Each takes a floating-point tensor (the fused Triton kernels compute in float32).
"""

from __future__ import annotations

from ..types import TensorType
from . import InferContext, NoAttrs, OpAttrs, OpDef, float_input, register

_DOCS = {
    "sin": "sine, elementwise, as torch.sin",
    "cos": "cosine, elementwise, as torch.cos",
    "exp": "e ** x, elementwise, as torch.exp",
    "log": "natural logarithm, elementwise, as torch.log",
    "sqrt": "square root, elementwise, as torch.sqrt",
    "rsqrt": "1 / sqrt(x), elementwise, as torch.rsqrt",
    "abs": "absolute value, elementwise, as torch.abs",
}

for _name, _doc in _DOCS.items():
    register(OpDef(_name, _doc, ("x",), NoAttrs, infer=float_input, elementwise=True))


class ClampAttrs(OpAttrs):
    min: float | None = None
    max: float | None = None


def _infer_clamp(ctx: InferContext) -> TensorType:
    """At least one bound, and `min` no greater than `max` (torch would silently return `max` everywhere)."""
    x = float_input(ctx)
    lo, hi = ctx.attrs.min, ctx.attrs.max
    if lo is None and hi is None:
        raise ctx.error(f"needs `min=`, `max=` or both to clamp {ctx.describe(0)}")
    if lo is not None and hi is not None and lo > hi:
        raise ctx.error(f"min={lo!r} is greater than max={hi!r} for {ctx.describe(0)}")
    return x


register(OpDef("clamp", "limits x to [min, max] (either bound may be left out), as torch.clamp", ("x",),
               ClampAttrs, infer=_infer_clamp, elementwise=True))
