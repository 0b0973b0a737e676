"""sparsity: N:M structured sparsity of linear layers (n of every m consecutive input weights kept).

`sparsity(pattern=2:4)` keeps, in each group of m input weights of a row, the n of
largest magnitude, and stores the layer as `nm_linear` (kept values plus a pattern
index per group). `sparsity(pattern=2:4, learnable=true, tau=1.0)` instead makes
an `nm_mask_linear` that learns its masks by Gumbel-softmax over each group's
candidate masks, starting from logits that favor the magnitude mask; with
`tau_end=0.05` its temperature anneals from tau to tau_end as the training loop
calls each layer's `anneal(progress)` (MaskLLM anneals 4 -> 0.05). Applying
`sparsity` (not learnable) to an `nm_mask_linear` afterwards freezes the learned
argmax masks into the compact `nm_linear` form.
"""

from __future__ import annotations

from math import comb
from typing import Any, Mapping

from pydantic import Field, field_validator, model_validator

from ..ir import Graph, Node
from ..ops.bitpack import pack, unpack
from ..ops.sparse_linear import NMAttrs, NMMaskAttrs
from . import TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._layers import cannot_apply, linear_shape, with_bias


class SparsityArgs(TransformArgs):
    pattern: tuple[int, int] = (2, 4)
    learnable: bool = False
    tau: float = Field(1.0, gt=0)
    tau_end: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _temperatures_of_learned_masks(self) -> "SparsityArgs":
        if self.tau_end is not None and not self.learnable:
            raise ValueError("tau_end anneals the temperature of learnable masks: it needs learnable=true")
        return self

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, pattern: tuple[int, int]) -> tuple[int, int]:
        # a field validator, so the error names `pattern` and points at its value
        n, m = pattern
        if not 1 <= n < m <= 16:
            raise ValueError(f"pattern {n}:{m} must keep 1 <= n < m <= 16 of every m weights")
        return pattern


def _rewrite(graph: Graph, node: Node, args: SparsityArgs) -> str | None:
    n, m = args.pattern
    if node.op == "nm_mask_linear" and (args.learnable or (node.attrs.n, node.attrs.m) != (n, m)):
        return None  # already learning masks, or masks of another pattern: nothing to freeze
    out_features, in_features = linear_shape(node)
    if in_features % m:
        raise cannot_apply(node, f"pattern {n}:{m} groups m={m} input features, but the layer has {in_features}",
                           help="exclude it with `except`, or choose an m that divides its input features")
    common = dict(out_features=out_features, n=n, m=m, bias=node.attrs.bias)
    if args.learnable:
        node.attrs = NMMaskAttrs(**common, tau=args.tau, tau_end=args.tau_end)
        node.op = "nm_mask_linear"
        tau = f"tau {args.tau}" + (f" -> {args.tau_end}" if args.tau_end is not None else "")
        return f"learnable {n}:{m} masks over {comb(m, n)} candidates per group ({tau})"
    frozen = node.op == "nm_mask_linear"
    node.op, node.attrs = "nm_linear", NMAttrs(**common)
    kept = out_features * in_features // m * n
    return (f"{n}:{m}{' from the learned masks' if frozen else ''}: {kept:,} of {out_features * in_features:,} "
            f"weights kept")


def pattern_index(keep: Any, m: int, n: int) -> Any:
    """Which candidate (NMAttrs.positions order) each group's boolean keep-mask [..., m] is."""
    import torch

    attrs = NMAttrs(out_features=1, n=n, m=m)
    lookup = torch.zeros(2 ** m, dtype=torch.long)
    for c, positions in enumerate(attrs.positions):
        lookup[sum(1 << p for p in positions)] = c
    return lookup[(keep.long() << torch.arange(m)).sum(-1)]


def _compact(weight: Any, pattern: Any, n: int, m: int) -> dict[str, Any]:
    """nm_linear's state for a weight and its per-group pattern indices (stored packed, see bitpack)."""
    import torch

    out_features = weight.shape[0]
    positions = torch.tensor(NMAttrs(out_features=1, n=n, m=m).positions)
    keep = positions[pattern]  # [out, groups, n]
    values = weight.view(out_features, -1, m).gather(-1, keep).reshape(out_features, -1)
    return {"values": values, "pattern": pack(pattern, len(positions))}


def nm_weight(state: Mapping[str, Any], n: int, m: int) -> Any:
    """The [out, in] weight an nm_linear layer's state (`values`, packed `pattern`) computes with: its
    kept values at their pattern's positions, zeros elsewhere."""
    import torch

    attrs = NMAttrs(out_features=1, n=n, m=m)
    values = state["values"]
    groups = values.shape[1] // n
    pattern = unpack(state["pattern"], attrs.candidates, groups)
    positions = torch.tensor(attrs.positions, device=values.device)
    weight = values.new_zeros(values.shape[0], groups, m)
    return weight.scatter_(-1, positions[pattern], values.reshape(-1, groups, n)).flatten(1)


def _candidate_masks(n: int, m: int) -> Any:
    import torch

    positions = torch.tensor(NMAttrs(out_features=1, n=n, m=m).positions)
    return torch.zeros(len(positions), m).scatter(1, positions, 1.0)


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    import torch

    a = node.attrs
    weight = dense["weight"]
    grouped = weight.detach().view(weight.shape[0], -1, a.m)
    if node.op == "nm_mask_linear":
        # logits favoring the magnitude mask: each candidate scores the magnitude it keeps, in units of the
        # layer's mean magnitude, so the Gumbel noise still explores the close alternatives
        scores = grouped.abs() @ _candidate_masks(a.n, a.m).to(weight.dtype).t()
        logits = scores / grouped.abs().mean().clamp(min=1e-12)
        return with_bias({"weight": weight, "logits": logits}, dense)
    if "logits" in dense:  # frozen from a learnable layer: its argmax masks
        pattern = dense["logits"].argmax(-1)
    else:  # the n largest magnitudes of each group (ties: the earlier position)
        order = grouped.abs().argsort(dim=-1, descending=True, stable=True)[..., :a.n]
        pattern = pattern_index(torch.zeros_like(grouped, dtype=torch.bool).scatter(-1, order, True), a.m, a.n)
    return with_bias(_compact(weight, pattern, a.n, a.m), dense)


register_transform(Transform("sparsity", "N:M structured sparsity (2:4 by default) by magnitude, or learnable N:M "
                                         "masks (Gumbel-softmax over the candidate masks)",
                             SparsityArgs, frozenset({"linear", "nm_mask_linear"}), _rewrite, _convert))
