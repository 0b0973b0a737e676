"""conv1d and conv2d, as torch.nn.Conv1d / nn.Conv2d, and the sliding-window rules pooling shares.

Inputs are channels first (`[N, C, L]`, `[N, C, H, W]`). The batch dim may be
symbolic; the channel dim sizes the weight and the spatial dims fix the output
size, so both must be static.
"""

from __future__ import annotations

from math import prod
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator, PositiveInt
from pydantic_core import PydanticCustomError

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register

_LAYOUTS = {1: "[N, C, L]", 2: "[N, C, H, W]"}


def spatial_ints(ndim: int, minimum: int) -> Any:
    """An attribute type: one int >= minimum for every spatial dim, or (2-d ops) a list of one per dim.

    A plain union would report a bad list as "input should be a valid integer";
    this says what is accepted.
    """
    def ok(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

    def check(v: object) -> int | tuple[int, ...]:
        if ok(v):
            return v  # type: ignore[return-value]
        if ndim > 1 and isinstance(v, (list, tuple)) and len(v) == ndim and all(ok(i) for i in v):
            return tuple(v)
        what = f"an int >= {minimum}" + (f" or a list of {ndim} such ints" if ndim > 1 else "")
        shown = repr(list(v) if isinstance(v, tuple) else v)  # as the spec wrote it
        raise PydanticCustomError("per_dim", "expected {what}, got {got}", {"what": what, "got": shown})

    return Annotated[int | tuple[int, ...], PlainValidator(check)]


Positive1, NonNegative1 = spatial_ints(1, 1), spatial_ints(1, 0)
Positive2, NonNegative2 = spatial_ints(2, 1), spatial_ints(2, 0)


class WindowAttrs(OpAttrs):
    """Attributes of a sliding-window op over `ndim` spatial dims."""

    ndim: ClassVar[int]

    def per_dim(self, field: str) -> tuple[int, ...]:
        """An attribute spelled out per spatial dim (templates use this for ONNX's lists)."""
        value = getattr(self, field)
        return value if isinstance(value, tuple) else (value,) * self.ndim


def spatial_input(ctx: InferContext, ndim: int) -> TensorType:
    """Operand 0 as a float tensor laid out [N, C, *spatial] with `ndim` spatial dims."""
    x = float_input(ctx)
    if x.rank != ndim + 2:
        raise ctx.error(f"expects a rank-{ndim + 2} input {_LAYOUTS[ndim]} (channels first), "
                        f"got {ctx.describe(0)}", "E0402")
    return x


def window_output(ctx: InferContext, attrs: WindowAttrs, dilation: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Output spatial sizes, floor((size + 2*pad - dilation*(kernel-1) - 1) / stride) + 1, each >= 1."""
    kernel, stride, padding = attrs.per_dim("kernel"), attrs.per_dim("stride"), attrs.per_dim("padding")
    out = []
    for i, (k, s, p, d) in enumerate(zip(kernel, stride, padding, dilation or (1,) * attrs.ndim)):
        axis = i + 2
        size = ctx.static(0, axis, f"spatial dim {axis}")
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            dilated = f" (kernel {k}, dilation {d})" if d != 1 else ""
            raise ctx.error(f"a window of {span}{dilated} is larger than dim {axis} of {ctx.describe(0)} "
                            f"with padding {p} on each side ({size + 2 * p}), so there is no output", "E0402")
        out.append((size + 2 * p - span) // s + 1)
    return tuple(out)


class Conv1dAttrs(WindowAttrs):
    ndim: ClassVar[int] = 1
    out_channels: PositiveInt
    kernel: Positive1
    stride: Positive1 = 1
    padding: NonNegative1 = 0
    dilation: Positive1 = 1
    groups: PositiveInt = 1
    bias: bool = True


class Conv2dAttrs(Conv1dAttrs):
    ndim: ClassVar[int] = 2
    kernel: Positive2
    stride: Positive2 = 1
    padding: NonNegative2 = 0
    dilation: Positive2 = 1


def _in_channels(ctx: InferContext) -> int:
    return ctx.static(0, 1, "the channel dim (1)")


def _infer(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    x = spatial_input(ctx, a.ndim)
    channels = _in_channels(ctx)
    if channels % a.groups:
        raise ctx.error(f"in_channels {channels} of {ctx.describe(0)} is not divisible by groups={a.groups}", "E0402")
    if a.out_channels % a.groups:
        raise ctx.error(f"out_channels={a.out_channels} is not divisible by groups={a.groups} "
                        f"(input {ctx.describe(0)})")
    return x.with_shape((x.shape[0], a.out_channels) + window_output(ctx, a, a.per_dim("dilation")))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = {"weight": ParamSpec((a.out_channels, _in_channels(ctx) // a.groups) + a.per_dim("kernel"))}
    if a.bias:
        params["bias"] = ParamSpec((a.out_channels,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """A multiply-add per weight of a group, per output element."""
    a = ctx.attrs
    return dim_mul(ctx.node.type.numel(), 2 * (_in_channels(ctx) // a.groups) * prod(a.per_dim("kernel")))


register(OpDef("conv1d", "1-d convolution of [N, C, L], as torch.nn.Conv1d(C, out_channels, kernel, ...)",
               ("x",), Conv1dAttrs, infer=_infer, params=_params, flops=_flops))
register(OpDef("conv2d", "2-d convolution of [N, C, H, W], as torch.nn.Conv2d(C, out_channels, kernel, ...); "
               "kernel, stride, padding, dilation: an int or [h, w]",
               ("x",), Conv2dAttrs, infer=_infer, params=_params, flops=_flops))
