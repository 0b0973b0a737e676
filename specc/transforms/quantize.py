"""quantize: weight-only int8/int4 quantization, or a mixed per-layer choice under a size budget.

`quantize(int4, group=128, symmetric=true)` rewrites each selected linear into
`quant_linear` (see specc/ops/quant_linear.py for the storage). `group` is the
number of input features sharing a scale (unset: one scale per output row). The
converter searches, per group, the clipping of the range that minimizes the
squared error (absmax scaling wastes levels on rare outliers), then rounds.

What else it reaches, each stored with the same codes and scales:
  - an N:M layer (`sparsity` first): the masked weight is quantized into `quant_linear`; its
    zeros are exact zero codes (the zero point is an integer code), stored like any code, so
    the bytes are int codes for every weight (no mask metadata to keep);
  - a low-rank layer (`lowrank` first): both factors (`lowrank_quant_linear`);
  - `attention`: every projection (`quant_attention`, same attention computation);
  - `embedding`: the table per row (`quant_embedding`, only the gathered rows dequantized);
  - `conv1d`/`conv2d`: the weight per output channel (`quant_conv1d`/`quant_conv2d`; no `group`).
Anything else an earlier stage made (pruned, codebook, tensor-train, learnable-mask or already
quantized layers) is a located error naming both stages.

How the onnx target runs the layers is the stage's choice too: `accuracy_level=4` lets
onnxruntime's MatMulNBits quantize the activations to int8 (several times faster on CPU, and
what makes int8 layers fast there, at a small loss of accuracy; the default 0 computes in f32,
the other targets' numbers), and `onnx="standard"` keeps the graph to standard ONNX ops
(DequantizeLinear) for runtimes without onnxruntime's contrib ops. See specc/ops/quant_linear.py.
MatMulNBits runs plain linear layers only, so `accuracy_level` on any other layer is an error.

`quantize(mixed, budget=0.3)` picks int4 or int8 per selected layer so that
their stored weight bytes stay within `budget` times their dense bytes, with the
least total sensitivity: an exact dynamic program over the layers (a
multiple-choice knapsack kept as a Pareto frontier of (bytes, sensitivity)).
The choice fixes the compiled model's structure, so it is made at compile time,
without weights: a layer's sensitivity is the relative output noise power its
quantization would add for Gaussian weights, which depends on the bits and on
how many weights share a scale (wider groups have larger ranges, coarser steps).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, PositiveInt, model_validator

from ..diagnostics import SpeccError
from ..ir import Graph, Node
from ..ops.lowrank_quant_linear import LowRankQuantLinearAttrs
from ..ops.quant_attention import QuantAttentionAttrs
from ..ops.quant_conv import QuantConv1dAttrs, QuantConv2dAttrs
from ..ops.quant_embedding import QuantEmbeddingAttrs
from ..ops.quant_linear import QuantLinearAttrs, storage
from ..types import DTYPES
from . import TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._layers import CANNOT_APPLY, cannot_apply, linear_shape, with_bias

BITS = {"int4": 4, "int8": 8}
CLIPS = [1.0 - 0.05 * i for i in range(11)]  # candidate fractions of each group's range


class QuantizeArgs(TransformArgs):
    format: Literal["int8", "int4", "mixed"] = "int8"
    group: PositiveInt | None = None
    symmetric: bool = True
    budget: float | None = Field(None, gt=0, le=1)  # mixed: stored bytes / dense bytes of the selected layers
    # how the onnx target runs the layers (see specc/ops/quant_linear.py): onnxruntime's MatMulNBits
    # (`contrib`) or standard ops only; and MatMulNBits' accuracy_level (4: int8 activations, faster)
    onnx: Literal["contrib", "standard"] = "contrib"
    accuracy_level: Literal[0, 1, 2, 3, 4] = 0

    @model_validator(mode="after")
    def _budget_for_mixed(self) -> "QuantizeArgs":
        if (self.format == "mixed") != (self.budget is not None):
            raise ValueError("`budget` goes with `mixed` (and only with it): quantize(mixed, budget=0.3)")
        return self


# ------------------------------------------------------------------ the quantizer
def quantize_weight(weight: Any, bits: int, group: int | None, symmetric: bool) -> dict[str, Any]:
    """Codes (packed two per byte for int4), scales and, if asymmetric, zero points of a [out, in] weight."""
    import torch

    out_features, width = weight.shape
    size = min(group or width, width)
    groups = -(-width // size)
    w = weight.detach().to(torch.float64)
    if groups * size > width:  # the short last group is padded with its own last value: its range is unchanged
        w = torch.cat([w, w[:, -1:].expand(out_features, groups * size - width)], dim=1)
    w = w.view(out_features, groups, size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        top = w.abs().amax(-1)
        lo, hi, zero = -qmax - 1, qmax, torch.zeros_like(top)  # the code -2^(bits-1) is usable too
    else:
        qmax = 2 ** bits - 1
        low, high = w.amin(-1).clamp(max=0), w.amax(-1).clamp(min=0)
        lo, hi = 0, qmax
    best_err = best_scale = best_zero = None
    for clip in CLIPS:
        if symmetric:
            scale = top * clip / qmax
        else:
            scale = (high - low) * clip / qmax
        scale = scale.clamp(min=1e-12).float().double()  # the stored scale is what dequantization uses
        if not symmetric:
            zero = (-low * clip / scale).round().clamp(0, qmax)
        q = (w / scale[..., None] + zero[..., None]).round().clamp(lo, hi)
        err = ((q - zero[..., None]) * scale[..., None] - w).pow(2).sum(-1)
        if best_err is None:
            best_err, best_scale, best_zero = err, scale, zero
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale, best_zero = torch.where(better, scale, best_scale), torch.where(better, zero, best_zero)
    codes = (w / best_scale[..., None] + best_zero[..., None]).round().clamp(lo, hi).view(out_features, -1)[:, :width]
    out = {"scale": best_scale.to(weight.dtype)}
    if not symmetric:
        out["zero"] = best_zero.to(torch.uint8)
    if bits == 8:
        out["qweight"] = codes.to(torch.int8 if symmetric else torch.uint8)
        return dict(sorted(out.items()))
    codes = (codes + (8 if symmetric else 0)).to(torch.uint8)
    if width % 2:
        codes = torch.cat([codes, codes.new_zeros(out_features, 1)], dim=1)
    out["qweight"] = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return dict(sorted(out.items()))


def dequantize_weight(state: Mapping[str, Any], bits: int, group: int | None, symmetric: bool,
                      in_features: int) -> Any:
    """The [out, in] weight that a quant_linear layer with this state computes with."""
    import torch

    q = state["qweight"]
    if bits == 4:
        q = torch.stack((q & 15, q >> 4), dim=-1).flatten(-2)[:, :in_features]
    size = min(group or in_features, in_features)
    scale = state["scale"].repeat_interleave(size, dim=1)[:, :in_features]
    zero = (state["zero"].repeat_interleave(size, dim=1)[:, :in_features].to(scale.dtype) if not symmetric
            else 8 if bits == 4 else 0)
    return (q.to(scale.dtype) - zero) * scale


# ------------------------------------------------------------------ mixed precision
def sensitivity(bits: int, group_width: int, symmetric: bool) -> float:
    """Relative output noise power (noise / signal) of quantizing Gaussian weights: step^2 / 12 over sigma^2.

    The step is the range over the levels; a group of g Gaussian weights spans about
    +-sqrt(2 ln 2g) sigma.
    """
    half_range = math.sqrt(2 * math.log(2 * group_width))
    step = half_range / (2 ** (bits - 1) - 1) if symmetric else 2 * half_range / (2 ** bits - 1)
    return step * step / 12


def allocate_bits(costs: Sequence[Mapping[int, float]], sizes: Sequence[Mapping[int, int]],
                  budget: int) -> list[int] | None:
    """The choice per layer (a key of its cost/size maps) minimizing the total cost with total size <= budget.

    Exact: a DP over layers keeping only Pareto-optimal partial choices (no other partial
    choice is both smaller and cheaper). None if nothing fits the budget.
    """
    frontier: list[tuple[int, float, tuple[int, ...]]] = [(0, 0.0, ())]
    for cost, size in zip(costs, sizes, strict=True):
        extended = sorted(((s + size[b], c + cost[b], chosen + (b,)) for s, c, chosen in frontier for b in sorted(cost)
                           if s + size[b] <= budget), key=lambda t: (t[0], t[1]))
        frontier = []
        for state in extended:
            if not frontier or state[1] < frontier[-1][1]:
                frontier.append(state)
        if not frontier:
            return None
    return list(min(frontier, key=lambda t: (t[1], t[0]))[2])


def matrices(node: Node) -> list[tuple[int, int]]:
    """The [out, in] weight matrices quantize stores for a layer it can rewrite: a linear's or an N:M
    layer's weight (its zeros included), or a low-rank layer's two factors (down [rank, in], up [out, rank])."""
    if node.op == "nm_linear":
        return [(node.attrs.out_features, node.params["pattern"].shape[1] * node.attrs.m)]
    if node.op == "lowrank_linear":
        rank, in_features = node.params["down.weight"].shape
        return [(rank, in_features), (node.attrs.out_features, rank)]
    if node.op in ("conv1d", "conv2d"):  # flattened per output channel: [out, in/groups * prod(kernel)]
        shape = node.params["weight"].shape
        return [(shape[0], math.prod(shape[1:]))]
    if node.op == "attention":  # its projections: qkv and out, or q_proj, k_proj, v_proj and o_proj
        return [tuple(p.shape) for key, p in node.params.items() if key.endswith(".weight")]
    return [linear_shape(node)]


def _group(group: int | None, in_features: int) -> int | None:
    """A stage's group for one matrix: None (one scale per row) where the group spans its whole input."""
    return group if group is not None and group < in_features else None


