"""tensor_train: factor linear layers as a tensor train / MPO with a bond dimension (TT-SVD).

`tensor_train(bond=8, cores=3)` splits in and out features into `cores` factors
each (as balanced as their prime factors allow), views W [out, in] as a tensor
with one (o_k, i_k) index pair per core, and factors it by sequential truncated
SVDs (TT-SVD, Oseledets 2011) keeping at most `bond` singular vectors per cut.
At a bond at least the full TT rank of each cut the train reproduces W exactly.
A layer stays dense where the cores would not be smaller than W.

On an `embedding` the table [vocab, dim] is factored the same way into a `tt_embedding`
(TT-Embedding), the vocabulary as the rows. A vocabulary whose own factors are unbalanced
(GPT-2's 50257 = 29 x 1733) is padded with zero rows to the smallest balanced product at least
its size, when that stores fewer parameters than its own factors. On a `conv1d`/`conv2d` the
weight flattened to [out, in/groups * prod(kernel)] is factored, into a `tt_conv1d`/`tt_conv2d`.
"""

from __future__ import annotations

from math import prod
from typing import Any

from pydantic import Field, PositiveInt

from ..ir import Graph, Node
from ..ops.tt_conv import TTConv1dAttrs, TTConv2dAttrs
from ..ops.tt_embedding import TTEmbeddingAttrs
from ..ops.tt_linear import TTLinearAttrs
from . import Kept, TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._layers import with_bias


class TensorTrainArgs(TransformArgs):
    bond: PositiveInt = 8
    cores: int = Field(3, ge=2, le=8)


def modes(size: int, count: int) -> tuple[int, ...]:
    """`size` as a product of `count` factors, as equal as its prime factors allow (largest first; 1s pad)."""
    primes, rest, p = [], size, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * count
    for p in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= p
    return tuple(sorted(factors, reverse=True))


def tt_ranks(in_modes: tuple[int, ...], out_modes: tuple[int, ...], bond: int) -> tuple[int, ...]:
    """Bond dims: `bond`, capped by the largest rank each cut of the (o_k i_k) chain can have."""
    sizes = [o * i for o, i in zip(out_modes, in_modes)]
    return tuple(min(bond, prod(sizes[:k]), prod(sizes[k:])) for k in range(1, len(sizes)))


def padded_modes(size: int, count: int) -> tuple[int, ...]:
    """The most balanced `count` factors whose product is at least `size` (largest first)."""
    factors = [round(size ** (1 / count))] * count
    while prod(factors) < size:
        factors[factors.index(min(factors))] += 1
    for k in range(count):  # then each as small as the product allows
        while factors[k] > 1 and prod(factors) // factors[k] * (factors[k] - 1) >= size:
            factors[k] -= 1
    return tuple(sorted(factors, reverse=True))


def _stored(attrs: Any) -> int:
    """The parameters a train's cores hold."""
    return sum(prod(shape) for shape in attrs.core_shapes())


def _rewrite(graph: Graph, node: Node, args: TensorTrainArgs) -> str | None:
    if node.op == "embedding":
        return _rewrite_embedding(node, args)
    out_features, in_features = node.params["weight"].shape[0], prod(node.params["weight"].shape[1:])
    in_modes, out_modes = modes(in_features, args.cores), modes(out_features, args.cores)
    ranks = tt_ranks(in_modes, out_modes, args.bond)
    train = {"in_modes": in_modes, "out_modes": out_modes, "ranks": ranks}
    if node.op == "linear":
        attrs = TTLinearAttrs(out_features=out_features, bias=node.attrs.bias, **train)
    else:
        attrs = (TTConv1dAttrs if node.op == "conv1d" else TTConv2dAttrs)(**node.attrs.model_dump(), **train)
    size = _stored(attrs)
    if size >= in_features * out_features:
        return None
    node.op, node.attrs = "tt_" + node.op, attrs
    return (f"bond {max(ranks)}: cores {' x '.join(f'{o}x{i}' for o, i in zip(out_modes, in_modes))}, ranks "
            f"{list(ranks)}: {size:,} parameters instead of {in_features * out_features:,}")


