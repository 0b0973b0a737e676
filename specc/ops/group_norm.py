"""Group normalization, as torch.nn.GroupNorm(groups, C): channels (dim 1) are split into groups and
each group of each sample is normalized over its channels and spatial dims, then scaled and shifted per
channel (`weight`, `bias`, each [C]).

Unlike batchnorm it keeps no running statistics, so training and inference compute the same thing.
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from ..ir import ParamSpec
from ..types import TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class GroupNormAttrs(OpAttrs):
    groups: PositiveInt
    eps: PositiveFloat = 1e-5
    affine: bool = True


def _channels(ctx: InferContext) -> int:
    return ctx.static(0, 1, "the channel dim (1)")


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 2:
        raise ctx.error(f"expects an input [N, C, ...] of rank 2 or more, got {ctx.describe(0)}", "E0402")
    channels = _channels(ctx)
    if channels % ctx.attrs.groups:
        raise ctx.error(f"the {channels} channels of {ctx.describe(0)} are not divisible by "
                        f"groups={ctx.attrs.groups}", "E0402")
    return x


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    if not ctx.attrs.affine:
        return {}
    c = _channels(ctx)
    return {"weight": ParamSpec((c,)), "bias": ParamSpec((c,))}


register(OpDef("group_norm", "normalize each group of channels (dim 1) of each sample, then scale and shift "
               "per channel, as torch.nn.GroupNorm(groups, C)",
               ("x",), GroupNormAttrs, infer=_infer, params=_params,
               flops=lambda ctx: dim_mul(ctx.node.type.numel(), 8)))
