"""An embedding table stored quantized, as `quantize on embedding` makes it: codes and scales per row.

The [vocab, dim] table is stored as quant_linear stores a weight (specc/ops/quant_linear.py):
`qweight` (int8 [vocab, dim], or int4 two a byte [vocab, ceil(dim/2)]), `scale` [vocab, groups] and,
when asymmetric, `zero` — one scale per row, or per `group` consecutive features of a row. A lookup
gathers the ids' rows of codes and scales and dequantizes only those rows (never the table), on every
target: torch and triton index the buffers, onnx Gathers them before Cast/Sub/Mul.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, register
from .embedding import INDEX_DTYPES
from .quant_linear import storage


class QuantEmbeddingAttrs(OpAttrs):
    vocab: PositiveInt
    dim: PositiveInt
    bits: Literal[4, 8] = 8
    group: PositiveInt | None = None  # features per scale; None: one scale per row
    symmetric: bool = True


def _infer(ctx: InferContext) -> TensorType:
    ids = ctx.types[0]
    if ids.dtype not in INDEX_DTYPES:
        raise ctx.error(f"expects integer ids (i64 or i32), got {ctx.describe(0)}", "E0403")
    if ctx.attrs.group is not None and ctx.attrs.group > ctx.attrs.dim:
        raise ctx.error(f"group={ctx.attrs.group} is wider than the table's dim={ctx.attrs.dim}")
    return TensorType("f32", ids.shape + (ctx.attrs.dim,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    # a dtype left unset would be the first operand's, the ids' integer type: the scales are f32
    return {k: replace(p, dtype=p.dtype or "f32") for k, p in storage(a.bits, a.symmetric, a.vocab, a.dim, a.group).items()}


register(OpDef("quant_embedding", "look up integer ids in an int8/int4 quantized [vocab, dim] table (codes and "
                                  "scales per row, dequantized after the gather)",
               ("ids",), QuantEmbeddingAttrs, infer=_infer, params=_params))