def _rewrite_embedding(node: Node, args: TensorTrainArgs) -> str | None:
    if "weight" in node.attrs.operands:
        return Kept("it reads a table given as `weight=` (shared with other layers), which it does not own",
                    warn=True)
    vocab, dim = node.params["weight"].shape
    dim_modes = modes(dim, args.cores)
    trains = [TTEmbeddingAttrs(vocab=vocab, dim=dim, vocab_modes=v, dim_modes=dim_modes,
                               ranks=tt_ranks(dim_modes, v, args.bond))
              for v in (modes(vocab, args.cores), padded_modes(vocab, args.cores))]
    attrs = min(trains, key=_stored)
    size = _stored(attrs)
    if size >= vocab * dim:
        return None
    node.op, node.attrs = "tt_embedding", attrs
    padded = f" (vocabulary padded to {prod(attrs.vocab_modes):,})" if prod(attrs.vocab_modes) > vocab else ""
    return (f"bond {max(attrs.ranks)}: cores {' x '.join(f'{v}x{e}' for v, e in zip(attrs.vocab_modes, dim_modes))}"
            f"{padded}, ranks {list(attrs.ranks)}: {size:,} parameters instead of {vocab * dim:,}")


def tt_svd(weight: Any, attrs: TTLinearAttrs) -> list[Any]:
    """Cores [r_{k-1}, o_k, i_k, r_k] of W by sequential truncated SVDs (in float64)."""
    import torch

    d = len(attrs.in_modes)
    w = weight.detach().to(torch.float64).reshape(*attrs.out_modes, *attrs.in_modes)
    w = w.permute(*[j for k in range(d) for j in (k, d + k)])  # (o_1, i_1, o_2, i_2, ...)
    cores, bonds = [], (1, *attrs.ranks, 1)
    rest = w.reshape(1, -1)
    for k, (o, i) in enumerate(zip(attrs.out_modes, attrs.in_modes)):
        rest = rest.reshape(bonds[k] * o * i, -1)
        if k == d - 1:
            cores.append(rest.reshape(bonds[k], o, i, 1))
            break
        u, s, vh = torch.linalg.svd(rest, full_matrices=False)
        r = bonds[k + 1]
        cores.append(u[:, :r].reshape(bonds[k], o, i, r))
        rest = s[:r, None] * vh[:r]
    return cores


def tt_weight(cores: list[Any]) -> Any:
    """The [out, in] matrix a train of cores [r, o, i, s] stands for (for tests and error measures)."""
    import torch

    t = cores[0][0]  # [o_1, i_1, r_1]
    for core in cores[1:]:
        t = torch.einsum("OIr,rois->OoIis", t, core)
        t = t.reshape(t.shape[0] * t.shape[1], t.shape[2] * t.shape[3], t.shape[4])
    return t[:, :, 0]


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    import torch

    weight = dense["weight"].flatten(1)  # a convolution's [out, in/groups, *kernel] as [out, width]
    if node.op == "tt_embedding":  # zero rows for the padded vocabulary, never looked up
        weight = torch.cat([weight, weight.new_zeros(prod(node.attrs.vocab_modes) - weight.shape[0], weight.shape[1])])
    cores = tt_svd(weight, node.attrs)
    return with_bias({f"cores.{k}": c.to(weight.dtype).contiguous() for k, c in enumerate(cores)}, dense)


register_transform(Transform("tensor_train", "tensor-train (MPO) factorization of linear layers, embedding "
                                             "tables and convolutions by TT-SVD with a bond dimension", TensorTrainArgs,
                             frozenset({"linear", "embedding", "conv1d", "conv2d"}),
                             _rewrite, _convert))