def _bytes(node: Node, bits: int, group: int | None, symmetric: bool) -> int:
    return sum(math.prod(p.shape) * DTYPES[p.dtype or "f32"][2]
               for out_features, in_features in matrices(node)
               for p in storage(bits, symmetric, out_features, in_features, _group(group, in_features)).values())


def _allocate(graph: Graph, layers: list[str], args: QuantizeArgs) -> dict[str, QuantizeArgs]:
    """Per-layer arguments for a `mixed` stage: int4 or int8 for each selected layer (see allocate_bits)."""
    if args.format != "mixed":
        return {}
    nodes = [graph.node(layer) for layer in layers]
    for node in nodes:
        _refuse(node)
    sizes = [{b: _bytes(n, b, args.group, args.symmetric) for b in BITS.values()} for n in nodes]
    costs = [{b: sum(sensitivity(b, min(args.group or width, width), args.symmetric) for _, width in matrices(n))
              for b in BITS.values()} for n in nodes]
    dense = sum(math.prod(shape) * 4 for n in nodes for shape in matrices(n))
    budget = int(args.budget * dense)
    chosen = allocate_bits(costs, sizes, budget)
    if chosen is None:
        smallest = sum(s[4] for s in sizes)
        raise SpeccError(CANNOT_APPLY, f"quantize(mixed, budget={args.budget}): even int4 everywhere needs "
                                       f"{smallest:,} bytes, more than {args.budget} of the {dense:,} dense bytes",
                         None, help=f"use budget >= {math.ceil(smallest / dense * 1000) / 1000}")
    return {layer: args.model_copy(update={"format": f"int{b}", "budget": None}) for layer, b in zip(layers, chosen)}


