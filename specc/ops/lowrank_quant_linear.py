"""A low-rank linear layer whose two factors are quantized: `lowrank` then `quantize`.

y = up(down(x)) as in `lowrank_linear`, each factor stored like a `quant_linear` weight
(see specc/ops/quant_linear.py for the codes, scales and zero points): `down.*` holds the
[rank, in] factor, `up.*` the [out, rank] factor and the bias (`up.bias`), so the state-dict
keys are lowrank_linear's with each `weight` replaced by its quantized storage. Each factor
has its own group width (a group is clamped to its factor's input width: the up factor's is
the rank). Buffers only apart from the bias: a quantized layer is for inference.

Targets run each factor as its quant_linear: the torch and triton targets with two of their
`_QuantLinear` layers (in an nn.ModuleDict, for the `down.`/`up.` keys), the onnx target with
the dequantize-then-MatMul nodes of quant_linear's template (not MatMulNBits, whose weights the
torch layer exports per layer, not per factor): onnxruntime folds each factor to f32 at load, or with
onnx="standard" each is a DequantizeLinear, which runtimes keep quantized.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, float_input, register
from .lowrank_linear import lowrank_flops
from .quant_linear import QuantLinearAttrs, storage


class _FactorAttrs(QuantLinearAttrs):
    """A factor's attributes for quant_linear's onnx template, which then rebuilds the weight from its
    own initializers (MatMulNBits' would need the torch layer's export_weights for the factor)."""

    def onnx_block(self, in_features: int, dtype: str) -> int | None:
        return None


class LowRankQuantLinearAttrs(OpAttrs):
    out_features: PositiveInt
    rank: PositiveInt
    bits: Literal[4, 8] = 8
    down_group: PositiveInt | None = None  # input features per scale of the [rank, in] factor (None: per row)
    up_group: PositiveInt | None = None  # the same for the [out, rank] factor (its input width is the rank)
    symmetric: bool = True
    bias: bool = True
    onnx: Literal["contrib", "standard"] = "contrib"

    def factor(self, n: Any, which: str) -> SimpleNamespace:
        """A view of one factor as a quant_linear node, for quant_linear's onnx template: its value is
        `NAME__down` / `NAME__up`, so its initializers are this layer's `down.*` / `up.*` parameters."""
        width = n.arg_types[0].shape[-1]
        down = which == "down"
        attrs = _FactorAttrs(out_features=self.rank if down else self.out_features, bits=self.bits,
                             group=self.down_group if down else self.up_group, symmetric=self.symmetric,
                             bias=False if down else self.bias, onnx=self.onnx)
        return SimpleNamespace(name=f"{n.name}__{which}", args=[n.args[0] if down else f"{n.name}__down"],
                               arg_types=[SimpleNamespace(shape=(width if down else self.rank,))],
                               attrs=attrs, type=n.type)


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    width = ctx.static(0, -1, "the input feature dim (last)")
    a = ctx.attrs
    for name, group, limit in (("down_group", a.down_group, width), ("up_group", a.up_group, a.rank)):
        if group is not None and group > limit:
            raise ctx.error(f"{name}={group} is wider than that factor's {limit} input features")
    return x.with_shape(x.shape[:-1] + (a.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    width = ctx.static(0, -1, "the input feature dim")
    params = {f"down.{k}": v for k, v in storage(a.bits, a.symmetric, a.rank, width, a.down_group).items()}
    params.update({f"up.{k}": v for k, v in storage(a.bits, a.symmetric, a.out_features, a.rank, a.up_group).items()})
    if a.bias:
        params["up.bias"] = ParamSpec((a.out_features,))
    return params


register(OpDef("lowrank_quant_linear", "low-rank linear layer with int8/int4 quantized factors: up(down(x)), "
                                       "each factor packed codes plus per-group scales",
               ("x",), LowRankQuantLinearAttrs, infer=_infer, params=_params, flops=lowrank_flops))
