"""y = x W^T + b over the last dim, as torch.nn.Linear."""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class LinearAttrs(OpAttrs):
    out_features: PositiveInt
    bias: bool = True


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    ctx.static(0, -1, "the input feature dim (last)")
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    in_features = ctx.static(0, -1, "the input feature dim (last)")
    params = {"weight": ParamSpec((ctx.attrs.out_features, in_features))}
    if ctx.attrs.bias:
        params["bias"] = ParamSpec((ctx.attrs.out_features,))
    return params


def _flops(ctx: InferContext) -> Dim:
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    return dim_mul(rows, 2 * ctx.static(0, -1, "the input feature dim (last)") * ctx.attrs.out_features)


register(OpDef("linear", "affine map over the last dim, as torch.nn.Linear(in, out_features, bias)",
               ("x",), LinearAttrs, infer=_infer, params=_params, flops=_flops))