# ------------------------------------------------------------------ the transform
# what quantize does not compose with: the op an earlier stage left, that stage, and what to do instead
_AFTER = {
    "nm_mask_linear": ("sparsity(learnable=true)", "freeze the learned masks first with a `sparsity(pattern=N:M)` "
                                                   "stage on this layer (it becomes nm_linear, which quantize takes)"),
    "masked_linear": ("prune", "quantize first and prune the dense layer, or use N:M `sparsity`, which quantize "
                               "takes"),
    "codebook_linear": ("codebook", "a codebook already stores the weight as indices: use one of the two"),
    "tt_linear": ("tensor_train", "quantize a `lowrank` factorization instead, or keep the cores in float"),
    "quant_linear": ("quantize", "the layer is quantized already: drop one of the two stages"),
    "lowrank_quant_linear": ("lowrank + quantize", "the layer's factors are quantized already"),
    "quant_conv1d": ("quantize", "the convolution is quantized already: drop one of the two stages"),
    "quant_conv2d": ("quantize", "the convolution is quantized already: drop one of the two stages"),
    "quant_embedding": ("quantize", "the table is quantized already: drop one of the two stages"),
    "quant_attention": ("quantize", "the attention's projections are quantized already: drop one of the two stages"),
}


def _refuse(node: Node) -> None:
    """A located error, naming both stages, for a layer an earlier stage made into something quantize cannot store."""
    if node.op == "embedding" and "weight" in node.attrs.operands:
        raise cannot_apply(node, "it looks up a table it does not own (`weight=`, a shared or tied table), "
                                 "so there is no table of its own to quantize",
                           help="quantize the layers that own weights; a tied table stays float")
    if node.op in _AFTER:
        stage, instead = _AFTER[node.op]
        raise cannot_apply(node, f"`quantize` cannot follow `{stage}`: an earlier stage made this layer "
                                 f"`{node.op}`, whose weights quantize cannot store", help=instead)



