"""Resizing the spatial dims of channels-first images: interpolate (torch.nn.functional.interpolate) and
pixel_shuffle (F.pixel_shuffle).

interpolate follows torch's conventions exactly. ONNX's Resize spells linear and bilinear as the coordinate
transformation mode "half_pixel", or "align_corners" with align_corners=true. Its "asymmetric" nearest with
floor rounding is torch's nearest in exact arithmetic only: the two round the source coordinate differently
(e.g. 14 -> 2 and 21 -> 3 rows pick other rows), so the ONNX target gathers the rows and columns torch picks,
computed here as torch computes them.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import PlainValidator, PositiveInt
from pydantic_core import PydanticCustomError

from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, no_flops, register
from .conv import Positive2, spatial_input


def _positive_floats(v: object) -> float | tuple[float, ...]:
    """A finite number > 0, or a list of two (one per spatial dim of a 2-d input)."""
    def ok(i: object) -> bool:
        return isinstance(i, (int, float)) and not isinstance(i, bool) and math.isfinite(i) and i > 0

    if ok(v):
        return float(v)  # type: ignore[arg-type]
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(ok(i) for i in v):
        return tuple(float(i) for i in v)
    shown = repr(list(v) if isinstance(v, tuple) else v)
    raise PydanticCustomError("per_dim", "expected a finite number > 0 or a list of 2 such numbers, got {got}",
                              {"got": shown})


_MODE_RANK = {"linear": 3, "bilinear": 4}  # nearest takes either


class InterpolateAttrs(OpAttrs):
    size: Positive2 | None = None
    scale_factor: Annotated[float | tuple[float, ...], PlainValidator(_positive_floats)] | None = None
    mode: Literal["nearest", "linear", "bilinear"] = "nearest"
    align_corners: bool = False

    def per_dim(self, field: str, ndim: int) -> tuple[Any, ...]:
        value = getattr(self, field)
        return value if isinstance(value, tuple) else (value,) * ndim

    def nearest_indices(self, i: int, size: int, out: int) -> list[int]:
        """The input index torch's CPU kernel reads for each output index of spatial dim i (mode nearest):
        floor(j * scale) in float32, where scale is 1/scale_factor if one was given, else size/out."""
        if out == size:
            return list(range(out))
        if out == 2 * size:
            return [j // 2 for j in range(out)]
        factor = self.scale_factor[i] if isinstance(self.scale_factor, tuple) else self.scale_factor
        scale = np.float32(1.0 / factor) if factor is not None else np.float32(size) / np.float32(out)
        return [min(int(np.floor(np.float32(j) * scale)), size - 1) for j in range(out)]

    def onnx_modes(self) -> str:
        """The attributes of ONNX's Resize that compute what torch does (linear modes)."""
        transform = "align_corners" if self.align_corners else "half_pixel"
        return f'mode = "linear", coordinate_transformation_mode = "{transform}"'


def _interpolate_infer(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    rank = ctx.types[0].rank
    if rank not in (3, 4):
        raise ctx.error(f"expects [N, C, L] or [N, C, H, W] (channels first), got {ctx.describe(0)}", "E0402")
    ndim = rank - 2
    x = spatial_input(ctx, ndim)
    if a.mode in _MODE_RANK and _MODE_RANK[a.mode] != rank:
        other = "bilinear" if a.mode == "linear" else "linear"
        raise ctx.error(f'mode="{a.mode}" takes a rank-{_MODE_RANK[a.mode]} input, got {ctx.describe(0)}; '
                        f'use mode="{other}"', "E0402")
    if a.align_corners and a.mode == "nearest":
        raise ctx.error(f'align_corners applies to mode="linear" and "bilinear" only, not "nearest" '
                        f'(input {ctx.describe(0)})')
    if (a.size is None) == (a.scale_factor is None):
        raise ctx.error(f"give exactly one of size and scale_factor to resize {ctx.describe(0)}")
    for field in ("size", "scale_factor"):
        if isinstance(getattr(a, field), tuple) and ndim == 1:
            raise ctx.error(f"{field} is a list of 2, but {ctx.describe(0)} has one spatial dim: give one number")
    for axis in range(2, rank):  # both ONNX lowerings need the input's spatial sizes
        ctx.static(0, axis, f"spatial dim {axis}")
    if a.size is not None:
        return x.with_shape(x.shape[:2] + a.per_dim("size", ndim))
    out = []
    for axis, scale in enumerate(a.per_dim("scale_factor", ndim), start=2):
        size = ctx.static(0, axis, f"spatial dim {axis}")
        exact = Fraction(scale) * size  # whole: then torch's 1/scale_factor is the size ratio ONNX uses
        if exact.denominator != 1 or exact < 1:
            raise ctx.error(f"scale_factor {scale} times dim {axis} of {ctx.describe(0)} is {float(exact):g}, "
                            f"not a whole number of at least 1: give size= instead")
        out.append(int(exact))
    return x.with_shape(x.shape[:2] + tuple(out))


def _interpolate_flops(ctx: InferContext) -> Dim:
    """nearest copies; linear blends 2 inputs per spatial dim (a multiply-add each)."""
    if ctx.attrs.mode == "nearest":
        return 0
    return dim_mul(ctx.node.type.numel(), 2 * 2 ** (ctx.types[0].rank - 2))


class PixelShuffleAttrs(OpAttrs):
    upscale_factor: PositiveInt


def _pixel_shuffle_infer(ctx: InferContext) -> TensorType:
    r = ctx.attrs.upscale_factor
    x = spatial_input(ctx, 2)
    channels = ctx.static(0, 1, "the channel dim (1)")
    if channels % (r * r):
        raise ctx.error(f"the {channels} channels of {ctx.describe(0)} are not divisible by "
                        f"upscale_factor**2 = {r * r}", "E0402")
    n, _, h, w = x.shape
    return x.with_shape((n, channels // (r * r), dim_mul(h, r), dim_mul(w, r)))


register(OpDef("interpolate", "resize the spatial dims of [N, C, L] or [N, C, H, W] to `size` or by "
               "`scale_factor`, as torch.nn.functional.interpolate (mode nearest, linear or bilinear)",
               ("x",), InterpolateAttrs, infer=_interpolate_infer, flops=_interpolate_flops))
register(OpDef("pixel_shuffle", "rearrange [N, C*r*r, H, W] into [N, C, H*r, W*r], as "
               "torch.nn.functional.pixel_shuffle(x, r)",
               ("x",), PixelShuffleAttrs, infer=_pixel_shuffle_infer, flops=no_flops))
