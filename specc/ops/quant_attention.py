"""Multi-head attention whose projection weights are quantized, as `quantize on attention` makes it.

Everything `attention` does (specc/ops/attention.py: heads, kv_heads, fused or separate q/k/v,
rotary, mask, context) with each projection's `weight` stored as quant_linear stores a weight
(specc/ops/quant_linear.py): `qkv.qweight`, `qkv.scale` (and `qkv.zero` when asymmetric) instead of
`qkv.weight`, the same for `out` (or `q_proj`, `k_proj`, `v_proj`, `o_proj`); biases stay float under
their keys. `group` is clamped per projection to its input width (None there: one scale per row).

Targets: torch and triton build the attention module and swap each projection for their
`_QuantLinear` (`_quantized_projections`), so the attention code is the same as dense; onnx
dequantizes each projection into the value the attention graph reads as its weight (quant_linear's
`dequantized` nodes, which onnxruntime folds to f32 at load with onnx="contrib", or keeps quantized
with DequantizeLinear with onnx="standard"), then runs attention's nodes.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

from pydantic import PositiveInt

from ..ir import ParamSpec
from . import InferContext, OpDef, register
from .attention import AttentionAttrs, _flops, _infer
from .attention import _params as _dense_params
from .quant_linear import QuantLinearAttrs, storage


class QuantAttentionAttrs(AttentionAttrs):
    bits: Literal[4, 8] = 8
    group: PositiveInt | None = None  # input features per scale, clamped per projection; None: per row
    symmetric: bool = True
    onnx: Literal["contrib", "standard"] = "contrib"

    def plain(self) -> bool:
        return False  # always the general attention module (same keys and numbers for the original options)

    def projection_group(self, in_features: int) -> int | None:
        return self.group if self.group is not None and self.group < in_features else None

    def projections(self, n: Any) -> list[SimpleNamespace]:
        """A quant_linear view of each projection for the onnx template (value `NAME__qkv`, ...)."""
        out = []
        for key, spec in n.params.items():
            if key.endswith(".qweight"):
                layer = key[:-len(".qweight")]
                rows, cols = n.params[f"{layer}.scale"].shape[0], _width(n, layer)
                attrs = QuantLinearAttrs(out_features=rows, bits=self.bits, group=self.projection_group(cols),
                                         symmetric=self.symmetric, bias=self.bias, onnx=self.onnx)
                out.append(SimpleNamespace(name=f"{n.name}__{layer}", layer=layer, attrs=attrs,
                                           arg_types=[SimpleNamespace(shape=(cols,))], type=n.type))
        return out


def _width(n: Any, layer: str) -> int:
    """The input width of a projection: the context's for k/v of cross-attention, else x's (o/out: d)."""
    a = n.attrs
    if layer in ("k_proj", "v_proj") and "context" in a.operands:
        return n.arg_types[a.operands.index("context")].shape[-1]
    return n.arg_types[0].shape[-1]


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    a = ctx.attrs
    params: dict[str, ParamSpec] = {}
    for key, spec in _dense_params(ctx).items():
        if key.endswith(".weight"):
            rows, cols = spec.shape
            layer = key[:-len(".weight")]
            params.update({f"{layer}.{k}": v for k, v in
                           storage(a.bits, a.symmetric, rows, cols, a.projection_group(cols)).items()})
        else:
            params[key] = spec
    return params


register(OpDef("quant_attention", "multi-head attention with int8/int4 weight-only quantized projections "
                                  "(packed codes, per-group scales)",
               ("x", "mask", "context"), QuantAttentionAttrs, infer=_infer, params=_params, flops=_flops,
               optional=("mask", "context"), keyword_operands=True))
