"""Calibration-based weight quantization for the quantize transform: GPTQ, AWQ, measured sensitivity.

All three use the layer's input activations on calibration data (`specc compress --calib`), taken
from the dense base model (`Calibration.operands_of`), and all three write the existing storage
(codes, per-group scales and zero points of specc/ops/quant_linear.py): only the numbers change,
so every target runs their output as it runs round-to-nearest.

  - GPTQ (Frantar et al. 2022): the columns of W are quantized in order, and each column's rounding
    error is spread over the columns not yet quantized through the inverse Hessian of the layer's
    output error, H = 2XᵀX (plus `damp` times its mean diagonal), via the upper Cholesky factor of
    H⁻¹ and lazy updates of blocks of columns. A group's scale is fitted when its first column is
    reached, on the weights as updated by then, so codes and scales are the group format's.
  - AWQ (Lin et al. 2023): the input channels are scaled by s = mean|x|^alpha (alpha searched on a
    grid for the least output error), W·diag(s) is quantized, and 1/s is folded into the layer that
    produces the input (rows of a linear, through relu/dropout, which commute with positive scaling):
    the stored weights are the existing format and the model computes exactly what it did before the
    fold. A layer with no such producer (a model input, a gelu in between, an input with other users)
    keeps s = 1. Then every group's clipping is searched for its output error (AWQ's clip search).
  - measured sensitivity (the mixed-bit allocation): the relative error of the model's outputs on the
    calibration inputs when only one layer is quantized to each candidate width.
"""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Node

# ops between a producer and the layer that commute with a positive per-channel scale
HOMOGENEOUS = frozenset({"relu", "dropout"})
AWQ_GRID = 20  # alphas 0, 1/20, ..., 19/20 (alpha 0 is round-to-nearest)


def inputs_2d(x: Any) -> Any:
    """A layer's calibration inputs [..., in] as float64 rows [n, in]."""
    import torch

    return x.detach().reshape(-1, x.shape[-1]).to(torch.float64)


def gptq(weight: Any, x: Any, bits: int, group: int | None, symmetric: bool, damp: float = 0.01,
         block: int = 128) -> dict[str, Any]:
    """GPTQ's codes and grid for a [out, in] weight given its layer's inputs `x` [..., in], stored as
    `quantize_weight` stores round-to-nearest (see the module docstring)."""
    import torch

    from .quantize import fit_grid, round_codes, stored

    w = weight.detach().to(torch.float64).clone()
    out_features, width = w.shape
    x = inputs_2d(x)
    h = 2 * x.T @ x / max(1, x.shape[0])
    dead = torch.diagonal(h) == 0  # features never seen in calibration: no error to spread through them
    h[dead, dead] = 1
    if damp:
        h += damp * torch.diagonal(h).mean() * torch.eye(width, dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    size = min(group or width, width)
    block = max(size, block // size * size) if group else block  # a group never straddles two blocks
    codes = torch.zeros_like(w)
    scales, zeros = [], []
    if size == width:  # one grid per row, from the whole row before any update (as GPTQ does)
        scale, zero = fit_grid(w[:, None, :], bits, symmetric)
        scale, zero = scale[:, 0], zero[:, 0]
        scales, zeros = [scale], [zero]
    for start in range(0, width, block):
        stop = min(start + block, width)
        w1, u1 = w[:, start:stop].clone(), u[start:stop, start:stop]
        err1 = torch.zeros_like(w1)
        for i in range(stop - start):
            col = start + i
            if size < width and col % size == 0:
                grid = fit_grid(w1[:, None, i:i + size], bits, symmetric)
                scale, zero = grid[0][:, 0], grid[1][:, 0]
                scales.append(scale)
                zeros.append(zero)
            q = round_codes(w1[:, i:i + 1], scale, zero, bits, symmetric)[:, 0]
            codes[:, col] = q
            err = (w1[:, i] - (q - zero) * scale) / u1[i, i]
            w1[:, i:] -= err[:, None] * u1[i, i:][None, :]
            err1[:, i] = err
        w[:, stop:] -= err1 @ u[start:stop, stop:]
    return stored(codes, torch.stack(scales, 1), torch.stack(zeros, 1), bits, symmetric, weight.dtype)


def awq_scales(weight: Any, x: Any, bits: int, group: int | None, symmetric: bool) -> Any:
    """AWQ's per-input-channel scales s [in] for a [out, in] weight with inputs `x`: the alpha on the
    grid whose s = mean|x|^alpha (normalized to a geometric mean of 1 between its extremes) gives the
    least squared output error of Q(W·diag(s))·diag(1/s) on `x`."""
    import torch

    from .quantize import dequantize_weight, quantize_weight

    w = weight.detach().to(torch.float64)
    x = inputs_2d(x)
    magnitude = x.abs().mean(0).clamp(min=1e-8)
    reference = x @ w.T
    best, best_err = torch.ones_like(magnitude), math.inf
    for k in range(AWQ_GRID):
        s = magnitude.pow(k / AWQ_GRID)
        s = s / (s.max() * s.min()).sqrt()
        q = dequantize_weight(quantize_weight(w * s, bits, group, symmetric), bits, group, symmetric, w.shape[1]) / s
        err = float((x @ q.T - reference).pow(2).sum())
        if err < best_err:
            best, best_err = s, err
    return best


def awq(weight: Any, x: Any, bits: int, group: int | None, symmetric: bool, scales: Any) -> dict[str, Any]:
    """The stored state of W·diag(scales) (the fold's other half is in the producer), its clipping
    searched per group for the output error on `x`·diag(1/scales)."""
    import torch

    from .quantize import quantize_weight

    xs = inputs_2d(x) / scales
    state = quantize_weight(weight.detach().to(torch.float64) * scales, bits, group, symmetric, hessian=xs.T @ xs)
    return {k: v.to(weight.dtype) if v.is_floating_point() else v for k, v in state.items()}


def fold_target(graph: Graph, node: Node) -> tuple[str | None, str]:
    """The linear layer AWQ folds `node`'s input scales into, or None, and why (for the plan note).

    The input must come from a plain linear layer through ops that commute with a positive scale per
    channel, with no other user on the way (they would see the scaled values) and no model output."""
    outputs = set(graph.outputs.values())
    name = graph.operands(node.name)[0]
    while True:
        producer = graph.node(name)
        if producer.op == "input":
            return None, "its input is a model input"
        if len(graph.users(name)) > 1 or name in outputs:
            return None, f"its input `{producer.local or name}` has other users"
        if producer.op == "linear":
            return name, f"scales folded into `{producer.key if producer.local else name}`"
        if producer.op not in HOMOGENEOUS:
            return None, f"its input comes from `{producer.op}`, which does not commute with scaling"
        name = graph.operands(name)[0]


def output_error(reference: list[Any], outputs: list[Any]) -> float:
    """Relative squared error of a model's float outputs against the reference ones (all outputs pooled)."""
    num = sum(float((o.double() - r.double()).pow(2).sum()) for r, o in zip(reference, outputs)
              if r.is_floating_point())
    den = sum(float(r.double().pow(2).sum()) for r in reference if r.is_floating_point())
    return num / max(den, 1e-300)
