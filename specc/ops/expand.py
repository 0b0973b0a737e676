"""expand: broadcast size-1 dims (and new leading dims) to given sizes, as torch's Tensor.expand.

A target size of -1, or the input's own symbolic dim, keeps that dim; a symbolic size can only
keep a dim, since a size-1 dim cannot grow to a size known only at run time in every target.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, field_validator

from ..types import Dim, Sym, TensorType, dim_str
from . import InferContext, OpAttrs, OpDef, no_flops, register


class ExpandAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    sizes: tuple[Any, ...]  # ints (-1 keeps a dim) and `Sym`s

    @field_validator("sizes")
    @classmethod
    def _dims(cls, sizes: tuple[Any, ...]) -> tuple[Any, ...]:
        for d in sizes:
            if isinstance(d, bool) or not isinstance(d, (int, Sym)):
                raise ValueError(f"sizes must be ints (-1 keeps a dim) or symbolic dims, got {d!r}")
        return sizes


def _infer(ctx: InferContext) -> TensorType:
    x, sizes = ctx.types[0], ctx.attrs.sizes
    new = len(sizes) - x.rank
    if new < 0:
        raise ctx.error(f"sizes {_show(sizes)} name fewer dims than {ctx.describe(0)} has", "E0405")
    out: list[Dim] = []
    for i, size in enumerate(sizes):
        if i < new:
            if not isinstance(size, int) or size < 1:
                raise ctx.error(f"new leading dim {i} of {_show(sizes)} must be a positive int, got "
                                f"{dim_str(size)} (expanding {ctx.describe(0)})", "E0405")
            out.append(size)
            continue
        have = x.shape[i - new]
        if size == -1 or size == have:
            out.append(have)
        elif isinstance(size, int) and size >= 0 and have == 1:
            out.append(size)
        else:
            raise ctx.error(f"cannot expand dim {i - new} of {ctx.describe(0)} from {dim_str(have)} to "
                            f"{dim_str(size)}: only size-1 dims grow, to a static size", "E0405")
    return x.with_shape(tuple(out))


def _show(dims) -> str:
    return "[" + ", ".join(dim_str(d) for d in dims) + "]"


register(OpDef("expand", "broadcasts size-1 dims and new leading dims to `sizes` (-1 keeps a dim), as Tensor.expand",
               ("x",), ExpandAttrs, infer=_infer, flops=no_flops))
