"""Sparse linear layers, as produced by the sparsity and prune transforms.

- `nm_linear`: N:M structured sparsity. In every group of m consecutive input
  features of a row exactly n weights are kept. Stored compactly: `values`
  [out, in*n/m] (the kept weights, trainable) and `pattern` (which of the C(m, n)
  candidate position sets each of a row's in/m groups keeps, in the lexicographic
  order of itertools.combinations), at its bit width ceil(log2 C(m, n)), packed
  (specc/ops/bitpack.py: 2:4's 6 candidates take 3 bits a group, [out, ceil(in/4 * 3/8)]
  uint8), or int32 [out, in/m] beyond 256 candidates. The dense weight is rebuilt in
  forward.
- `nm_mask_linear`: learnable N:M masks (MaskLLM). A dense `weight` and per-group
  `logits` over the C(m, n) candidate masks; training samples a hard mask by
  Gumbel-softmax with temperature tau (gradients reach the logits through the
  straight-through estimator); inference uses each group's argmax mask. With
  `tau_end`, the layer's `anneal(progress)` moves the temperature linearly from tau
  to tau_end as training progresses (MaskLLM: 4 -> 0.05), and `kept_weight_norm()`
  is MaskLLM's sparse weight regularizer, |W * M|^2 under the mask last sampled.
- `masked_linear`: unstructured pruning. A dense `weight` whose zeros are the pruned
  weights: no mask is stored (it would take a byte per weight, 1.25x the weight's
  storage, and lift a forward's peak above dense). The torch layer multiplies the
  weight by `weight != 0` only while autograd records, which zeroes a pruned weight's
  gradient, so fine-tuning cannot regrow it; inference is the dense matmul.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

from pydantic import Field, PositiveInt, model_validator

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register
from .bitpack import code_bits, packed_spec


class NMAttrs(OpAttrs):
    out_features: PositiveInt
    n: PositiveInt = 2
    m: int = Field(4, ge=2, le=16)
    bias: bool = True

    @model_validator(mode="after")
    def _n_below_m(self) -> "NMAttrs":
        if self.n >= self.m:
            raise ValueError(f"n={self.n} must be less than m={self.m} (n of every m weights are kept)")
        return self

    @property
    def positions(self) -> list[tuple[int, ...]]:
        """The kept positions of each candidate mask of a group (itertools.combinations order)."""
        return list(combinations(range(self.m), self.n))

    @property
    def candidates(self) -> int:
        return comb(self.m, self.n)

    @property
    def pattern_bits(self) -> int | None:
        """Bits a group's stored pattern index takes (None: int32, more than 256 candidates)."""
        return code_bits(self.candidates)


class NMMaskAttrs(NMAttrs):
    tau: float = Field(1.0, gt=0)
    tau_end: float | None = Field(None, gt=0)  # None: tau throughout; else `anneal` moves tau to it


class MaskedLinearAttrs(OpAttrs):
    out_features: PositiveInt
    bias: bool = True


def _in_features(ctx: InferContext) -> int:
    width = ctx.static(0, -1, "the input feature dim (last)")
    m = getattr(ctx.attrs, "m", 1)
    if width % m:
        raise ctx.error(f"m={m} does not divide the input features of {ctx.describe(0)}: "
                        f"N:M groups run along the input dim", "E0402")
    return width


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    _in_features(ctx)
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _with_bias(ctx: InferContext, params: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
    if ctx.attrs.bias:
        params["bias"] = ParamSpec((ctx.attrs.out_features,))
    return params


def _nm_params(ctx: InferContext) -> dict[str, ParamSpec]:
    a, width = ctx.attrs, _in_features(ctx)
    return _with_bias(ctx, {"values": ParamSpec((a.out_features, width // a.m * a.n)),
                            "pattern": packed_spec(a.out_features, width // a.m, a.candidates)})


def _nm_mask_params(ctx: InferContext) -> dict[str, ParamSpec]:
    a, width = ctx.attrs, _in_features(ctx)
    return _with_bias(ctx, {"weight": ParamSpec((a.out_features, width)),
                            "logits": ParamSpec((a.out_features, width // a.m, comb(a.m, a.n)))})


def _masked_params(ctx: InferContext) -> dict[str, ParamSpec]:
    width = _in_features(ctx)
    return _with_bias(ctx, {"weight": ParamSpec((ctx.attrs.out_features, width))})


def _flops(ctx: InferContext) -> Dim:
    """Dense multiply-adds, except N:M which a sparse kernel runs at n/m of them."""
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    macs = _in_features(ctx) * ctx.attrs.out_features
    if ctx.node.op == "nm_linear":
        macs = macs // ctx.attrs.m * ctx.attrs.n
    return dim_mul(rows, 2 * macs)


register(OpDef("nm_linear", "linear layer with N:M structured sparsity (n of every m input weights kept), "
                            "stored as kept values plus a pattern index per group",
               ("x",), NMAttrs, infer=_infer, params=_nm_params, flops=_flops))
register(OpDef("nm_mask_linear", "linear layer learning N:M masks: Gumbel-softmax over the candidate masks of each "
                                 "group in training, the argmax mask in inference",
               ("x",), NMMaskAttrs, infer=_infer, params=_nm_mask_params, flops=_flops))
register(OpDef("masked_linear", "linear layer whose zero weights are pruned and stay zero in training "
                                "(unstructured pruning)",
               ("x",), MaskedLinearAttrs, infer=_infer, params=_masked_params, flops=_flops))
