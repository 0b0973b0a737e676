"""softmax along one dim."""

from __future__ import annotations

from ..types import TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, normalize_axis, register


class SoftmaxAttrs(OpAttrs):
    dim: int = -1


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    normalize_axis(ctx, ctx.attrs.dim, x.rank)
    return x


register(OpDef("softmax", "exp(x) / sum(exp(x)) along `dim`", ("x",), SoftmaxAttrs, infer=_infer,
               flops=lambda ctx: dim_mul(ctx.node.type.numel(), 5)))
