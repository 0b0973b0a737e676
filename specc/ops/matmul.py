"""Batched matrix product with torch.matmul's rules (1-D operands promoted)."""

from __future__ import annotations

from ..types import Dim, TensorType, dim_mul, dim_str
from . import InferContext, NoAttrs, OpDef, register, same_dtype


def _infer(ctx: InferContext) -> TensorType:
    dtype = same_dtype(ctx, 0, 1)
    a, b = ctx.types
    if a.rank == 0 or b.rank == 0:
        raise ctx.error(f"operands must have at least one dim: {ctx.describe(0)}, {ctx.describe(1)}")
    sa = (1,) + a.shape if a.rank == 1 else a.shape
    sb = b.shape + (1,) if b.rank == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise ctx.error(f"inner dims differ: {ctx.describe(0)} has {dim_str(sa[-1])}, "
                        f"{ctx.describe(1)} has {dim_str(sb[-2])}", "E0402")
    batch: list[Dim] = []
    ba, bb = sa[:-2], sb[:-2]
    for i in range(1, max(len(ba), len(bb)) + 1):
        da = ba[-i] if i <= len(ba) else 1
        db = bb[-i] if i <= len(bb) else 1
        if da != db and 1 not in (da, db):
            raise ctx.error(f"batch dims of {ctx.describe(0)} and {ctx.describe(1)} do not broadcast", "E0402")
        batch.insert(0, db if da == 1 else da)
    shape = tuple(batch) + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
    return TensorType(dtype, shape)


def _flops(ctx: InferContext) -> Dim:
    """2 * (output elements) * (inner dim)."""
    inner = ctx.types[0].shape[-1]
    return dim_mul(ctx.node.type.numel(), dim_mul(2, inner))


register(OpDef("matmul", "matrix product a @ b with batch broadcasting, as torch.matmul",
               ("a", "b"), NoAttrs, infer=_infer, flops=_flops))
