"""slice: a strided range of one dim, `x[..., start:end:step]` with python semantics.

Negative `start`/`end` count from the end and out-of-range bounds are clamped,
exactly as python (and torch indexing, and ONNX Slice) do. The sliced dim must be
static so the output size is known; an empty result is an error rather than a
zero-size tensor. `split` is lowered onto this op, and so is indexing (`x[:, 1:]`), whose
omitted bounds are None (from the start, to the end). On a symbolic dim a unit-step slice
that drops elements at the ends still has a size (`1:` and `:-1` give `T - 1`), assuming the
dim is at least that long; other slices (`:2` has min(T, 2) elements) need a static dim.
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..types import Dim, TensorType, dim_add
from . import InferContext, OpAttrs, OpDef, no_flops, normalize_axis, register


class SliceAttrs(OpAttrs):
    dim: int
    start: int | None  # None: from the start
    end: int | None  # None: to the end
    step: PositiveInt = 1


def _infer(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    a = ctx.attrs
    axis = normalize_axis(ctx, a.dim, x.rank)
    length = _symbolic_length(x.shape[axis], a.start or 0, a.end, a.step)
    if length is None:
        size = ctx.static(0, axis, f"the sliced dim (dim={a.dim})")
        length = len(range(*slice(a.start, a.end, a.step).indices(size)))
    if length == 0:
        raise ctx.error(f"start={a.start}, end={a.end} select nothing from dim {a.dim} (size {size}) "
                        f"of {ctx.describe(0)}", "E0404")
    return x.with_shape(x.shape[:axis] + (length,) + x.shape[axis + 1:])


def _symbolic_length(size: Dim, start: int, end: int | None, step: int) -> Dim | None:
    """The length of a unit-step slice of a symbolic dim that drops elements at its ends; else None."""
    if isinstance(size, int) or step != 1 or start < 0 or (end is not None and end >= 0):
        return None
    return dim_add(size, (end or 0) - start)


register(OpDef("slice", "elements start:end:step of one dim (python slicing; negatives count from the end)",
               ("x",), SliceAttrs, infer=_infer, flops=no_flops))
