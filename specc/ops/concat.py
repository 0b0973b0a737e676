"""concat: join tensors along one dim, as torch.cat.

Variadic: `concat([a, b, c], dim=1)` passes every list item as an operand, so
each one can be named in errors. All shapes agree except along `dim`, whose
sizes add up (symbolically, so `T` and `2*T` make `3*T`).
"""

from __future__ import annotations

from ..types import Dim, TensorType, dim_add, dim_str
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register, same_dtype


class ConcatAttrs(OpAttrs):
    dim: int = -1


def _infer(ctx: InferContext) -> TensorType:
    first = ctx.types[0]
    axis = normalize_axis(ctx, ctx.attrs.dim, first.rank)
    total: Dim = first.shape[axis]
    for i, t in enumerate(ctx.types[1:], start=1):
        same_dtype(ctx, 0, i)
        if t.rank != first.rank:
            raise ctx.error(f"{ctx.describe(i)} has rank {t.rank} but {ctx.describe(0)} has rank {first.rank}",
                            "E0402")
        for k, (a, b) in enumerate(zip(first.shape, t.shape)):
            if k != axis and a != b:
                raise ctx.error(f"{ctx.describe(i)} does not match {ctx.describe(0)} outside dim={ctx.attrs.dim}: "
                                f"dim {k} is {dim_str(b)} vs {dim_str(a)}", "E0402")
        total = dim_add(total, t.shape[axis])
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


register(OpDef("concat", "join tensors along `dim`, as torch.cat; other dims must agree", ("xs",), ConcatAttrs,
               infer=_infer, flops=no_flops, variadic=True))
