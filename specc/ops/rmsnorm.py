"""RMS normalization over the last dim, as torch.nn.RMSNorm(d): x / sqrt(mean(x^2) + eps) * weight."""

from __future__ import annotations

from pydantic import PositiveFloat

from ..ir import ParamSpec
from ..types import TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class RMSNormAttrs(OpAttrs):
    eps: PositiveFloat = 1e-6
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
    return {"weight": ParamSpec((ctx.static(0, -1, "the normalized dim (last)"),))}


register(OpDef("rmsnorm", "scale the last dim to unit root-mean-square, then by a learned weight (no shift)",
               ("x",), RMSNormAttrs, infer=_infer, params=_params,
               # square, sum, scale and weight: 4 per element
               flops=lambda ctx: dim_mul(ctx.node.type.numel(), 4)))
