"""lowrank: replace a linear layer by a rank-r factorization (truncated SVD of its weight).

The layer stays dense where factoring would not save parameters, i.e. where
(in + out) * r >= in * out; the plan says why, and a rank at or above the layer's
full rank min(in, out) is also a warning (the spec asked for more than the layer has). `ordered=true` makes the factored layer train with
ordered dropout over its rank components.
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


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    """Truncated SVD: W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T), the best rank-r approximation in Frobenius norm."""
    import torch

    weight = dense["weight"].to(torch.float64)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    r = node.attrs.rank
    root = s[:r].sqrt()
    out = {"down.weight": (root[:, None] * vh[:r]).to(dense["weight"].dtype),
           "up.weight": (u[:, :r] * root[None, :]).to(dense["weight"].dtype)}
    if "bias" in dense:
        out["up.bias"] = dense["bias"]
    return out


register_transform(Transform("lowrank", "factor linear layers through a rank-r bottleneck (truncated SVD)",
                             LowRankArgs, frozenset({"linear"}), _rewrite, _convert))
