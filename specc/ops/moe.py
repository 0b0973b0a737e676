"""Mixture-of-experts feed-forward layer over the last dim of x: [..., d].

A router (linear d -> experts, no bias) scores the experts per token; the
top_k softmax probabilities, renormalized to sum to 1, weight the outputs of
their experts, each an MLP d -> hidden (gelu) -> d. Expert weights are stacked
per layer: `router` [experts, d], `w1` [experts, hidden, d], `b1` [experts, hidden],
`w2` [experts, d, hidden], `b2` [experts, d].
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class MoEAttrs(OpAttrs):
    experts: PositiveInt
    top_k: PositiveInt
    hidden: PositiveInt


def _model_dim(ctx: InferContext) -> int:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    if ctx.attrs.top_k > ctx.attrs.experts:
        raise ctx.error(f"top_k={ctx.attrs.top_k} is more than experts={ctx.attrs.experts}")
    return ctx.static(0, -1, "the feature dim (last)")


def _infer(ctx: InferContext) -> TensorType:
    _model_dim(ctx)
    return ctx.types[0]


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    d, e, h = _model_dim(ctx), ctx.attrs.experts, ctx.attrs.hidden
    return {"router": ParamSpec((e, d)), "w1": ParamSpec((e, h, d)), "b1": ParamSpec((e, h)),
            "w2": ParamSpec((e, d, h)), "b2": ParamSpec((e, d))}


def _flops(ctx: InferContext) -> Dim:
    """Per token: the router, and top_k experts (two matmuls each). The model's cost, not the dense
    implementation's (which runs every expert and masks the unselected ones)."""
    d, e, h = _model_dim(ctx), ctx.attrs.experts, ctx.attrs.hidden
    tokens = dim_div(ctx.node.type.numel(), d)
    return dim_mul(tokens, 2 * d * e + ctx.attrs.top_k * 2 * 2 * d * h)


register(OpDef("moe", "mixture-of-experts MLP over the last dim: top_k of `experts` gelu MLPs, weighted by a router",
               ("x",), MoEAttrs, infer=_infer, params=_params, flops=_flops))
