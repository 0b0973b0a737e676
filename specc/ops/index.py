"""select: one element of one dim, which disappears; what an int index lowers to (`x[:, 0]`, `x[..., -1]`).

Negative indices count from the end, as in python. On a static dim the index is checked
against its size; on a symbolic one it cannot be, and the targets raise at run time.
"""

from __future__ import annotations

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register


class SelectAttrs(OpAttrs):
    dim: int
    index: int


def _infer(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    a = ctx.attrs
    axis = normalize_axis(ctx, a.dim, x.rank)
    size = x.shape[axis]
    if isinstance(size, int) and not -size <= a.index < size:
        raise ctx.error(f"index {a.index} is out of range for dim {a.dim} (size {size}) of {ctx.describe(0)}",
                        "E0404")
    return x.with_shape(x.shape[:axis] + x.shape[axis + 1:])


register(OpDef("select", "element `index` of dim `dim`, which is removed (x[:, i]; negatives count from the end)",
               ("x",), SelectAttrs, infer=_infer, flops=no_flops))
