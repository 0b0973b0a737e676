"""Table lookup: integer ids of any shape -> their rows of a learned [vocab, dim] table, as nn.Embedding."""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, register

INDEX_DTYPES = ("i64", "i32")


class EmbeddingAttrs(OpAttrs):
    vocab: PositiveInt
    dim: PositiveInt


def _infer(ctx: InferContext) -> TensorType:
    ids = ctx.types[0]
    if ids.dtype not in INDEX_DTYPES:
        raise ctx.error(f"expects integer ids (i64 or i32), got {ctx.describe(0)}", "E0403")
    # the table is f32 whatever the index type, so the output is too
    return TensorType("f32", ids.shape + (ctx.attrs.dim,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    # dtype given explicitly: the default (the first operand's) would be the ids' integer type
    return {"weight": ParamSpec((ctx.attrs.vocab, ctx.attrs.dim), dtype="f32")}


register(OpDef("embedding", "look up integer ids in a learned [vocab, dim] table, as torch.nn.Embedding",
               ("ids",), EmbeddingAttrs, infer=_infer, params=_params,
               flops=lambda ctx: 0))  # a gather: no arithmetic
