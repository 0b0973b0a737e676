"""slice: a strided range of one dim, `x[..., start:end:step]` with python semantics.

Negative `start`/`end` count from the end and out-of-range bounds are clamped,
exactly as python (and torch indexing, and ONNX Slice) do. The sliced dim must be
static so the output size is known; an empty result is an error rather than a
zero-size tensor. `split` is lowered onto this op.
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register


class SliceAttrs(OpAttrs):
    dim: int
    start: int
    end: int
    step: PositiveInt = 1


def _infer(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    a = ctx.attrs
    axis = normalize_axis(ctx, a.dim, x.rank)
    size = ctx.static(0, axis, f"the sliced dim (dim={a.dim})")
    length = len(range(*slice(a.start, a.end, a.step).indices(size)))
    if length == 0:
        raise ctx.error(f"start={a.start}, end={a.end} select nothing from dim {a.dim} (size {size}) "
                        f"of {ctx.describe(0)}", "E0404")
    return x.with_shape(x.shape[:axis] + (length,) + x.shape[axis + 1:])


register(OpDef("slice", "elements start:end:step of one dim (python slicing; negatives count from the end)",
               ("x",), SliceAttrs, infer=_infer, flops=no_flops))
