"""reshape and flatten: same elements, new shape.

Symbolic dims in a target shape must sit at the same index as in the input
(e.g. the batch dim `B` stays first), so every backend can copy them at run time.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, field_validator

from ..types import Dim, Sym, TensorType, dim_div, dim_mul, dim_str
from . import InferContext, OpAttrs, OpDef, normalize_axis, register


class ReshapeAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    shape: tuple[Any, ...]  # ints (one may be -1) and `Sym`s

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, (int, Sym)):
                shown = {True: "true", False: "false"}.get(d, repr(d)) if isinstance(d, bool) else repr(d)
                raise ValueError(f"target dims must be ints or symbolic dims, got {shown}")
        return shape


def _product(dims) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def _infer_reshape(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    target = list(ctx.attrs.shape)
    for i, d in enumerate(target):
        if isinstance(d, int) and d < -1 or d == 0:
            raise ctx.error(f"target dim {i} is {d}; dims must be positive (or -1 once)", "E0405")
        if isinstance(d, Sym) and (i >= x.rank or x.shape[i] != d):
            raise ctx.error(f"symbolic target dim {dim_str(d)} at index {i} must be the same dim of the input "
                            f"{ctx.describe(0)}", "E0405")
    holes = [i for i, d in enumerate(target) if d == -1]
    if len(holes) > 1:
        raise ctx.error("at most one target dim may be -1", "E0405")
    total = x.numel()
    if holes:
        known = _product(d for d in target if d != -1)
        inferred = dim_div(total, known)
        if inferred is None:
            raise ctx.error(f"cannot reshape {ctx.describe(0)} to {_show(target)}: "
                            f"{dim_str(total)} elements are not divisible by {dim_str(known)}", "E0405")
        target[holes[0]] = inferred
    elif _product(target) != total:
        raise ctx.error(f"cannot reshape {ctx.describe(0)} ({dim_str(total)} elements) to {_show(target)}", "E0405")
    return x.with_shape(tuple(target))


def _show(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class FlattenAttrs(OpAttrs):
    start: int = 1
    end: int = -1


def _infer_flatten(ctx: InferContext) -> TensorType:
    x = ctx.types[0]
    start = normalize_axis(ctx, ctx.attrs.start, x.rank, "start")
    end = normalize_axis(ctx, ctx.attrs.end, x.rank, "end")
    if start > end:
        raise ctx.error(f"start={ctx.attrs.start} comes after end={ctx.attrs.end} in {ctx.describe(0)}", "E0405")
    trailing = x.shape[end + 1:]
    if any(not isinstance(d, int) for d in trailing):
        raise ctx.error(f"dims after `end` must be static, {ctx.describe(0)} has {_show(trailing)}", "E0405")
    return x.with_shape(x.shape[:start] + (_product(x.shape[start:end + 1]),) + trailing)


register(OpDef("reshape", "view the elements in a new shape (one dim may be -1)", ("x",), ReshapeAttrs,
               infer=_infer_reshape))
register(OpDef("flatten", "merge dims start..end into one, as torch.flatten", ("x",), FlattenAttrs,
               infer=_infer_flatten))
