"""prune: unstructured pruning of linear layers by magnitude or at random.

`prune(amount=0.5, method=magnitude)` zeroes exactly round(amount * in * out)
weights of each selected layer (the smallest in magnitude, or a seeded random
choice with method=random) and stores the layer as `masked_linear`. The zeros are
the mask: no mask tensor is stored, so the layer takes exactly a dense layer's
storage and forward memory, and its training forward zeroes the gradient of a
zero weight, which keeps pruned weights zero through fine-tuning. Unstructured
zeros only pay off with a sparse runtime.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..ir import Graph, Node
from ..ops.sparse_linear import MaskedLinearAttrs
from . import TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._layers import linear_shape, with_bias


class PruneArgs(TransformArgs):
    amount: float = Field(0.5, gt=0, lt=1)
    method: Literal["magnitude", "random"] = "magnitude"
    seed: int = 0


def _pruned(out_features: int, in_features: int, amount: float) -> int:
    return round(amount * out_features * in_features)


def _rewrite(graph: Graph, node: Node, args: PruneArgs) -> str | None:
    out_features, in_features = linear_shape(node)
    node.op, node.attrs = "masked_linear", MaskedLinearAttrs(out_features=out_features, bias=node.attrs.bias)
    return (f"{args.method}: {_pruned(out_features, in_features, args.amount):,} of {out_features * in_features:,} "
            f"weights zeroed")


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    import torch

    weight, args = dense["weight"], plan.args
    count = _pruned(*weight.shape, args.amount)
    if args.method == "magnitude":  # the smallest magnitudes (ties: the earlier entry)
        order = weight.detach().abs().flatten().argsort(stable=True)
    else:
        order = torch.randperm(weight.numel(), generator=torch.Generator().manual_seed(args.seed))
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:count]] = False
    return with_bias({"weight": weight * mask.view_as(weight)}, dense)


register_transform(Transform("prune", "unstructured pruning (magnitude or random); the zeros stay zero in training",
                             PruneArgs, frozenset({"linear"}), _rewrite, _convert))
