"""Table lookup: integer ids of any shape -> their rows of a learned [vocab, dim] table, as nn.Embedding.

`embedding(ids, vocab, dim)` owns its table (`<node>.weight`, as nn.Embedding). `embedding(ids, weight=w)`
reads a [vocab, dim] tensor value instead and owns nothing, so a table can be shared: GPT-2's tied head is
`wte = parameter([vocab, d])`, `embedding(tokens, weight=wte)`, ..., `matmul(h, transpose(wte, 0, 1))`.
"""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, register

INDEX_DTYPES = ("i64", "i32")


class EmbeddingAttrs(OpAttrs):
    vocab: PositiveInt | None = None  # None: from `weight` (required without it)
    dim: PositiveInt | None = None
    operands: tuple[str, ...] = ("ids",)  # the operands given, set by the lowering (see OpDef.keyword_operands)


def _table(ctx: InferContext) -> tuple[int, int]:
    """(vocab, dim), from the attributes or the `weight` operand, which must agree when both are given."""
    vocab, dim = ctx.attrs.vocab, ctx.attrs.dim
    if "weight" not in ctx.attrs.operands:
        if vocab is None or dim is None:
            raise ctx.error("needs `vocab` and `dim` (embedding(ids, vocab, dim)), or a table `weight=` "
                            "of shape [vocab, dim]", "E0303")
        return vocab, dim
    w = ctx.types[1]
    if w.rank != 2 or w.dtype != "f32":
        raise ctx.error(f"`weight` must be an f32 [vocab, dim] table, got {ctx.describe(1)}", "E0402")
    have = (ctx.static(1, 0, "the table's vocab (dim 0)"), ctx.static(1, 1, "the table's dim (dim 1)"))
    for name, given, size in (("vocab", vocab, have[0]), ("dim", dim, have[1])):
        if given is not None and given != size:
            raise ctx.error(f"{name}={given} disagrees with the table {ctx.describe(1)}", "E0402")
    return have


def _infer(ctx: InferContext) -> TensorType:
    ids = ctx.types[0]
    if ids.dtype not in INDEX_DTYPES:
        raise ctx.error(f"expects integer ids (i64 or i32), got {ctx.describe(0)}", "E0403")
    # the table is f32 whatever the index type, so the output is too
    return TensorType("f32", ids.shape + (_table(ctx)[1],))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    if "weight" in ctx.attrs.operands:
        return {}  # the table is another value's: nothing of its own
    # dtype given explicitly: the default (the first operand's) would be the ids' integer type
    return {"weight": ParamSpec(_table(ctx), dtype="f32")}


register(OpDef("embedding", "look up integer ids in a learned [vocab, dim] table, as torch.nn.Embedding; "
                            "weight=w reads a shared table instead",
               ("ids", "weight"), EmbeddingAttrs, infer=_infer, params=_params,
               flops=lambda ctx: 0,  # a gather: no arithmetic
               optional=("weight",), keyword_operands=True))
