"""A mixture of experts whose experts were merged into fewer groups, as produced by the merge_experts transform.

Routing is the `moe` op's, over the original `experts` (router [experts, d]):
each token's top_k softmax probabilities, renormalized. An `expert_group`
buffer (int64 [experts]) maps every original expert to one of `groups` merged
experts, and a group's gate is the sum of its members' gates; only the merged
experts' weights exist (w1 [groups, hidden, d], b1, w2 [groups, d, hidden], b2).

With rank > 0 each merged expert matrix is stored as a low-rank product plus a
sparse residual: w1 = w1_u [groups, hidden, rank] @ w1_v [groups, rank, d], plus
`nnz` entries per group scattered at flat positions w1_index (int32 buffer) with
values w1_values (and likewise for w2).
"""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class MoEMergedAttrs(OpAttrs):
    experts: PositiveInt
    groups: PositiveInt
    top_k: PositiveInt
    hidden: PositiveInt
    rank: int = Field(0, ge=0)  # 0: merged experts are dense
    nnz: int = Field(0, ge=0)  # sparse residual entries per merged expert matrix (needs rank > 0)

    @model_validator(mode="after")
    def _consistent(self) -> "MoEMergedAttrs":
        if self.groups > self.experts:
            raise ValueError(f"groups={self.groups} is more than experts={self.experts}")
        if self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} is more than experts={self.experts}")
        if self.nnz and not self.rank:
            raise ValueError("a sparse residual (nnz > 0) needs a low-rank part (rank > 0)")
        return self


def _model_dim(ctx: InferContext) -> int:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    d, a = ctx.static(0, -1, "the feature dim (last)"), ctx.attrs
    if a.rank > min(a.hidden, d):
        raise ctx.error(f"rank={a.rank} is more than min(hidden, d) = {min(a.hidden, d)} for {ctx.describe(0)}")
    if a.nnz > a.hidden * d:
        raise ctx.error(f"nnz={a.nnz} is more than the {a.hidden * d} entries of an expert matrix")
    return d


def _infer(ctx: InferContext) -> TensorType:
    _model_dim(ctx)
    return ctx.types[0]


def _matrix(name: str, groups: int, rows: int, cols: int, rank: int, nnz: int) -> dict[str, ParamSpec]:
    if not rank:
        return {name: ParamSpec((groups, rows, cols))}
    params = {f"{name}_u": ParamSpec((groups, rows, rank)), f"{name}_v": ParamSpec((groups, rank, cols))}
    if nnz:
        params[f"{name}_index"] = ParamSpec((groups, nnz), trainable=False, dtype="i32")
        params[f"{name}_values"] = ParamSpec((groups, nnz))
    return params


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    d, a = _model_dim(ctx), ctx.attrs
    return {"router": ParamSpec((a.experts, d)),
            "expert_group": ParamSpec((a.experts,), trainable=False, dtype="i64"),
            **_matrix("w1", a.groups, a.hidden, d, a.rank, a.nnz), "b1": ParamSpec((a.groups, a.hidden)),
            **_matrix("w2", a.groups, d, a.hidden, a.rank, a.nnz), "b2": ParamSpec((a.groups, d))}


def _flops(ctx: InferContext) -> Dim:
    """Per token: the router and at most top_k merged experts (fewer when chosen experts share a group)."""
    d, a = _model_dim(ctx), ctx.attrs
    tokens = dim_div(ctx.node.type.numel(), d)
    expert = 2 * 2 * (a.rank * (a.hidden + d) + a.nnz) if a.rank else 2 * 2 * d * a.hidden
    return dim_mul(tokens, 2 * d * a.experts + min(a.top_k, a.groups) * expert)


register(OpDef("moe_merged", "mixture of experts whose experts are merged into groups: the original router, an "
                             "expert->group map, and the merged experts (dense, or low-rank plus sparse)",
               ("x",), MoEMergedAttrs, infer=_infer, params=_params, flops=_flops))
