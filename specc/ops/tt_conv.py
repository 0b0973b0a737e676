"""conv1d / conv2d whose weight is a tensor train (MPO), as `tensor_train on conv2d` makes them
(CompactifAI factors every layer this way).

The [out, in/groups, *kernel] weight, flattened to [out, in/groups * prod(kernel)], is stored as
tt_linear stores a weight: cores G_k [r_{k-1}, o_k, i_k, r_k] over out = o_1 * ... * o_d and the
flattened width = i_1 * ... * i_d; the bias stays dense. Each forward contracts the cores into
the weight (a convolution's weight is small next to its activations) and convolves: torch and
triton with F.conv1d/F.conv2d, onnx with an Einsum per core, a Reshape and Conv.
"""

from __future__ import annotations

from math import prod

from pydantic import PositiveInt

from ..ir import ParamSpec
from . import InferContext, OpDef, register
from .conv import Conv1dAttrs, Conv2dAttrs, _flops, _in_channels, _infer
from .tt_linear import core_shapes, wrong_lengths


class _Train:
    """What a factored convolution adds to its convolution's attributes."""

    out_modes: tuple[int, ...]
    in_modes: tuple[int, ...]
    ranks: tuple[int, ...]

    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        return core_shapes(self.out_modes, self.in_modes, self.ranks)


class TTConv1dAttrs(_Train, Conv1dAttrs):
    out_modes: tuple[PositiveInt, ...]
    in_modes: tuple[PositiveInt, ...]
    ranks: tuple[PositiveInt, ...]


class TTConv2dAttrs(_Train, Conv2dAttrs):
    out_modes: tuple[PositiveInt, ...]
    in_modes: tuple[PositiveInt, ...]
    ranks: tuple[PositiveInt, ...]


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    width = _in_channels(ctx) // a.groups * prod(a.per_dim("kernel"))
    wrong = wrong_lengths(("in_modes", a.in_modes), ("out_modes", a.out_modes), a.ranks)
    if wrong:
        raise ctx.error(wrong)
    if prod(a.out_modes) != a.out_channels or prod(a.in_modes) != width:
        raise ctx.error(f"out_modes {list(a.out_modes)} and in_modes {list(a.in_modes)} multiply to "
                        f"{prod(a.out_modes)} and {prod(a.in_modes)}, not out_channels={a.out_channels} and the "
                        f"weight's width in/groups * kernel = {width} of {ctx.describe(0)}", "E0402")
    params = {f"cores.{k}": ParamSpec(shape) for k, shape in enumerate(a.core_shapes())}
    if a.bias:
        params["bias"] = ParamSpec((a.out_channels,))
    return params


register(OpDef("tt_conv1d", "conv1d with its weight a tensor train (MPO) of cores", ("x",), TTConv1dAttrs,
               infer=_infer, params=_params, flops=_flops))
register(OpDef("tt_conv2d", "conv2d with its weight a tensor train (MPO) of cores", ("x",), TTConv2dAttrs,
               infer=_infer, params=_params, flops=_flops))
