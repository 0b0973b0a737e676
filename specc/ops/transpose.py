"""transpose (swap two dims) and permute (reorder all dims), as in torch.

Dims may be negative. `permute` checks that its dims name every dim exactly once,
so a typo is caught here rather than as a backend error.
"""

from __future__ import annotations

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register


class TransposeAttrs(OpAttrs):
    dim0: int
    dim1: int


def _infer_transpose(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    shape = list(x.shape)
    a = normalize_axis(ctx, ctx.attrs.dim0, x.rank, "dim0")
    b = normalize_axis(ctx, ctx.attrs.dim1, x.rank, "dim1")
    shape[a], shape[b] = shape[b], shape[a]
    return x.with_shape(tuple(shape))


class PermuteAttrs(OpAttrs):
    dims: tuple[int, ...]


def _infer_permute(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    dims = list(ctx.attrs.dims)
    if len(dims) != x.rank:
        raise ctx.error(f"dims={dims} has {len(dims)} entries but {ctx.describe(0)} has rank {x.rank}", "E0404")
    order = [normalize_axis(ctx, d, x.rank, "dims entry") for d in dims]
    if sorted(order) != list(range(x.rank)):
        raise ctx.error(f"dims={dims} is not a permutation of {list(range(x.rank))} for {ctx.describe(0)}", "E0404")
    return x.with_shape(tuple(x.shape[d] for d in order))


register(OpDef("transpose", "swap dims dim0 and dim1, as torch.transpose", ("x",), TransposeAttrs,
               infer=_infer_transpose, flops=no_flops))
register(OpDef("permute", "reorder the dims: output dim i is input dim dims[i], as torch.permute", ("x",),
               PermuteAttrs, infer=_infer_permute, flops=no_flops))
