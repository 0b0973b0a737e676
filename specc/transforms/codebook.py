"""codebook: vector quantization of linear layers by k-means.

`codebook(k=16, dim=1)` cuts each weight row into subvectors of `dim` input
features, clusters all of a layer's subvectors into k centroids (k-means++ seeding,
then Lloyd iterations) and stores the layer as `codebook_linear`: a code per
subvector at its bit width (ceil(log2 k) bits, packed; int32 beyond k = 256) and the
k centroids. When a layer has at most k
distinct subvectors the centroids are exactly those, and the layer is unchanged.
A layer stays dense where the codes and codebook would not be smaller.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt

from ..ir import Graph, Node
from ..ops.bitpack import pack, packed_spec
from ..ops.codebook_linear import CodebookLinearAttrs
from ..types import DTYPES
from . import TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._layers import cannot_apply, linear_shape, with_bias


class CodebookArgs(TransformArgs):
    k: int = Field(16, ge=1, le=2**31 - 1)
    dim: PositiveInt = 1
    iters: PositiveInt = 25
    seed: int = 0


def _rewrite(graph: Graph, node: Node, args: CodebookArgs) -> str | None:
    out_features, in_features = linear_shape(node)
    if in_features % args.dim:
        raise cannot_apply(node, f"subvectors of dim={args.dim} do not tile its {in_features} input features")
    codes = packed_spec(out_features, in_features // args.dim, args.k)
    stored = codes.shape[0] * codes.shape[1] * DTYPES[codes.dtype][2] + args.k * args.dim * 4
    if stored >= out_features * in_features * 4:
        return None  # int32 codes for a huge k, or a codebook bigger than the layer
    node.op = "codebook_linear"
    node.attrs = CodebookLinearAttrs(out_features=out_features, k=args.k, dim=args.dim, bias=node.attrs.bias)
    dense = out_features * in_features * 4
    return f"k={args.k} centroids of dim {args.dim}: {stored:,} weight bytes instead of {dense:,}"


def _nearest(points: Any, centroids: Any, chunk: int = 4096) -> tuple[Any, Any]:
    """Index of and squared distance to the nearest centroid for each point, in chunks to bound memory."""
    import torch

    codes, dists = [], []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], centroids).pow(2)
        best = d.min(dim=1)
        codes.append(best.indices)
        dists.append(best.values)
    return torch.cat(codes), torch.cat(dists)


def kmeans(points: Any, k: int, iters: int = 25, seed: int = 0) -> tuple[Any, Any]:
    """(centroids [k, dim], codes [n]) of points [n, dim]; exact when there are at most k distinct points."""
    import torch

    points = points.to(torch.float64)
    unique, inverse = torch.unique(points, dim=0, return_inverse=True)
    if unique.shape[0] <= k:  # lossless: every distinct point is a centroid (the spare ones repeat the last)
        spare = unique[-1:].expand(k - unique.shape[0], -1)
        return torch.cat([unique, spare]), inverse
    gen = torch.Generator().manual_seed(seed)
    # k-means++: each next seed drawn with probability proportional to its squared distance to the chosen ones
    centroids = points[torch.randint(points.shape[0], (1,), generator=gen)]
    dist = _nearest(points, centroids)[1]
    for _ in range(1, k):
        pick = torch.multinomial(dist.clamp(min=0) + 1e-30, 1, generator=gen)
        centroids = torch.cat([centroids, points[pick]])
        dist = torch.minimum(dist, (points - points[pick]).pow(2).sum(-1))
    for _ in range(iters):
        codes = _nearest(points, centroids)[0]
        sums = torch.zeros_like(centroids).index_add_(0, codes, points)
        counts = torch.bincount(codes, minlength=k).to(points.dtype)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)  # empty: stay
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids, _nearest(points, centroids)[0]


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    weight, a = dense["weight"], node.attrs
    centroids, codes = kmeans(weight.detach().reshape(-1, a.dim), a.k, plan.args.iters, plan.args.seed)
    return with_bias({"centroids": centroids.to(weight.dtype), "codes": pack(codes.view(weight.shape[0], -1), a.k)},
                     dense)


register_transform(Transform("codebook", "vector quantization: weight subvectors replaced by the nearest of k "
                                         "k-means centroids (codes + codebook)",
                             CodebookArgs, frozenset({"linear"}), _rewrite, _convert))
