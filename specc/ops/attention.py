"""Multi-head self-attention over a [B, T, d] sequence, with a fused q/k/v projection.

The parameters are two linear layers, `qkv` (d -> 3d: q, k, v one after the
other, each split into `heads` contiguous slices) and `out` (d -> d), so the
state dict reads `<name>.qkv.weight`, `<name>.out.bias`, ... as in a hand-written
module.
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_add, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class AttentionAttrs(OpAttrs):
    heads: PositiveInt
    causal: bool = False  # position t attends to positions <= t only
    bias: bool = True


def _model_dim(ctx: InferContext) -> int:
    """d, after checking that x is [B, T, d] with a static d that the heads split evenly."""
    x = float_input(ctx)
    if x.rank != 3:
        raise ctx.error(f"expects a [batch, sequence, features] tensor, got {ctx.describe(0)} of rank {x.rank}")
    d = ctx.static(0, -1, "the feature dim (last)")
    if d % ctx.attrs.heads:
        raise ctx.error(f"heads={ctx.attrs.heads} does not divide the feature dim {d} of {ctx.describe(0)}", "E0402")
    return d


def _infer(ctx: InferContext) -> TensorType:
    _model_dim(ctx)
    return ctx.types[0]


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    """In the torch module's state-dict order."""
    d = _model_dim(ctx)
    params: dict[str, ParamSpec] = {}
    for layer, rows in (("qkv", 3 * d), ("out", d)):
        params[f"{layer}.weight"] = ParamSpec((rows, d))
        if ctx.attrs.bias:
            params[f"{layer}.bias"] = ParamSpec((rows,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """Projections (4d outputs of d inputs per token), then q k^T and the weighted sum of v (2*T*d each per token).

    Softmax, scaling and masking are not counted: they are O(T^2) per head, not O(T^2 d).
    """
    b, t, d = ctx.types[0].shape
    tokens = dim_mul(b, t)
    return dim_add(dim_mul(tokens, 2 * 4 * d * d), dim_mul(dim_mul(tokens, t), 2 * 2 * d))


register(OpDef("attention", "multi-head self-attention over [B, T, d] (fused qkv projection, output projection)",
               ("x",), AttentionAttrs, infer=_infer, params=_params, flops=_flops))
