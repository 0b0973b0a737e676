"""A linear layer whose weight is a codebook lookup, as produced by the codebook transform.

Each row of W [out, in] is cut into subvectors of `dim` consecutive input
features; each subvector is stored as the index of one of `k` centroids and W is
rebuilt in forward as centroids[codes]. `codes` holds the in/dim indices of a row at
their bit width, ceil(log2 k) bits each, packed (specc/ops/bitpack.py: k=16 is two
codes a byte, [out, in/dim/2] uint8), or int32 [out, in/dim] when k > 256. The
centroids are trainable (fine-tuning moves every weight that shares a centroid
together); the codes are buffers.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register
from .bitpack import code_bits, packed_spec


class CodebookLinearAttrs(OpAttrs):
    out_features: PositiveInt
    k: int = Field(16, ge=1, le=2**31 - 1)
    dim: PositiveInt = 1
    bias: bool = True

    @property
    def code_bits(self) -> int | None:
        """Bits a stored code takes (None: int32 codes, k > 256)."""
        return code_bits(self.k)


def _in_features(ctx: InferContext) -> int:
    width = ctx.static(0, -1, "the input feature dim (last)")
    if width % ctx.attrs.dim:
        raise ctx.error(f"dim={ctx.attrs.dim} does not divide the input features of {ctx.describe(0)}")
    return width


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    _in_features(ctx)
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = {"centroids": ParamSpec((a.k, a.dim)), "codes": packed_spec(a.out_features, _in_features(ctx) // a.dim, a.k)}
    if a.bias:
        params["bias"] = ParamSpec((a.out_features,))
    return params


def _flops(ctx: InferContext) -> Dim:
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    return dim_mul(rows, 2 * _in_features(ctx) * ctx.attrs.out_features)


register(OpDef("codebook_linear", "linear layer whose weight subvectors index a trainable codebook of k centroids",
               ("x",), CodebookLinearAttrs, infer=_infer, params=_params, flops=_flops))
