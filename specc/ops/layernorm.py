"""Layer normalization over the last dim, as torch.nn.LayerNorm(d)."""

from __future__ import annotations

from pydantic import PositiveFloat

from ..ir import ParamSpec
from ..types import TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class LayerNormAttrs(OpAttrs):
    eps: PositiveFloat = 1e-5
    affine: bool = True


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    ctx.static(0, -1, "the normalized dim (last)")
    return x


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    if not ctx.attrs.affine:
        return {}
    d = ctx.static(0, -1, "the normalized dim (last)")
    return {"weight": ParamSpec((d,)), "bias": ParamSpec((d,))}


register(OpDef("layernorm", "normalize the last dim to zero mean, unit variance, then scale and shift",
               ("x",), LayerNormAttrs, infer=_infer, params=_params,
               flops=lambda ctx: dim_mul(ctx.node.type.numel(), 8)))