def _no_accuracy_level(node, args, why: str, layers: str) -> None:
    """`accuracy_level` chooses MatMulNBits' activation precision: a located error on a layer that has no
    MatMulNBits to choose it for."""
    if args.accuracy_level:
        raise cannot_apply(node, f"quantize's accuracy_level={args.accuracy_level} chooses MatMulNBits' "
                                 f"activation precision, and {why}",
                           help=f"leave it at 0 for {layers} (select those in a stage of their own)")

def _rewrite(graph: Graph, node: Node, args: QuantizeArgs) -> str | None:
    if args.format == "mixed":
        raise cannot_apply(node, "quantize(mixed) needs the whole stage's layers to share out its budget, "
                                 "but it was called on one layer")
    _refuse(node)
    bits = BITS[args.format]
    how = (f"{args.format} {'per-channel' if args.group is None else f'group {args.group}'}"
           f"{'' if args.symmetric else ' asymmetric'}")
    matrices_before = matrices(node)
    dense = sum(o * i * 4 for o, i in matrices_before)
    if node.op in ("conv1d", "conv2d"):
        if args.group is not None or args.accuracy_level:
            raise cannot_apply(node, f"a {node.op} weight is quantized per output channel, so "
                                     f"{'group=' + str(args.group) if args.group is not None else 'accuracy_level'} "
                                     f"has nothing to choose", help="select convolutions in a stage of their own, "
                                                                    "without `group` or `accuracy_level`")
        stored = _bytes(node, bits, None, args.symmetric)
        attrs = QuantConv1dAttrs if node.op == "conv1d" else QuantConv2dAttrs
        node.attrs = attrs(**node.attrs.model_dump(), bits=bits, symmetric=args.symmetric, onnx=args.onnx)
        node.op = f"quant_{node.op}"
        return (f"{args.format}{'' if args.symmetric else ' asymmetric'} per output channel: {stored:,} weight "
                f"bytes instead of {dense:,}")
    if node.op == "embedding":
        _no_accuracy_level(node, args, "an embedding has no matmul", "embeddings")
        vocab, dim = matrices_before[0]
        group = _group(args.group, dim)
        stored = _bytes(node, bits, group, args.symmetric)
        node.op = "quant_embedding"
        node.attrs = QuantEmbeddingAttrs(vocab=vocab, dim=dim, bits=bits, group=group, symmetric=args.symmetric)
        return f"{how} table, dequantized after the gather: {stored:,} bytes instead of {dense:,}"
    if node.op == "attention":
        _no_accuracy_level(node, args, "attention's projections do not use it", "attention layers")
        stored = _bytes(node, bits, args.group, args.symmetric)
        node.attrs = QuantAttentionAttrs(**node.attrs.model_dump(), bits=bits, group=args.group,
                                         symmetric=args.symmetric, onnx=args.onnx)
        node.op = "quant_attention"
        return f"{how}, {len(matrices_before)} projections: {stored:,} weight bytes instead of {dense:,}"
    if node.op == "lowrank_linear":
        _no_accuracy_level(node, args, "the factors of a low-rank layer do not use it", "low-rank layers")
        (rank, in_features), (out_features, _) = matrices(node)
        stored, ordered = _bytes(node, bits, args.group, args.symmetric), node.attrs.ordered
        node.op = "lowrank_quant_linear"
        node.attrs = LowRankQuantLinearAttrs(out_features=out_features, rank=rank, bits=bits,
                                             down_group=_group(args.group, in_features),
                                             up_group=_group(args.group, rank), symmetric=args.symmetric,
                                             bias=node.attrs.bias, onnx=args.onnx)
        return (f"{how}, both rank-{rank} factors: {stored:,} weight bytes "
                f"instead of {dense:,} (float factors){'; ordered dropout ends (inference form)' if ordered else ''}")
    out_features, in_features = matrices(node)[0]
    group = _group(args.group, in_features)
    sparse = node.attrs if node.op == "nm_linear" else None
    stored = _bytes(node, bits, group, args.symmetric)
    node.op = "quant_linear"
    node.attrs = QuantLinearAttrs(out_features=out_features, bits=bits, group=group, symmetric=args.symmetric,
                                  bias=node.attrs.bias, onnx=args.onnx, accuracy_level=args.accuracy_level)
    if sparse is None:
        return f"{how}: {stored:,} weight bytes instead of {dense:,}"
    # the N:M zeros are quantized to zero codes and stored like any code (no mask): bytes as dense int codes
    return (f"{how} of the {sparse.n}:{sparse.m} weight (its zeros stay exact zero codes): {stored:,} weight "
            f"bytes instead of {dense:,} dense")


