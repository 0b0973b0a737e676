"""conv_transpose1d and conv_transpose2d, as torch.nn.ConvTranspose1d / nn.ConvTranspose2d.

Inputs are channels first (`[N, C, L]`, `[N, C, H, W]`). The batch dim may be
symbolic; the channel dim sizes the weight and the spatial dims fix the output
size, so both must be static. The weight is laid out as torch's,
`[in_channels, out_channels / groups, *kernel]`, so checkpoints load unchanged.
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpDef, register
from .conv import NonNegative1, NonNegative2, Positive1, Positive2, WindowAttrs, _in_channels, spatial_input


class ConvTranspose1dAttrs(WindowAttrs):
    ndim: ClassVar[int] = 1
    out_channels: PositiveInt
    kernel: Positive1
    stride: Positive1 = 1
    padding: NonNegative1 = 0
    output_padding: NonNegative1 = 0
    dilation: Positive1 = 1
    groups: PositiveInt = 1
    bias: bool = True


class ConvTranspose2dAttrs(ConvTranspose1dAttrs):
    ndim: ClassVar[int] = 2
    kernel: Positive2
    stride: Positive2 = 1
    padding: NonNegative2 = 0
    output_padding: NonNegative2 = 0
    dilation: Positive2 = 1


def _output_sizes(ctx: InferContext) -> tuple[int, ...]:
    """(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1 per spatial dim, each >= 1.

    output_padding only picks among the input sizes a strided conv maps to the same
    size, so (as torch requires) it must be smaller than the stride or the dilation.
    """
    a = ctx.attrs
    out = []
    per_dim = zip(*(a.per_dim(f) for f in ("kernel", "stride", "padding", "output_padding", "dilation")))
    for axis, (k, s, p, op, d) in enumerate(per_dim, start=2):
        size = ctx.static(0, axis, f"spatial dim {axis}")
        if op >= s and op >= d:
            raise ctx.error(f"output_padding {op} of dim {axis} must be smaller than the stride ({s}) or the "
                            f"dilation ({d}) (input {ctx.describe(0)})")
        n = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if n < 1:
            raise ctx.error(f"padding {p} on each side removes the whole of dim {axis} of {ctx.describe(0)} "
                            f"(it would have {n} elements)", "E0402")
        out.append(n)
    return tuple(out)


def _infer(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    x = spatial_input(ctx, a.ndim)
    channels = _in_channels(ctx)
    if channels % a.groups:
        raise ctx.error(f"in_channels {channels} of {ctx.describe(0)} is not divisible by groups={a.groups}", "E0402")
    if a.out_channels % a.groups:
        raise ctx.error(f"out_channels={a.out_channels} is not divisible by groups={a.groups} "
                        f"(input {ctx.describe(0)})")
    return x.with_shape((x.shape[0], a.out_channels) + _output_sizes(ctx))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = {"weight": ParamSpec((_in_channels(ctx), a.out_channels // a.groups) + a.per_dim("kernel"))}
    if a.bias:
        params["bias"] = ParamSpec((a.out_channels,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """A multiply-add per weight of a group, per input element (each scatters into the output)."""
    a = ctx.attrs
    return dim_mul(ctx.types[0].numel(), 2 * (a.out_channels // a.groups) * prod(a.per_dim("kernel")))


register(OpDef("conv_transpose1d", "transposed 1-d convolution of [N, C, L], as "
               "torch.nn.ConvTranspose1d(C, out_channels, kernel, ...)",
               ("x",), ConvTranspose1dAttrs, infer=_infer, params=_params, flops=_flops))
register(OpDef("conv_transpose2d", "transposed 2-d convolution of [N, C, H, W], as "
               "torch.nn.ConvTranspose2d(C, out_channels, kernel, ...); kernel, stride, padding, "
               "output_padding, dilation: an int or [h, w]",
               ("x",), ConvTranspose2dAttrs, infer=_infer, params=_params, flops=_flops))
