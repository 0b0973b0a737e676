"""gather: values picked along one dim by an index tensor, as torch.gather (ONNX GatherElements).

`out[i][j] = x[index[i][j]][j]` for dim=0: the output has the index's shape. The index
may be smaller than `x` in the other dims (as torch allows), never larger.
"""

from __future__ import annotations

from ..types import TensorType, dim_str
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register


class GatherAttrs(OpAttrs):
    dim: int


def _infer(ctx: InferContext) -> TensorType:
    x, index = ctx.types
    if index.dtype != "i64":
        raise ctx.error(f"the index must be i64, got {ctx.describe(1)}", "E0403")
    if index.rank != x.rank:
        raise ctx.error(f"the index {ctx.describe(1)} must have the rank of {ctx.describe(0)}", "E0402")
    axis = normalize_axis(ctx, ctx.attrs.dim, x.rank)
    for i, (dx, di) in enumerate(zip(x.shape, index.shape)):
        fits = dx == di or (isinstance(dx, int) and isinstance(di, int) and di <= dx)
        if i != axis and not fits:
            raise ctx.error(f"dim {i} of the index {ctx.describe(1)} is {dim_str(di)}, larger than (or not "
                            f"known to fit) {dim_str(dx)} in {ctx.describe(0)}", "E0402")
    return x.with_shape(index.shape)


register(OpDef("gather", "x's values at `index` along `dim` (the output has the index's shape), as torch.gather",
               ("x", "index"), GatherAttrs, infer=_infer, flops=no_flops, positional=("x", "dim", "index")))
