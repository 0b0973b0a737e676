"""Batch normalization over the channel dim 1, as torch.nn.BatchNorm1d (rank 2, 3) / BatchNorm2d (rank 4).

In training the module normalizes with the batch's statistics and updates its
running ones (torch does both); at eval, and in ONNX, it uses the running ones.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class BatchNormAttrs(OpAttrs):
    eps: PositiveFloat = 1e-5
    momentum: float = Field(0.1, ge=0, le=1)


def _channels(ctx: InferContext) -> int:
    return ctx.static(0, 1, "the channel dim (1)")


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank not in (2, 3, 4):
        raise ctx.error(f"expects [N, C], [N, C, L] or [N, C, H, W], got {ctx.describe(0)}", "E0402")
    _channels(ctx)
    return x


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    c = _channels(ctx)
    return {
        "weight": ParamSpec((c,)),
        "bias": ParamSpec((c,)),
        "running_mean": ParamSpec((c,), trainable=False),
        "running_var": ParamSpec((c,), trainable=False),
        "num_batches_tracked": ParamSpec((), trainable=False, dtype="i64"),
    }


def _flops(ctx: InferContext) -> Dim:
    """Subtract the mean, divide by the deviation, scale, shift: four per element."""
    return dim_mul(ctx.node.type.numel(), 4)


register(OpDef("batchnorm", "normalize each channel (dim 1) with batch statistics in training, running ones at "
               "eval, then scale and shift; as torch.nn.BatchNorm1d/2d(C, eps, momentum)",
               ("x",), BatchNormAttrs, infer=_infer, params=_params, flops=_flops))