def nm_dense(state: Mapping[str, Any], n: int, m: int) -> Any:
    """The [out, in] weight an nm_linear layer computes with: its kept values at their pattern's positions."""
    import torch

    from ..ops.sparse_linear import NMAttrs

    values, pattern = state["values"], state["pattern"]
    out_features, groups = pattern.shape
    positions = torch.tensor(NMAttrs(out_features=1, n=n, m=m).positions, device=pattern.device)
    weight = values.new_zeros(out_features, groups, m)
    weight.scatter_(-1, positions[pattern.long()], values.reshape(out_features, groups, n))
    return weight.reshape(out_features, groups * m)


def _convert(plan: LayerPlan, node: Node, dense: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    a = node.attrs
    if node.op == "quant_attention":
        out = {}
        for key, value in dense.items():
            if key.endswith(".weight"):
                group = a.projection_group(value.shape[1])
                out.update({f"{key[:-len('weight')]}{k}": v
                            for k, v in quantize_weight(value, a.bits, group, a.symmetric).items()})
            else:
                out[key] = value
        return out
    if node.op in ("quant_conv1d", "quant_conv2d"):
        weight = dense["weight"]
        return with_bias(quantize_weight(weight.reshape(weight.shape[0], -1), a.bits, None, a.symmetric), dense)
    if node.op == "lowrank_quant_linear":
        out = {f"down.{k}": v for k, v in quantize_weight(dense["down.weight"], a.bits, a.down_group,
                                                           a.symmetric).items()}
        out.update({f"up.{k}": v for k, v in quantize_weight(dense["up.weight"], a.bits, a.up_group,
                                                              a.symmetric).items()})
        if "up.bias" in dense:
            out["up.bias"] = dense["up.bias"]
        return out
    if plan.before == "nm_linear":  # quantize the masked weight: its zeros round to zero codes exactly
        b = plan.before_node.attrs
        weight = nm_dense(dense, b.n, b.m)
    else:
        weight = dense["weight"]
    return with_bias(quantize_weight(weight, a.bits, a.group, a.symmetric), dense)


register_transform(Transform("quantize", "weight-only int8/int4 quantization (per-channel or per-group, packed), "
                                         "or a mixed int4/int8 choice per layer under a size budget; after N:M "
                                         "`sparsity` (the zeros stay zero) or `lowrank` (both factors); "
                                         "attention's projections; embedding tables; conv1d/conv2d per output channel",
                             QuantizeArgs, frozenset({"linear", "nm_linear", "lowrank_linear", "attention", "embedding", "conv1d",
                                        "conv2d"} | set(_AFTER)),
                             _rewrite, _convert, allocate=_allocate))
