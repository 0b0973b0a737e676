"""Max, average and adaptive average pooling over 1 or 2 spatial dims, as torch.nn.functional.

Inputs are channels first (`[N, C, L]`, `[N, C, H, W]`); the spatial dims must be
static to size the output, N and C may be symbolic. Average pooling counts padded
zeros in its divisor (torch's default count_include_pad=True).
"""

from __future__ import annotations

from math import prod
from typing import ClassVar

from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpDef, register
from .conv import NonNegative1, NonNegative2, Positive1, Positive2, WindowAttrs, spatial_input, window_output


class Pool1dAttrs(WindowAttrs):
    ndim: ClassVar[int] = 1
    kernel: Positive1
    stride: Positive1 | None = None  # None: the kernel, as in torch
    padding: NonNegative1 = 0

    def per_dim(self, field: str) -> tuple[int, ...]:
        return super().per_dim("kernel" if field == "stride" and self.stride is None else field)


class Pool2dAttrs(Pool1dAttrs):
    ndim: ClassVar[int] = 2
    kernel: Positive2
    stride: Positive2 | None = None
    padding: NonNegative2 = 0


def _infer_pool(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    x = spatial_input(ctx, a.ndim)
    for axis, (k, p) in enumerate(zip(a.per_dim("kernel"), a.per_dim("padding")), start=2):
        if 2 * p > k:  # torch refuses this too
            raise ctx.error(f"padding {p} of dim {axis} is more than half the kernel {k}, so a window could hold "
                            f"only padding (input {ctx.describe(0)})")
    return x.with_shape(x.shape[:2] + window_output(ctx, a))


def _pool_flops(ctx: InferContext) -> Dim:
    """One comparison or add per window element, per output element."""
    return dim_mul(ctx.node.type.numel(), prod(ctx.attrs.per_dim("kernel")))


class AdaptiveAvgPool1dAttrs(WindowAttrs):
    ndim: ClassVar[int] = 1
    output_size: Positive1

    def bins(self, i: int, size: int) -> list[tuple[int, int]]:
        """torch's windows along spatial dim i: [floor(j*size/out), ceil((j+1)*size/out)) for output j."""
        out = self.per_dim("output_size")[i]
        return [(j * size // out, -(-(j + 1) * size // out)) for j in range(out)]

    def uniform_kernel(self, sizes: tuple[int, ...]) -> tuple[int, ...] | None:
        """The kernel (= stride) of an equivalent plain average pool, when every size divides evenly."""
        outs = self.per_dim("output_size")
        if any(size % out for size, out in zip(sizes, outs)):
            return None
        return tuple(size // out for size, out in zip(sizes, outs))

    def averaging(self, i: int, size: int, transposed: bool = False) -> list[float]:
        """Row-major [out, size] matrix whose rows average the bins of dim i ([size, out] if transposed).

        Pooling a dim is a matmul with it, which is how ONNX (whose AveragePool has
        one kernel size) pools exactly when the bins differ in size.
        """
        rows = [[1 / (end - start) if start <= k < end else 0.0 for k in range(size)]
                for start, end in self.bins(i, size)]
        return [v for row in (zip(*rows) if transposed else rows) for v in row]


class AdaptiveAvgPool2dAttrs(AdaptiveAvgPool1dAttrs):
    ndim: ClassVar[int] = 2
    output_size: Positive2


def _infer_adaptive(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    x = spatial_input(ctx, a.ndim)
    for axis in range(2, x.rank):
        ctx.static(0, axis, f"spatial dim {axis}")
    return x.with_shape(x.shape[:2] + a.per_dim("output_size"))


def _adaptive_flops(ctx: InferContext) -> Dim:
    """One add per bin element; the bins of one dim may overlap, so sum their lengths."""
    x = ctx.types[0]
    per_channel = prod(sum(end - start for start, end in ctx.attrs.bins(i, size))
                       for i, size in enumerate(x.shape[2:]))
    return dim_mul(dim_mul(x.shape[0], x.shape[1]), per_channel)


_KINDS = {"maxpool": "max pooling", "avgpool": "average pooling (padding counts as zeros)"}
for _kind, _what in _KINDS.items():
    register(OpDef(f"{_kind}1d", f"{_what} of [N, C, L], as F.{_kind[:3]}_pool1d; stride defaults to kernel",
                   ("x",), Pool1dAttrs, infer=_infer_pool, flops=_pool_flops))
    register(OpDef(f"{_kind}2d", f"{_what} of [N, C, H, W], as F.{_kind[:3]}_pool2d; kernel, stride, padding: "
                   "an int or [h, w]; stride defaults to kernel",
                   ("x",), Pool2dAttrs, infer=_infer_pool, flops=_pool_flops))
register(OpDef("adaptive_avgpool1d", "average pooling of [N, C, L] to output_size, as F.adaptive_avg_pool1d",
               ("x",), AdaptiveAvgPool1dAttrs, infer=_infer_adaptive, flops=_adaptive_flops))
register(OpDef("adaptive_avgpool2d", "average pooling of [N, C, H, W] to output_size (an int or [h, w]), "
               "as F.adaptive_avg_pool2d", ("x",), AdaptiveAvgPool2dAttrs, infer=_infer_adaptive,
               flops=_adaptive_flops))
