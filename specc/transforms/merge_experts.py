"""merge_experts: merge the experts of a mixture-of-experts layer into fewer groups (M-SMoE style).

`merge_experts(groups=2, rank=0, sparse=0.0, align=true)` rewrites a `moe` layer into
`moe_merged`: the router is kept, every original expert is mapped to a group,
and only one (merged) expert per group is stored, so the merged experts are
really gone from the state dict.

Conversion, with calibration inputs (`specc compress --calib`) giving the layer's
input tokens (standard Gaussian tokens stand in without them):
  1. usage frequency: how often each expert is among a token's top_k;
  2. the `groups` most used experts are the dominant ones, one per group;
  3. every other expert joins the dominant expert whose router logits over the
     tokens are most similar (cosine), i.e. that the router treats most alike;
  4. with `align` (MC-SMoE, Li et al. 2023, "Merge, then compress"), each member's hidden
     neurons are first permuted to match the group's dominant expert's: an expert computes the
     same function with its hidden units in any order (rows of w1 and b1, columns of w2 permuted
     together), but averaging experts whose neuron i means different things blurs them. The
     permutation maximizes the summed similarity of matched neurons (their w1 row, b1 entry and
     w2 column), solved exactly as a linear assignment;
  5. each group's expert is the usage-weighted average of its members' (aligned) weights.
With rank > 0 each merged matrix is further stored as its rank-r truncated SVD
plus the `sparse` fraction of largest-magnitude residual entries.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, model_validator

from ..ir import Graph, Node
from ..ops.moe_merged import MoEMergedAttrs
from . import TransformArgs, Calibration, Kept, LayerPlan, Transform, register_transform
from ._layers import cannot_apply

STAND_IN_TOKENS = 4096


class MergeExpertsArgs(TransformArgs):
    groups: PositiveInt = 2
    rank: int = Field(0, ge=0)
    sparse: float = Field(0.0, ge=0, lt=1)
    align: bool = True  # permute each member's hidden neurons to its group's dominant expert before averaging
    seed: int = 0  # for the stand-in tokens when there is no calibration data

    @model_validator(mode="after")
    def _sparse_needs_rank(self) -> "MergeExpertsArgs":
        if self.sparse and not self.rank:
            raise ValueError("a sparse residual (sparse > 0) complements a low-rank part: give rank > 0 too")
        return self


def _rewrite(graph: Graph, node: Node, args: MergeExpertsArgs) -> str | None:
    a = node.attrs
    if args.groups > a.experts:
        raise cannot_apply(node, f"groups={args.groups} is more than its {a.experts} experts",
                           help=f"merge into fewer groups than experts (groups < {a.experts})")
    if args.groups == a.experts:
        return Kept(f"groups={args.groups} is its number of experts: nothing to merge", warn=True)
    if a.expert != "gelu" or a.routed or a.all_results:
        return Kept(f"only gelu experts with their own router are merged (this layer: expert={a.expert}"
                    f"{', routed' if a.routed else ''}{', all_results' if a.all_results else ''})", warn=True)
    d = node.params["router"].shape[1]
    full = min(a.hidden, d)
    if args.rank > full:  # no rank-r factors of a hidden x d matrix exist past min(hidden, d)
        raise cannot_apply(node, f"rank={args.rank} is more than min(hidden, d) = min({a.hidden}, {d}) = {full}",
                           help=f"choose rank < {-(-a.hidden * d // (a.hidden + d))} to store less than a dense "
                                f"merged expert, or rank=0 to keep the merged experts dense")
    rank = args.rank
    nnz = round(args.sparse * a.hidden * d)
    if rank and rank * (a.hidden + d) + nnz >= a.hidden * d:  # the factored form would be the bigger one
        raise cannot_apply(node, f"rank={rank}{f' plus {nnz:,} sparse entries' if nnz else ''} stores "
                                 f"{rank * (a.hidden + d) + nnz:,} parameters per merged matrix, not fewer than "
                                 f"the {a.hidden * d:,} of a dense one ({a.hidden} x {d})",
                           help=f"choose rank < {-(-(a.hidden * d - nnz) // (a.hidden + d))}, or rank=0 to keep "
                                f"the merged experts dense")
    node.op = "moe_merged"
    node.attrs = MoEMergedAttrs(experts=a.experts, groups=args.groups, top_k=a.top_k, hidden=a.hidden, rank=rank,
                                nnz=nnz)
    per_expert = rank * (a.hidden + d) + nnz if rank else a.hidden * d
    form = f", each rank {rank}{f' + {nnz:,} sparse' if nnz else ''}" if rank else ""
    before, after = a.experts * (2 * a.hidden * d + a.hidden + d), args.groups * (2 * per_expert + a.hidden + d)
    return f"{a.experts} -> {args.groups} experts{form}: {after:,} expert parameters instead of {before:,}"


def routing(x: Any, router: Any, top_k: int) -> tuple[Any, Any]:
    """(usage frequency [experts], router logits [tokens, experts]) of tokens x [..., d]."""
    import torch

    logits = x.reshape(-1, router.shape[1]).to(torch.float64) @ router.to(torch.float64).t()
    chosen = logits.topk(top_k, dim=-1).indices
    counts = torch.bincount(chosen.flatten(), minlength=router.shape[0]).to(torch.float64)
    return counts / max(logits.shape[0], 1), logits


def assign_groups(frequency: Any, logits: Any, groups: int) -> list[int]:
    """Group of each expert: the dominant (most used) experts lead one group each, in expert order;
    the others join the dominant expert with the most similar router logits."""
    import torch

    experts = frequency.shape[0]
    dominant = sorted(sorted(range(experts), key=lambda e: (-float(frequency[e]), e))[:groups])
    unit = logits / logits.norm(dim=0, keepdim=True).clamp(min=1e-12)
    similarity = unit.t() @ unit  # [experts, experts] cosine of logit columns
    lead = torch.tensor(dominant)
    return [dominant.index(e) if e in dominant else int(similarity[e, lead].argmax()) for e in range(experts)]


def align_neurons(dense: dict[str, Any], assignment: list[int], frequency: Any) -> dict[str, Any]:
    """`dense`'s w1, b1, w2 with each expert's hidden neurons permuted to match its group's dominant
    (most used) member's: each expert's function is unchanged, so merging then averages like with like."""
    import torch
    from scipy.optimize import linear_sum_assignment

    w1, b1, w2 = (dense[k].to(torch.float64) for k in ("w1", "b1", "w2"))
    neurons = torch.cat([w1, b1[..., None], w2.transpose(1, 2)], dim=-1)  # [experts, hidden, 2 d + 1]
    order = torch.arange(w1.shape[1]).repeat(w1.shape[0], 1)
    for g in set(assignment):
        members = [e for e, a in enumerate(assignment) if a == g]
        lead = max(members, key=lambda e: (float(frequency[e]), -e))
        for e in members:
            if e != lead:  # order[e][i]: the neuron of e matched with the lead's neuron i
                order[e] = torch.as_tensor(linear_sum_assignment(-(neurons[lead] @ neurons[e].t()).numpy())[1])
    out = dict(dense)
    out["w1"] = torch.stack([dense["w1"][e, order[e]] for e in range(len(assignment))])
    out["b1"] = torch.stack([dense["b1"][e, order[e]] for e in range(len(assignment))])
    out["w2"] = torch.stack([dense["w2"][e][:, order[e]] for e in range(len(assignment))])
    return out


def merge(stacked: Any, assignment: list[int], weights: Any, groups: int) -> Any:
    """Per group, the weights-weighted average of its members' slices of `stacked` [experts, ...]."""
    import torch

    out = []
    for g in range(groups):
        members = [e for e, a in enumerate(assignment) if a == g]
        w = weights[members].to(torch.float64)
        w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1 / len(members))
        out.append(torch.einsum("e,e...->...", w, stacked[members].to(torch.float64)))
    return torch.stack(out).to(stacked.dtype)


