"""A linear layer with weight-only integer quantization, as produced by the quantize transform.

The weight is stored as integer codes plus one float scale per group of `group`
consecutive input features of each output row (`group` unset: one group per
row, i.e. per-channel), and dequantized in forward: w = (q - zero) * scale.

Storage (buffers, so they are not trained):
  - bits=8, symmetric: `qweight` int8 [out, in], zero point 0;
  - bits=8, asymmetric: `qweight` uint8 [out, in] and `zero` uint8 [out, groups];
  - bits=4: `qweight` uint8 [out, ceil(in/2)], two codes per byte (feature 2j in the
    low nibble, 2j+1 in the high one), codes in [0, 15]; the zero point is 8 when
    symmetric, else `zero` uint8 [out, groups].
  - bits=2 and 3 (plain linear layers only): the same layout generalized, a little-endian bit
    stream per row, feature k at bits [k*bits, (k+1)*bits), `qweight` uint8
    [out, ceil(in*bits/8)] (int2: four codes per byte; int3: eight codes per three bytes, some
    codes straddling two bytes); the zero point is 2^(bits-1) when symmetric, else `zero`.
The last group may be shorter when `group` does not divide the input width.

How each target runs it (the storage is the same everywhere):
  - onnx: `com.microsoft.MatMulNBits` (onnxruntime's fused dequantize-matmul kernel) when the
    input is f32, a MatMulNBits block size fits the groups, and for int8 only with
    accuracy_level=4 (`onnx_block`). Otherwise the weight is rebuilt with Cast/Sub/Mul from
    constants, which onnxruntime folds into an f32 weight when it loads the model: dense speed
    and dense memory in the session, packed codes in the file. `onnx="standard"` instead rebuilds
    it with blocked DequantizeLinear (standard ONNX, which runtimes keep quantized: less memory,
    slower). `accuracy_level` is MatMulNBits' attribute: 0 computes in the input's float type (the
    numbers of the other targets); 4 quantizes the activations to int8 per block, several times
    faster on CPU at a small loss of accuracy.
  - torch: dequantizes a few rows of the weight at a time into a cache-sized tile and multiplies
    by it, so a forward never holds the float weight (see backends/torch/ops/quant_linear.j2).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


class QuantLinearAttrs(OpAttrs):
    out_features: PositiveInt
    bits: Literal[2, 3, 4, 8] = 8
    group: PositiveInt | None = None  # input features per scale; None: the whole row (per-channel)
    symmetric: bool = True
    bias: bool = True
    onnx: Literal["contrib", "standard"] = "contrib"  # onnx target: MatMulNBits, or standard ops only
    accuracy_level: Literal[0, 1, 2, 3, 4] = 0  # MatMulNBits' accuracy_level (4: int8 activations)

    def onnx_block(self, in_features: int, dtype: str) -> int | None:
        """The MatMulNBits block size that runs this layer on the onnx target, or None for standard ops.

        MatMulNBits needs a power-of-two block of at least 16 input features with one scale each:
        a block that divides `group` (its scale repeated across the group's blocks), or any
        block for per-channel scales. Its CPU kernel runs f32 inputs (other dtypes: standard ops).
        Its 8-bit kernel is fast only with int8 activations (accuracy_level=4). 2- and 3-bit layers
        always run standard ops (MatMulNBits has no 3-bit kernel, and its 2-bit layout is not ours).
        """
        if self.bits in (2, 3):
            return None
        if self.onnx != "contrib" or dtype != "f32" or (self.bits == 8 and self.accuracy_level != 4):
            return None  # 8-bit MatMulNBits on f32 activations is 20-40x slower than dense (onnxruntime 1.32, CPU)
        if self.group is None or self.group >= in_features:
            return 128 if in_features >= 128 else 16 if in_features <= 16 else 32
        block = min(self.group & -self.group, 128)  # the largest power of two dividing the group
        return block if block >= 16 else None


def in_features(ctx: InferContext) -> int:
    return ctx.static(0, -1, "the input feature dim (last)")


def storage(bits: int, symmetric: bool, out_features: int, in_features: int, group: int | None) -> dict[str, ParamSpec]:
    """The buffers holding a quantized [out, in] weight (shared with the transform that fills them)."""
    groups = -(-in_features // (group or in_features))
    width = -(-in_features * bits // 8)  # int2/int3/int4 packed as a bit stream per row (int8: one a byte)
    params = {"qweight": ParamSpec((out_features, width), trainable=False,
                                   dtype="i8" if bits == 8 and symmetric else "u8"),
              "scale": ParamSpec((out_features, groups), trainable=False)}
    if not symmetric:
        params["zero"] = ParamSpec((out_features, groups), trainable=False, dtype="u8")
    return params


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    width = in_features(ctx)
    if ctx.attrs.group is not None and ctx.attrs.group > width:
        raise ctx.error(f"group={ctx.attrs.group} is wider than the input features of {ctx.describe(0)}")
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params = storage(a.bits, a.symmetric, a.out_features, in_features(ctx), a.group)
    if a.bias:
        params["bias"] = ParamSpec((a.out_features,))
    return params


def _flops(ctx: InferContext) -> Dim:
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    return dim_mul(rows, 2 * in_features(ctx) * ctx.attrs.out_features)


register(OpDef("quant_linear", "linear layer with int8/int4/int3/int2 weight-only quantization (packed codes, per-group scales)",
               ("x",), QuantLinearAttrs, infer=_infer, params=_params, flops=_flops, export_weights=True))
