"""quantize: weight-only int8/int4/int3/int2 quantization, or a mixed per-layer choice under a size budget.

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

int2 and int3 (`quantize(int3, group=16)`) store plain linear layers only (`quant_linear`, codes
bit-packed: 3 bits a weight), and run standard ops on the onnx target (no MatMulNBits).

`method=gptq` or `method=awq` choose the codes from calibration data when converting weights
(`specc compress --calib`; see _calibrated.py): the compiled model is the same as round-to-nearest's
(same ops, same storage), so compiling needs no data and the plan says when the codes come; converting
without --calib is a located error (E0810) at the stage. Both take plain linear layers only (E0811).

`quantize(mixed, budget=0.3)` picks int4 or int8 (with `min_bits=2` or 3 also int2/int3)
per selected layer so that their stored weight bytes stay within `budget` times their
dense bytes, with the least total sensitivity: an exact dynamic program over the layers (a
multiple-choice knapsack kept as a Pareto frontier of (bytes, sensitivity)).
The choice fixes the compiled model's structure, so it is made at compile time. By default
without weights: a layer's sensitivity is the relative output noise power its quantization
would add for Gaussian weights, which depends on the bits and on how many weights share a
scale (wider groups have larger ranges, coarser steps). With `sensitivity="FILE.json"` it is
measured instead: `specc compress --calib` quantizes each layer alone to each width (by the
stage's method) and measures the relative error of the dense model's outputs on the
calibration inputs, writes those costs to FILE.json (beside the spec), and chooses from them;
compiling reads the file, so the compiled model has the widths the weights were converted to
(a missing file, or one measured for other layers or settings, is a located error, E0812).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, PositiveInt, PrivateAttr, model_validator

from ..diagnostics import SpeccError
from ..ir import Graph, Node
from ..ops.bitpack import pack, unpack
from ..ops.lowrank_quant_linear import LowRankQuantLinearAttrs
from ..ops.quant_attention import QuantAttentionAttrs
from ..ops.quant_conv import QuantConv1dAttrs, QuantConv2dAttrs
from ..ops.quant_embedding import QuantEmbeddingAttrs
from ..ops.quant_linear import QuantLinearAttrs, storage
from ..types import DTYPES
from . import TransformArgs, Calibration, LayerPlan, Transform, register_transform
from ._calibrated import awq, awq_scales, fold_target, gptq, output_error
from ._layers import CANNOT_APPLY, cannot_apply, linear_shape, with_bias

BITS = {"int2": 2, "int3": 3, "int4": 4, "int8": 8}
LOW_BITS = (2, 3)  # widths only plain linear layers (quant_linear) store
CLIPS = [1.0 - 0.05 * i for i in range(11)]  # candidate fractions of each group's range
NEEDS_CALIBRATION = "E0810"  # gptq/awq converting without --calib
LINEAR_ONLY = "E0811"  # gptq/awq or int2/int3 on a layer that is not a plain linear
NO_SENSITIVITY = "E0812"  # a mixed stage's measured sensitivities are missing, unreadable or for other layers


class QuantizeArgs(TransformArgs):
    format: Literal["int8", "int4", "int3", "int2", "mixed"] = "int8"
    group: PositiveInt | None = None
    symmetric: bool = True
    budget: float | None = Field(None, gt=0, le=1)  # mixed: stored bytes / dense bytes of the selected layers
    # how the onnx target runs the layers (see specc/ops/quant_linear.py): onnxruntime's MatMulNBits
    # (`contrib`) or standard ops only; and MatMulNBits' accuracy_level (4: int8 activations, faster)
    onnx: Literal["contrib", "standard"] = "contrib"
    accuracy_level: Literal[0, 1, 2, 3, 4] = 0
    # how the codes are chosen at conversion: round-to-nearest, or from calibration data (--calib)
    method: Literal["rtn", "gptq", "awq"] = "rtn"
    # mixed: the narrowest width it may choose (2 or 3 add int2/int3 to int4 and int8)
    min_bits: Literal[2, 3, 4] = 4
    # mixed: a JSON file (relative to the spec) of the layers' measured sensitivities, which
    # `specc compress --calib` writes and compiling reads; unset: the Gaussian proxy
    sensitivity: str | None = None
    # awq: the layer its input scales fold into (or None) and why, decided by `_allocate` before the stage
    # rewrites any layer (the producer may be one of them)
    _fold: tuple[str | None, str] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _budget_for_mixed(self) -> "QuantizeArgs":
        if (self.format == "mixed") != (self.budget is not None):
            raise ValueError("`budget` goes with `mixed` (and only with it): quantize(mixed, budget=0.3)")
        if self.format != "mixed" and (self.min_bits != 4 or self.sensitivity is not None):
            raise ValueError("`min_bits` and `sensitivity` choose among widths: they go with `mixed`")
        if self.sensitivity is not None:
            import os
            from pathlib import PurePosixPath, PureWindowsPath

            parts = PurePosixPath(self.sensitivity.replace("\\", "/")).parts
            # written by `specc compress --calib`: only a .json file beside the spec or below it
            if (not self.sensitivity.endswith(".json") or not parts or PureWindowsPath(self.sensitivity).drive
                    or os.path.isabs(self.sensitivity) or ".." in parts or self.sensitivity.startswith("/")):
                raise ValueError("`sensitivity` names a .json file beside the spec (or in a folder below it), "
                                 "e.g. sensitivity=\"small.sens.json\"")
        if self.min_bits < 4 and self.accuracy_level:
            raise ValueError("int2/int3 layers run without MatMulNBits, so `accuracy_level` needs min_bits=4")
        return self

    def widths(self) -> list[int]:
        """The widths a mixed stage chooses among."""
        return [b for b in BITS.values() if b >= self.min_bits]


# ------------------------------------------------------------------ the quantizer
def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """The lowest and highest code of a quantizer (symmetric codes are centred on 0; -2^(bits-1) is usable too)."""
    return (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)


def fit_grid(w: Any, bits: int, symmetric: bool, weight: Any = None) -> tuple[Any, Any]:
    """Scale and zero point per group of `w` [..., size] (float64), searched over CLIPS of its range.

    The error of a clipping is the squared rounding error of the group, or with `weight` (a [size, size]
    matrix, the layer's input second moment) the error of the group's outputs (e^T weight e): AWQ's
    clipping search, which spends the grid where the activations are large.
    """
    import torch

    lo, hi = code_range(bits, symmetric)
    if symmetric:
        top = w.abs().amax(-1)
        zero = torch.zeros_like(top)
    else:
        low, high = w.amin(-1).clamp(max=0), w.amax(-1).clamp(min=0)
    best_err = best_scale = best_zero = None
    for clip in CLIPS:
        scale = top * clip / hi if symmetric else (high - low) * clip / hi
        scale = scale.clamp(min=1e-12).float().double()  # the stored scale is what dequantization uses
        if not symmetric:
            zero = (-low * clip / scale).round().clamp(0, hi)
        e = (w / scale[..., None] + zero[..., None]).round().clamp(lo, hi).sub(zero[..., None]).mul(scale[..., None]) - w
        err = e.pow(2).sum(-1) if weight is None else ((e @ weight) * e).sum(-1)
        if best_err is None:
            best_err, best_scale, best_zero = err, scale, zero
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale, best_zero = torch.where(better, scale, best_scale), torch.where(better, zero, best_zero)
    return best_scale, best_zero


def round_codes(w: Any, scale: Any, zero: Any, bits: int, symmetric: bool) -> Any:
    """The nearest codes of `w` [..., size] on a grid (scale, zero broadcast over the last dim)."""
    lo, hi = code_range(bits, symmetric)
    return (w / scale[..., None] + zero[..., None]).round().clamp(lo, hi)


def pack_codes(codes: Any, bits: int, symmetric: bool) -> Any:
    """Integer codes [out, in] in the stored layout: int8 as they are; int2/int3/int4 (symmetric ones
    shifted by 2^(bits-1) to be non-negative) as specc/ops/bitpack.py stores small codes, a little-endian
    bit stream per row, ceil(in*bits/8) bytes (int4: two per byte, feature 2j in the low nibble)."""
    import torch

    if bits == 8:
        return codes.to(torch.int8 if symmetric else torch.uint8)
    return pack((codes + (2 ** (bits - 1) if symmetric else 0)).long(), 2 ** bits)


def unpack_codes(q: Any, bits: int, in_features: int) -> Any:
    """The stored codes [out, in] (as stored: int2/int3/int4 non-negative, uint8) from `pack_codes`' layout."""
    import torch

    return q if bits == 8 else unpack(q, 2 ** bits, in_features).to(torch.uint8)


def _grouped(weight: Any, group: int | None) -> tuple[Any, int]:
    """`weight` [out, in] as float64 [out, groups, size] (a short last group padded with its own last
    value, so its range is unchanged), and the group size."""
    import torch

    out_features, width = weight.shape
    size = min(group or width, width)
    groups = -(-width // size)
    w = weight.detach().to(torch.float64)
    if groups * size > width:
        w = torch.cat([w, w[:, -1:].expand(out_features, groups * size - width)], dim=1)
    return w.view(out_features, groups, size), size


def stored(codes: Any, scale: Any, zero: Any, bits: int, symmetric: bool, dtype: Any) -> dict[str, Any]:
    """The state of a quantized [out, in] weight from its codes [out, in] and its grid [out, groups]."""
    import torch

    out = {"scale": scale.to(dtype), "qweight": pack_codes(codes, bits, symmetric)}
    if not symmetric:
        out["zero"] = zero.to(torch.uint8)
    return dict(sorted(out.items()))


def quantize_weight(weight: Any, bits: int, group: int | None, symmetric: bool,
                    hessian: Any = None) -> dict[str, Any]:
    """Round-to-nearest codes (packed, see pack_codes), scales and, if asymmetric, zero points of a
    [out, in] weight. With `hessian` ([in, in], XᵀX of the layer's inputs) each group's clipping is
    chosen for its output error instead of its weight error (AWQ's clipping search)."""
    out_features, width = weight.shape
    w, size = _grouped(weight, group)
    blocks = None
    if hessian is not None:
        import torch

        h = hessian.to(torch.float64)
        pad = w.shape[1] * size - width
        if pad:  # the padding copies of the last feature carry no input
            h = torch.nn.functional.pad(h, (0, pad, 0, pad))
        blocks = torch.stack([h[g * size:(g + 1) * size, g * size:(g + 1) * size] for g in range(w.shape[1])])
    scale, zero = fit_grid(w, bits, symmetric, None) if blocks is None else _fit_weighted(w, bits, symmetric, blocks)
    codes = round_codes(w, scale, zero, bits, symmetric).view(out_features, -1)[:, :width]
    return stored(codes, scale, zero, bits, symmetric, weight.dtype)


def _fit_weighted(w: Any, bits: int, symmetric: bool, blocks: Any) -> tuple[Any, Any]:
    """fit_grid per group g with the group's own block of the input second moment."""
    import torch

    fits = [fit_grid(w[:, g], bits, symmetric, blocks[g]) for g in range(w.shape[1])]
    return torch.stack([f[0] for f in fits], 1), torch.stack([f[1] for f in fits], 1)


def dequantize_weight(state: Mapping[str, Any], bits: int, group: int | None, symmetric: bool,
                      in_features: int) -> Any:
    """The [out, in] weight that a quant_linear layer with this state computes with."""
    q = unpack_codes(state["qweight"], bits, in_features)
    size = min(group or in_features, in_features)
    scale = state["scale"].repeat_interleave(size, dim=1)[:, :in_features]
    zero = (state["zero"].repeat_interleave(size, dim=1)[:, :in_features].to(scale.dtype) if not symmetric
            else 0 if bits == 8 else 2 ** (bits - 1))
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
        return [(node.attrs.out_features, node.params["values"].shape[1] // node.attrs.n * node.attrs.m)]
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


def _allocate(graph: Graph, layers: list[str], args: QuantizeArgs, span: Any,
              calib: Calibration | None) -> dict[str, QuantizeArgs]:
    """Per-layer arguments: a `mixed` stage's width for each selected layer (see allocate_bits), and for
    `method=awq` the layer each one's input scales fold into (decided before this stage rewrites any)."""
    per_layer = _mixed(graph, layers, args, span, calib) if args.format == "mixed" else {}
    if args.method == "awq":
        for layer in layers:
            node = graph.node(layer)
            if node.op == "linear":  # on anything else `_rewrite` says awq cannot apply
                layer_args = per_layer.get(layer, args).model_copy()
                layer_args._fold = fold_target(graph, node)
                per_layer[layer] = layer_args
    return per_layer


def _mixed(graph: Graph, layers: list[str], args: QuantizeArgs, span: Any,
           calib: Calibration | None) -> dict[str, QuantizeArgs]:
    nodes = [graph.node(layer) for layer in layers]
    widths = args.widths()
    for node in nodes:
        _refuse(node)
        if min(widths) in LOW_BITS:
            _linear_only(node, f"quantize(mixed, min_bits={args.min_bits}) may choose int{min(widths)}, which")
    sizes = [{b: _bytes(n, b, args.group, args.symmetric) for b in widths} for n in nodes]
    if args.sensitivity is None:
        costs = [{b: sum(sensitivity(b, min(args.group or width, width), args.symmetric) for _, width in matrices(n))
                  for b in widths} for n in nodes]
    else:
        costs = _measured(graph, nodes, args, span, calib)
    dense = sum(math.prod(shape) * 4 for n in nodes for shape in matrices(n))
    budget = int(args.budget * dense)
    chosen = allocate_bits(costs, sizes, budget)
    if chosen is None:
        smallest = sum(s[min(widths)] for s in sizes)
        raise SpeccError(CANNOT_APPLY, f"quantize(mixed, budget={args.budget}): even int{min(widths)} everywhere "
                                       f"needs {smallest:,} bytes, more than {args.budget} of the {dense:,} dense "
                                       f"bytes", None, help=f"use budget >= {math.ceil(smallest / dense * 1000) / 1000}")
    return {layer: args.model_copy(update={"format": f"int{b}", "budget": None, "min_bits": 4, "sensitivity": None})
            for layer, b in zip(layers, chosen)}


def _measured(graph: Graph, nodes: list[Node], args: QuantizeArgs, span: Any,
              calib: Calibration | None) -> list[dict[int, float]]:
    """A mixed stage's measured costs per layer and width: measured now and written to the stage's
    `sensitivity` file when there is calibration data (`specc compress --calib`), else read from it.

    The file records what was measured (the layers, widths, group, symmetry and method), so a file
    measured for another stage is refused instead of silently choosing other widths than the
    conversion did."""
    import json
    from pathlib import Path

    from ..diagnostics import read_text

    path = Path(span.source.path).parent / args.sensitivity
    what = {"group": args.group, "symmetric": args.symmetric, "method": args.method, "widths": args.widths()}
    names = [n.name for n in nodes]
    if calib is not None:
        for node in nodes:
            if node.op != "linear":
                raise SpeccError(LINEAR_ONLY, f"layer `{node.name}`: measuring sensitivity quantizes plain linear "
                                              f"layers of the dense model, but an earlier stage made this one "
                                              f"`{node.op}`", node.span,
                                 help="measure in a stage before the others, or drop `sensitivity` (Gaussian proxy)")
        measured = measure_sensitivity(graph, calib, nodes, args)
        record = {"measured": "output error of the model with one layer quantized", **what,
                  "layers": {name: {str(b): cost for b, cost in costs.items()} for name, costs in zip(names, measured)}}
        from ..output import write_atomic

        write_atomic(path, (json.dumps(record, indent=1) + "\n").encode())
        return measured
    hint = ("`specc compress --calib FILE` measures them and writes this file; compiling reads it "
            "(or drop `sensitivity` for the Gaussian proxy)")
    try:
        record = json.loads(read_text(path, NO_SENSITIVITY, span, what="measured sensitivities"))
    except SpeccError as err:
        err.help = hint
        raise
    except json.JSONDecodeError:
        raise SpeccError(NO_SENSITIVITY, f"the measured sensitivities in {args.sensitivity} are not JSON", span,
                         help=hint) from None
    layers = record.get("layers") if isinstance(record, dict) else None
    if (not isinstance(layers, dict) or any(record.get(k) != v for k, v in what.items())
            or sorted(layers) != sorted(names)):
        raise SpeccError(NO_SENSITIVITY, f"the measured sensitivities in {args.sensitivity} were measured for "
                                         f"other layers or settings than this stage's", span, help=hint)
    try:
        return [{b: float(layers[name][str(b)]) for b in args.widths()} for name in names]
    except (KeyError, TypeError, ValueError):
        raise SpeccError(NO_SENSITIVITY, f"the measured sensitivities in {args.sensitivity} lack a width of a "
                                         f"layer", span, help=hint) from None


def quantize_layer(weight: Any, x: Any, bits: int, group: int | None, symmetric: bool, method: str,
                   scales: Any = None) -> dict[str, Any]:
    """The stored state of one [out, in] weight by `method`, given its layer's inputs `x` (gptq, awq);
    awq's `scales` are its input scales (None: 1, no fold)."""
    if method == "gptq":
        return gptq(weight, x, bits, group, symmetric)
    if method == "awq":
        import torch

        return awq(weight, x, bits, group, symmetric,
                   scales if scales is not None else torch.ones(weight.shape[1], dtype=torch.float64))
    return quantize_weight(weight, bits, group, symmetric)


def measure_sensitivity(graph: Graph, calib: Calibration, nodes: list[Node], args: QuantizeArgs) -> list[dict[int, float]]:
    """Per layer and width: the relative squared error of the dense model's outputs on the calibration
    inputs when only that layer is quantized (by the stage's method; for awq with the scales it folds,
    whose effect is exactly Q(W·diag(s))·diag(1/s))."""
    reference = calib.outputs_with({})
    costs = []
    for node in nodes:
        key = (node.key if node.local else node.name) + ".weight"
        weight = calib.state[key]
        x = calib.operands_of(node.name)[0]
        group = _group(args.group, weight.shape[1])
        fold = fold_target(graph, node)[0] if args.method == "awq" else None
        costs.append({})
        for bits in args.widths():
            scales = awq_scales(weight, x, bits, group, args.symmetric) if fold else None
            state = quantize_layer(weight, x, bits, group, args.symmetric, args.method, scales)
            q = dequantize_weight(state, bits, group, args.symmetric, weight.shape[1])
            if scales is not None:
                q = q / scales
            costs[-1][bits] = output_error(reference, calib.outputs_with({key: q.to(weight.dtype)}))
    return costs


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

def _linear_only(node: Node, what: str, sparse_too: bool = True) -> None:
    """A located error for a calibrated method or an int2/int3 width on a layer other than a plain linear
    (int2/int3 also store an N:M layer's weight, as quant_linear; GPTQ/AWQ cannot keep its zeros)."""
    if node.op not in (("linear", "nm_linear") if sparse_too else ("linear",)):
        why = (" (its updates would fill the N:M zeros)" if node.op == "nm_linear" else "")
        raise SpeccError(LINEAR_ONLY, f"layer `{node.name}`: {what} quantizes plain linear layers only, and this "
                                      f"layer is `{node.op}`{why}", node.span,
                         help="select the other layers in a stage of their own, with method=rtn and int4 or int8")


def _rewrite(graph: Graph, node: Node, args: QuantizeArgs) -> str | None:
    if args.format == "mixed":
        raise cannot_apply(node, "quantize(mixed) needs the whole stage's layers to share out its budget, "
                                 "but it was called on one layer")
    _refuse(node)
    bits = BITS[args.format]
    if bits in LOW_BITS:
        _linear_only(node, f"quantize({args.format}), stored {bits} bits a code,")
        _no_accuracy_level(node, args, f"{args.format} layers run without MatMulNBits", f"{args.format} layers")
    if args.method != "rtn":
        _linear_only(node, f"quantize(method={args.method}), which needs the layer's input activations,",
                     sparse_too=False)
    how = (f"{args.format} {'per-channel' if args.group is None else f'group {args.group}'}"
           f"{'' if args.symmetric else ' asymmetric'}")
    if args.method != "rtn":  # the codes are chosen when converting weights; the stored format is the same
        fold = ""
        if args.method == "awq":
            target, why = args._fold or fold_target(graph, node)
            fold = f"; {why}" if target else f"; no input scales ({why}), output-aware clipping only"
        how += f", {args.method} (codes from calibration data when converting: `specc compress --calib`{fold})"
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
    """The [out, in] weight an nm_linear layer computes with: its kept values at their pattern's positions
    (the pattern stored at its bit width, see specc/ops/bitpack.py)."""
    from .sparsity import nm_weight

    return nm_weight(state, n, m)


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
    method = plan.args.method
    if method == "rtn":
        return with_bias(quantize_weight(weight, a.bits, a.group, a.symmetric), dense)
    if calib is None:
        raise _needs_calibration(plan)
    x = calib.operands_of(plan.layer)[0]
    return with_bias(quantize_layer(weight, x, a.bits, a.group, a.symmetric, method,
                                    calib.derived.get(("awq", plan.layer))), dense)


def _needs_calibration(plan: LayerPlan) -> SpeccError:
    return SpeccError(NEEDS_CALIBRATION, f"quantize(method={plan.args.method}) chooses layer `{plan.layer}`'s codes "
                                         f"from calibration data, and none was given", plan.stage_span,
                      help="pass sample inputs of the base model: `specc compress ... --calib FILE` (torch.save "
                           "of a tensor or a tuple of tensors); or use method=rtn")


def _prepare(graph: Graph, state: dict[str, Any], calib: Calibration | None) -> dict[str, Any]:
    """AWQ's fold: each awq layer's input scales s, searched on the dense weights, divide the rows (and
    bias) of the linear layer producing its input, so that layer's output, through relu, is x/s, and
    the awq layer stores W·diag(s): the model computes what it did, with codes spent where x is large."""
    plans = [p for p in graph.plan if p.transform == "quantize" and not p.kept and p.args.method == "awq"]
    if not plans:
        return state
    if calib is None:
        raise _needs_calibration(plans[0])
    state = dict(state)
    for plan in plans:
        if plan.args._fold is None or plan.args._fold[0] is None:
            continue
        before = plan.before_node
        weight = calib.state[(before.key if before.local else plan.layer) + ".weight"]
        group = _group(plan.args.group, weight.shape[1])
        scales = awq_scales(weight, calib.operands_of(plan.layer)[0], BITS[plan.args.format], group,
                            plan.args.symmetric)
        calib.derived[("awq", plan.layer)] = scales
        producer = graph.node(plan.args._fold[0])
        prefix = (producer.key if producer.local else producer.name) + "."
        state[prefix + "weight"] = (state[prefix + "weight"].double() / scales[:, None]).to(weight.dtype)
        if prefix + "bias" in state:
            state[prefix + "bias"] = (state[prefix + "bias"].double() / scales).to(weight.dtype)
    return state


register_transform(Transform("quantize", "weight-only int8/int4/int3/int2 quantization (per-channel or per-group, "
                                         "packed; codes by round-to-nearest, or GPTQ/AWQ from calibration data), "
                                         "or a mixed choice of widths per layer under a size budget (Gaussian proxy "
                                         "or measured sensitivity); after N:M "
                                         "`sparsity` (the zeros stay zero) or `lowrank` (both factors); "
                                         "attention's projections; embedding tables; conv1d/conv2d per output channel",
                             QuantizeArgs, frozenset({"linear", "nm_linear", "lowrank_linear", "attention", "embedding", "conv1d",
                                        "conv2d"} | set(_AFTER)),
                             _rewrite, _convert, allocate=_allocate, prepare=_prepare))