def lowrank_sparse(w: Any, rank: int, nnz: int) -> dict[str, Any]:
    """w [groups, rows, cols] ~ u @ v (truncated SVD) + nnz largest residual entries per group."""
    import torch

    u, s, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
    root = s[:, :rank].sqrt()
    out = {"u": u[:, :, :rank] * root[:, None, :], "v": root[:, :, None] * vh[:, :rank]}
    if nnz:
        residual = (w.to(torch.float64) - out["u"] @ out["v"]).flatten(1)
        index = residual.abs().topk(nnz, dim=1).indices.sort(dim=1).values
        out["index"] = index.to(torch.int32)
        out["values"] = residual.gather(1, index)
    return {k: v.to(w.dtype) if v.is_floating_point() else v for k, v in out.items()}


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    import torch

    a, router = node.attrs, dense["router"]
    if calib is not None:
        tokens = calib.operands_of(plan.layer)[0]
    else:
        gen = torch.Generator().manual_seed(plan.args.seed)
        tokens = torch.randn(STAND_IN_TOKENS, router.shape[1], generator=gen, dtype=torch.float64)
    frequency, logits = routing(tokens, router, a.top_k)
    assignment = assign_groups(frequency, logits, a.groups)
    if plan.args.align:
        dense = align_neurons(dense, assignment, frequency)
    out = {"router": router, "expert_group": torch.tensor(assignment, dtype=torch.int64)}
    for name in ("w1", "b1", "w2", "b2"):
        merged = merge(dense[name], assignment, frequency, a.groups)
        if a.rank and name in ("w1", "w2"):
            out.update({f"{name}_{part}": t for part, t in lowrank_sparse(merged, a.rank, a.nnz).items()})
        else:
            out[name] = merged
    return out


register_transform(Transform("merge_experts", "merge MoE experts into fewer groups by usage and router-logit "
                                              "similarity (frequency-weighted), optionally low-rank + sparse",
                             MergeExpertsArgs, frozenset({"moe"}), _rewrite, _convert))
