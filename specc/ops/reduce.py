"""Reductions: mean, sum, max and min over one dim or a list of dims (as torch.mean, torch.sum,
torch.amax, torch.amin), argmax, cumsum, and topk (values and indices, two results; `topk_indices` gives the indices alone).

The result keeps the input's dtype (torch would widen an i32 sum to i64; the
torch template asks for i32 so every target agrees with the declared type).
"""

from __future__ import annotations

from ..types import Dim, TensorType
from . import InferContext, OpAttrs, OpDef, float_input, normalize_axis, register

_INDEX = "i64"  # the dtype of every index an op returns, as torch's


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


def _no_bool(ctx: InferContext, what: str) -> TensorType:
    x = ctx.types[0]
    if x.dtype == "bool":
        raise ctx.error(f"cannot {what} bool values of {ctx.describe(0)}", "E0403")
    return x


def _infer_extreme(ctx: InferContext) -> TensorType:
    return _reduce(ctx, _no_bool(ctx, f"take the {ctx.node.op}imum of"))


class AxisAttrs(OpAttrs):
    dim: int
    keepdim: bool = False


def _infer_argmax(ctx: InferContext) -> TensorType:
    x = _no_bool(ctx, "take the argmax of")
    axis = normalize_axis(ctx, ctx.attrs.dim, x.rank)
    if x.shape[axis] == 0:
        raise ctx.error(f"dim={ctx.attrs.dim} of {ctx.describe(0)} is empty: it has no argmax")
    if ctx.attrs.keepdim:
        return TensorType(_INDEX, tuple(1 if i == axis else d for i, d in enumerate(x.shape)))
    return TensorType(_INDEX, tuple(d for i, d in enumerate(x.shape) if i != axis))


class CumsumAttrs(OpAttrs):
    dim: int


def _infer_cumsum(ctx: InferContext) -> TensorType:
    x = _no_bool(ctx, "sum")
    normalize_axis(ctx, ctx.attrs.dim, x.rank)
    return x


class TopkAttrs(OpAttrs):
    k: int
    dim: int = -1
    largest: bool = True


class TopkResultsAttrs(TopkAttrs):
    all_results: bool = False  # set by the lowering: the node computes values and indices (see OpDef.results)


def _topk_shape(ctx: InferContext) -> tuple[Dim, ...]:
    """The input's shape with `k` at `dim`; k must be positive and, where the dim is static, fit in it."""
    x = _no_bool(ctx, "rank")
    axis = normalize_axis(ctx, ctx.attrs.dim, x.rank)
    k, size = ctx.attrs.k, x.shape[axis]
    if k < 1:
        raise ctx.error(f"k={k} must be at least 1 to pick from {ctx.describe(0)}")
    if isinstance(size, int) and k > size:
        raise ctx.error(f"k={k} is larger than dim {ctx.attrs.dim} of {ctx.describe(0)}")
    return tuple(k if i == axis else d for i, d in enumerate(x.shape))


def _infer_topk(ctx: InferContext) -> TensorType:
    return ctx.types[0].with_shape(_topk_shape(ctx))


def _infer_topk_indices(ctx: InferContext) -> TensorType:
    return TensorType(_INDEX, _topk_shape(ctx))


def _topk_results(ctx: InferContext) -> tuple[TensorType, ...]:
    shape = _topk_shape(ctx)
    return ctx.types[0].with_shape(shape), TensorType(_INDEX, shape)


def _flops(ctx: InferContext) -> Dim:
    """One add per input element."""
    return ctx.types[0].numel()


register(OpDef("mean", "mean over `dim` (an int or a list), as torch.mean", ("x",), ReduceAttrs,
               infer=_infer_mean, flops=_flops))
register(OpDef("sum", "sum over `dim` (an int or a list), as torch.sum", ("x",), ReduceAttrs,
               infer=_infer_sum, flops=_flops))
for _name in ("max", "min"):
    register(OpDef(_name, f"{_name}imum over `dim` (an int or a list), as torch.a{_name}", ("x",), ReduceAttrs,
                   infer=_infer_extreme, flops=_flops))
register(OpDef("argmax", "the index (i64) of the largest value along `dim` (the first, on ties), as torch.argmax",
               ("x",), AxisAttrs, infer=_infer_argmax, flops=_flops))
register(OpDef("cumsum", "running sum along `dim`, as torch.cumsum", ("x",), CumsumAttrs, infer=_infer_cumsum,
               flops=_flops))
register(OpDef("topk", "the k largest (or smallest) values along `dim`, sorted, and their indices (i64), as "
                       "torch.topk: `v, i = topk(x, k)`; as a tensor, the values",
               ("x",), TopkResultsAttrs, infer=_infer_topk, flops=_flops, results=("values", "indices"),
               result_types=_topk_results))
register(OpDef("topk_indices", "the indices (i64) of topk's values along `dim`, as torch.topk(...).indices",
               ("x",), TopkAttrs, infer=_infer_topk_indices, flops=_flops))
