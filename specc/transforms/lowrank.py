"""lowrank: replace a linear layer by a rank-r factorization (truncated SVD of its weight).

The layer stays dense where factoring would not save parameters, i.e. where
(in + out) * r >= in * out. `ordered=true` makes the factored layer train with
ordered dropout over its rank components.
"""

from __future__ import annotations

from typing import Any

from pydantic import PositiveInt

from ..ir import Graph, Node
from ..ops.lowrank_linear import LowRankLinearAttrs
from . import Calibration, LayerPlan, Transform, TransformArgs, register_transform


class LowRankArgs(TransformArgs):
    rank: PositiveInt
    ordered: bool = False


def _rewrite(graph: Graph, node: Node, args: LowRankArgs) -> str | None:
    out_features, in_features = node.params["weight"].shape
    rank = min(args.rank, in_features, out_features)
    if (in_features + out_features) * rank >= in_features * out_features:
        return None
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
