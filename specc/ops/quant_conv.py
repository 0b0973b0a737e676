"""conv1d / conv2d with the weight quantized per output channel, as `quantize on conv2d` makes them.

The [out, in/groups, *kernel] weight is stored as quant_linear stores an [out, in/groups * prod(kernel)]
weight (specc/ops/quant_linear.py) with one scale per output channel: `qweight` (int8, or int4 two
a byte), `scale` [out, 1] and, when asymmetric, `zero`; the bias stays float. Each forward
dequantizes the weight (a convolution's weight is small next to its activations) and convolves:
torch and triton with F.conv1d/F.conv2d, onnx with quant_linear's `dequantized` nodes, a Reshape
and Conv (onnxruntime folds the dequantization at load with onnx="contrib").
"""

from __future__ import annotations

from math import prod
from types import SimpleNamespace
from typing import Any, Literal

from ..ir import ParamSpec
from . import InferContext, OpDef, register
from .conv import Conv1dAttrs, Conv2dAttrs, _flops, _in_channels, _infer
from .quant_linear import QuantLinearAttrs, storage


class _Quantized:
    """What a quantized convolution adds to its convolution's attributes."""

    bits: Literal[4, 8]
    symmetric: bool
    onnx: Literal["contrib", "standard"]

    def width(self, in_channels: int) -> int:
        """Weights per output channel: the flattened [in/groups, *kernel]."""
        return in_channels // self.groups * prod(self.per_dim("kernel"))

    def flat(self, n: Any) -> SimpleNamespace:
        """A quant_linear view of the flattened weight for the onnx template (its value `NAME__w`)."""
        width = self.width(n.arg_types[0].shape[1])
        attrs = QuantLinearAttrs(out_features=self.out_channels, bits=self.bits, symmetric=self.symmetric,
                                 bias=self.bias, onnx=self.onnx)
        return SimpleNamespace(name=n.name, attrs=attrs, arg_types=[SimpleNamespace(shape=(width,))], type=n.type)


class QuantConv1dAttrs(_Quantized, Conv1dAttrs):
    bits: Literal[4, 8] = 8
    symmetric: bool = True
    onnx: Literal["contrib", "standard"] = "contrib"


class QuantConv2dAttrs(_Quantized, Conv2dAttrs):
    bits: Literal[4, 8] = 8
    symmetric: bool = True
    onnx: Literal["contrib", "standard"] = "contrib"


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = storage(a.bits, a.symmetric, a.out_channels, a.width(_in_channels(ctx)), None)
    if a.bias:
        params["bias"] = ParamSpec((a.out_channels,))
    return params


register(OpDef("quant_conv1d", "conv1d with an int8/int4 weight quantized per output channel", ("x",),
               QuantConv1dAttrs, infer=_infer, params=_params, flops=_flops))
register(OpDef("quant_conv2d", "conv2d with an int8/int4 weight quantized per output channel", ("x",),
               QuantConv2dAttrs, infer=_infer, params=_params, flops=_flops))
