"""mean and sum over one dim or a list of dims, as torch.mean / torch.sum.

The result keeps the input's dtype (torch would widen an i32 sum to i64; the
torch template asks for i32 so every target agrees with the declared type).
"""

from __future__ import annotations

from ..types import Dim, TensorType
from . import InferContext, OpAttrs, OpDef, float_input, normalize_axis, register


class ReduceAttrs(OpAttrs):
    dim: int | tuple[int, ...]
    keepdim: bool = False


def _reduce(ctx: InferContext, x: TensorType) -> TensorType:
    """The shape left after reducing `dim` (negatives allowed, each dim at most once)."""
    dims = [ctx.attrs.dim] if isinstance(ctx.attrs.dim, int) else list(ctx.attrs.dim)
    if not dims:
        raise ctx.error(f"dim=[] names no dim of {ctx.describe(0)}; list the dims to reduce", "E0404")
    axes = [normalize_axis(ctx, d, x.rank) for d in dims]
    if len(set(axes)) != len(axes):
        raise ctx.error(f"dim={dims} names the same dim of {ctx.describe(0)} twice", "E0404")
    if ctx.attrs.keepdim:
        return x.with_shape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in axes))


def _infer_mean(ctx: InferContext) -> TensorType:
    return _reduce(ctx, float_input(ctx))


def _infer_sum(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    if x.dtype == "bool":
        raise ctx.error(f"cannot sum bool values of {ctx.describe(0)}", "E0403")
    return _reduce(ctx, x)


def _flops(ctx: InferContext) -> Dim:
    """One add per input element."""
    return ctx.types[0].numel()


register(OpDef("mean", "mean over `dim` (an int or a list), as torch.mean", ("x",), ReduceAttrs,
               infer=_infer_mean, flops=_flops))
register(OpDef("sum", "sum over `dim` (an int or a list), as torch.sum", ("x",), ReduceAttrs,
               infer=_infer_sum, flops=_flops))
