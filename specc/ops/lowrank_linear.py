"""A linear layer factored as up(down(x)): W ~ U V with rank r, as produced by the lowrank transform.

With `ordered`, training uses a random prefix of the rank components each step
(nested/ordered dropout), so earlier components carry more of the signal and the
rank can later be cut further without retraining; inference uses all of them.
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class LowRankLinearAttrs(OpAttrs):
    out_features: PositiveInt
    rank: PositiveInt
    bias: bool = True
    ordered: bool = False


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    ctx.static(0, -1, "the input feature dim (last)")
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = {"down.weight": ParamSpec((a.rank, ctx.static(0, -1, "the input feature dim"))),
              "up.weight": ParamSpec((a.out_features, a.rank))}
    if a.bias:
        params["up.bias"] = ParamSpec((a.out_features,))
    return params


def lowrank_flops(ctx: InferContext) -> Dim:
    """Two products through the rank-r bottleneck (also the count of the quantized form, lowrank_quant_linear)."""
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    in_features = ctx.static(0, -1, "the input feature dim")
    return dim_mul(rows, 2 * ctx.attrs.rank * (in_features + ctx.attrs.out_features))


register(OpDef("lowrank_linear", "linear layer factored through a rank-r bottleneck: up(down(x))", ("x",),
               LowRankLinearAttrs, infer=_infer, params=_params, flops=lowrank_flops))
