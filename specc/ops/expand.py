"""expand: broadcast size-1 dims (and new leading dims) to given sizes, as torch's Tensor.expand.

A target size of -1, or the input's own symbolic dim, keeps that dim. A size-1 dim (or a new leading
dim) may also grow to a symbolic size, as ViT's class token grows to the batch,
`expand(cls, [B, -1, -1])`: the generated code reads that size at run time from a model input that
has the symbol (the first such input, at the first index that has it), so the symbol must be a dim of
some model input; the shape function records where (`ExpandAttrs.sources`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, PrivateAttr, field_validator

from ..types import Dim, Sym, TensorType, dim_str
from . import InferContext, OpAttrs, OpDef, no_flops, register

Source = tuple[str, int]  # (model input, index): where a symbolic size is read at run time


class ExpandAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    sizes: tuple[Any, ...]  # ints (-1 keeps a dim) and `Sym`s
    # per size, the input dim a symbolic size grows to (None: static, or kept); set by the shape function,
    # which alone sees the graph, and read by the templates
    _sources: tuple[Source | None, ...] | None = PrivateAttr(default=None)

    @field_validator("sizes")
    @classmethod
    def _dims(cls, sizes: tuple[Any, ...]) -> tuple[Any, ...]:
        for d in sizes:
            if isinstance(d, bool) or not isinstance(d, (int, Sym)):
                raise ValueError(f"sizes must be ints (-1 keeps a dim) or symbolic dims, got {d!r}")
        return sizes

    @property
    def sources(self) -> tuple[Source | None, ...]:
        if self._sources is None:
            raise RuntimeError("expand: the sources of symbolic sizes come from shape inference")
        return self._sources


def _infer(ctx: InferContext) -> TensorType:
    x, sizes = ctx.types[0], ctx.attrs.sizes
    new = len(sizes) - x.rank
    if new < 0:
        raise ctx.error(f"sizes {_show(sizes)} name fewer dims than {ctx.describe(0)} has", "E0405")
    out: list[Dim] = []
    sources: list[Source | None] = []
    for i, size in enumerate(sizes):
        have = x.shape[i - new] if i >= new else None
        source = None
        if have is not None and (size == -1 or size == have):
            out.append(have)
        elif isinstance(size, Sym) and have in (None, 1):
            source = input_dim_source(ctx, size, f"expand {ctx.describe(0)} to symbolic size {dim_str(size)}")
            out.append(size)
        elif isinstance(size, int) and size >= (1 if have is None else 0) and have in (None, 1):
            out.append(size)
        elif have is None:
            raise ctx.error(f"new leading dim {i} of {_show(sizes)} must be a positive int or a symbolic dim, got "
                            f"{dim_str(size)} (expanding {ctx.describe(0)})", "E0405")
        else:
            raise ctx.error(f"cannot expand dim {i - new} of {ctx.describe(0)} from {dim_str(have)} to "
                            f"{dim_str(size)}: only size-1 dims grow", "E0405")
        sources.append(source)
    ctx.attrs._sources = tuple(sources)
    return x.with_shape(tuple(out))


def input_dim_source(ctx: InferContext, size: Sym, purpose: str) -> Source:
    """The first model input dim that is `size`, whose run-time value the generated code reads (for an
    op that wants to `purpose`, in the error when none has it)."""
    for name in ctx.graph.inputs:
        for index, dim in enumerate(ctx.graph.node(name).attrs.shape):  # the declared shape (typed or not yet)
            if dim == size:
                return name, index
    raise ctx.error(f"cannot {purpose}: no model input has a dim {dim_str(size)}, so its value is unknown at run "
                    "time (use a dim of an input, or a number)", "E0405")


def _show(dims) -> str:
    return "[" + ", ".join(dim_str(d) for d in dims) + "]"


register(OpDef("expand", "broadcasts size-1 dims and new leading dims to `sizes` (-1 keeps a dim; a symbolic size "
                         "is read from the model input that has it), as Tensor.expand",
               ("x",), ExpandAttrs, infer=_infer, flops=no_flops,
               reads=lambda attrs: tuple(source[0] for source in attrs.sources or () if source)))
