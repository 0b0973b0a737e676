"""lowrank: replace a linear layer by a rank-r factorization (truncated SVD of its weight).

The layer stays dense where factoring would not save parameters, i.e. where
(in + out) * r >= in * out; the plan says why, and a rank at or above the layer's
full rank min(in, out) is also a warning (the spec asked for more than the layer has). `ordered=true` makes the factored layer train with
ordered dropout over its rank components.

On a `lowrank_linear` (a model compressed and trained before, as Maestro does), `lowrank` cuts the
rank further. A layer trained `ordered` keeps its first r components: ordered dropout trained every
prefix of them to stand on its own, so no refactoring is needed and the result is the model that
training already evaluated at rank r. Any other factored layer is refactored by the truncated SVD
of its product U V, the best rank-r approximation of the weight it computes.
"""

from __future__ import annotations

from typing import Any

from pydantic import PositiveInt

from ..ir import Graph, Node
from ..ops.lowrank_linear import LowRankLinearAttrs
from . import Calibration, Kept, LayerPlan, Transform, TransformArgs, register_transform


class LowRankArgs(TransformArgs):
    rank: PositiveInt
    ordered: bool = False


def _rewrite(graph: Graph, node: Node, args: LowRankArgs) -> str | None:
    if node.op == "lowrank_linear":
        return _shrink(node, args)
    out_features, in_features = node.params["weight"].shape
    full = min(in_features, out_features)
    if args.rank >= full:  # a stage selecting layers of several sizes may pass some: kept, with a warning
        return Kept(f"rank={args.rank} is not below its full rank {full} ({in_features} -> {out_features}), "
                    f"so there is nothing to factor away", warn=True)
    rank = args.rank
    if (in_features + out_features) * rank >= in_features * out_features:
        return Kept(f"rank {rank} would store {(in_features + out_features) * rank:,} parameters, not fewer than "
                    f"the {in_features * out_features:,} of the dense weight (a factorization saves only below "
                    f"rank {-(-in_features * out_features // (in_features + out_features))})")
    node.op = "lowrank_linear"
    node.attrs = LowRankLinearAttrs(out_features=out_features, rank=rank, bias=node.attrs.bias, ordered=args.ordered)
    return f"rank {rank}: {(in_features + out_features) * rank:,} parameters instead of {in_features * out_features:,}"


def _shrink(node: Node, args: LowRankArgs) -> str | None:
    """A factored layer's rank cut to `args.rank` (kept, with a warning, when that is no cut)."""
    rank, in_features = node.params["down.weight"].shape
    if args.rank >= rank:
        return Kept(f"rank={args.rank} is not below its rank {rank}, so there is nothing to cut", warn=True)
    how = "its first components (trained ordered)" if node.attrs.ordered else "the truncated SVD of U V"
    node.attrs = node.attrs.model_copy(update={"rank": args.rank, "ordered": args.ordered})
    per_rank = in_features + node.attrs.out_features
    return f"rank {rank} -> {args.rank}, keeping {how}: {per_rank * args.rank:,} parameters instead of {per_rank * rank:,}"


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    """Truncated SVD: W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), the best rank-r approximation in Frobenius norm
    (of a factored layer's product U V when cutting its rank, unless it was trained ordered: see the module)."""
    import torch

    r = node.attrs.rank
    bias = dense.get("bias", dense.get("up.bias"))
    if "weight" in dense:
        dtype, weight = dense["weight"].dtype, dense["weight"].to(torch.float64)
    elif plan.before_node is not None and plan.before_node.attrs.ordered:
        return {"down.weight": dense["down.weight"][:r], "up.weight": dense["up.weight"][:, :r],
                **({"up.bias": bias} if bias is not None else {})}
    else:
        dtype = dense["up.weight"].dtype
        weight = dense["up.weight"].to(torch.float64) @ dense["down.weight"].to(torch.float64)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:r].sqrt()
    out = {"down.weight": (root[:, None] * vh[:r]).to(dtype), "up.weight": (u[:, :r] * root[None, :]).to(dtype)}
    if bias is not None:
        out["up.bias"] = bias
    return out


register_transform(Transform("lowrank", "factor linear layers through a rank-r bottleneck (truncated SVD)",
                             LowRankArgs, frozenset({"linear", "lowrank_linear"}), _rewrite, _convert))
