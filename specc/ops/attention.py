"""Multi-head attention over a [B, T, d] sequence: grouped-query heads, fused or separate q/k/v
projections, rotary positions, a boolean or additive mask, and cross-attention.

    attention(x, heads, causal=false, bias=true, kv_heads=None, qkv="fused", rotary=None,
              rope_theta=10000.0, scale=None, dropout=0.0, mask=None, context=None)

`head_dim = d / heads`; `kv_heads` (default `heads`) must divide `heads`: query head h reads
key/value head `h // (heads / kv_heads)` (as transformers' `repeat_kv`).

Weight layouts (state-dict keys under the layer's name, `nn.Linear` weights are [out, in]):
- `qkv="fused"` (self-attention only): `qkv.weight` [(heads + 2 kv_heads) head_dim, d], its rows
  q (heads x head_dim), then k, then v (kv_heads x head_dim each), each head a contiguous slice;
  `out.weight` [d, d]; `qkv.bias`, `out.bias` with `bias=true`. With kv_heads = heads this is the
  original layout: `qkv` = [Wq; Wk; Wv].
- `qkv="separate"`: `q_proj.weight` [heads head_dim, d], `k_proj.weight` and `v_proj.weight`
  [kv_heads head_dim, d_ctx] (d_ctx = d without context), `o_proj.weight` [d, heads head_dim], in
  that state-dict order, and a bias on each of the four with `bias=true`: transformers' LLaMA,
  Mistral and Mixtral attention with `bias=false`.

`mask` (optional, [T, S] or [B, heads, T, S], any dim may be 1) is broadcast to the scores:
boolean (True = attend, as `scaled_dot_product_attention`'s bool mask) or float (added to the
scaled scores). Other ranks are refused: a rank-3 [B, T, S] mask would broadcast as [heads, T, S]
(write [B, 1, T, S]). `context` (optional, [B, S, d_ctx]) gives keys and values (cross-attention;
needs qkv="separate"). Both are keyword-only (`attention(x, 4, mask=m)`: the 4 is `heads`).

`causal`: query t attends to keys 0..t (top-left aligned when S != T, as SDPA's is_causal); with a
mask, both apply. `rotary`: rotary position embeddings on q and k at positions 0..T-1 (keys
0..S-1), frequencies `rope_theta ** (-2i / head_dim)`, computed in forward (no buffer, nothing in
the state dict): `"rotate_half"` pairs dim i with dim i + head_dim/2 (transformers' LLaMA, Mistral,
GPT-NeoX `rotate_half`), `"interleaved"` pairs dims 2i and 2i+1 (GPT-J `rotate_every_two`, Meta's
original LLaMA checkpoints). `scale` multiplies q k^T (default 1/sqrt(head_dim)); `dropout` drops
attention weights in training (identity in eval and in ONNX).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator
from pydantic_core import PydanticCustomError

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_add, dim_mul, dim_str
from . import InferContext, OpAttrs, OpDef, float_input, register

_ROTARY_ALIASES = {
    "llama": "transformers' LLaMA uses rotate_half; Meta's original checkpoints use interleaved",
    "neox": "GPT-NeoX rotates halves: rotary=\"rotate_half\"",
    "gptj": "GPT-J interleaves pairs: rotary=\"interleaved\"",
}


class AttentionAttrs(OpAttrs):
    heads: PositiveInt
    causal: bool = False  # position t attends to positions <= t only
    bias: bool = True
    kv_heads: PositiveInt | None = None  # grouped-query attention; None: as many as heads
    qkv: Literal["fused", "separate"] = "fused"
    rotary: Literal["rotate_half", "interleaved"] | None = None
    rope_theta: PositiveFloat = 10000.0
    scale: PositiveFloat | None = None  # None: 1 / sqrt(head_dim)
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    operands: tuple[str, ...] = ("x",)  # the operands given, set by the lowering (see OpDef.keyword_operands)

    @field_validator("rotary", mode="before")
    @classmethod
    def _named_layouts(cls, value: object) -> object:
        """Model-family names are ambiguous (LLaMA exists in both layouts): ask for the layout."""
        if isinstance(value, str) and value.lower() in _ROTARY_ALIASES:
            raise PydanticCustomError("rotary_layout", "rotary must be \"rotate_half\" or \"interleaved\" ({hint})",
                                      {"hint": _ROTARY_ALIASES[value.lower()]})
        return value

    def group_kv(self) -> int:
        return self.kv_heads or self.heads

    def plain(self) -> bool:
        """Only the original options (self-attention, fused, no mask): the original module, unchanged."""
        return self == AttentionAttrs(heads=self.heads, causal=self.causal, bias=self.bias)


def _operands(ctx: InferContext) -> tuple[int | None, int | None]:
    """(mask index, context index) among the operands, None for those not given."""
    given = ctx.attrs.operands
    return tuple(given.index(o) if o in given else None for o in ("mask", "context"))  # type: ignore[return-value]


def _dims(ctx: InferContext) -> tuple[int, int]:
    """(d, d_ctx), after checking every operand against x [B, T, d] and the attributes."""
    a = ctx.attrs
    x = float_input(ctx)
    if x.rank != 3:
        raise ctx.error(f"expects a [batch, sequence, features] tensor, got {ctx.describe(0)} of rank {x.rank}")
    d = ctx.static(0, -1, "the feature dim (last)")
    if d % a.heads:
        raise ctx.error(f"heads={a.heads} does not divide the feature dim {d} of {ctx.describe(0)}", "E0402")
    if a.heads % a.group_kv():
        raise ctx.error(f"kv_heads={a.group_kv()} must divide heads={a.heads} (each key/value head serves "
                        f"heads / kv_heads query heads)", "E0402")
    if a.rotary and (d // a.heads) % 2:
        raise ctx.error(f"rotary embeddings rotate pairs of dims, but head_dim = {d} / {a.heads} = "
                        f"{d // a.heads} is odd", "E0402")
    mask, context = _operands(ctx)
    d_ctx = d
    if context is not None:
        c = float_input(ctx, context)
        if c.rank != 3 or c.shape[0] != x.shape[0]:
            raise ctx.error(f"context must be [batch, keys, features] with the batch of {ctx.describe(0)}, "
                            f"got {ctx.describe(context)}", "E0402")
        if c.dtype != x.dtype:
            raise ctx.error(f"dtype mismatch: {ctx.describe(0)} vs context {ctx.describe(context)}", "E0403")
        if a.qkv == "fused":
            raise ctx.error(f"cross-attention (context {ctx.describe(context)}) needs qkv=\"separate\": "
                            "a fused qkv projection reads one sequence")
        d_ctx = ctx.static(context, -1, "the context's feature dim (last)")
    if mask is not None:
        _check_mask(ctx, mask, x.shape[0], x.shape[1], ctx.types[context or 0].shape[1])
    return d, d_ctx


def _check_mask(ctx: InferContext, i: int, b: Dim, t: Dim, s: Dim) -> None:
    m = ctx.types[i]
    if m.dtype != "bool" and m.dtype != ctx.types[0].dtype:
        raise ctx.error(f"mask {ctx.describe(i)} must be bool (True = attend) or {ctx.types[0].dtype} "
                        f"(added to the scores) like {ctx.describe(0)}", "E0403")
    if m.rank not in (2, 4):
        raise ctx.error(f"mask {ctx.describe(i)} must be [queries, keys] or [batch, heads, queries, keys] (each "
                        "dim may be 1): a rank-3 [B, T, S] mask would line up as [heads, T, S], write [B, 1, T, S]",
                        "E0402")
    target = (b, ctx.attrs.heads, t, s)[-m.rank:]
    for axis, (dm, dt) in enumerate(zip(m.shape, target)):
        if dm != 1 and dm != dt:
            raise ctx.error(f"mask {ctx.describe(i)} does not broadcast to [batch, heads, queries, keys] = "
                            f"[{', '.join(dim_str(v) for v in (b, ctx.attrs.heads, t, s))}]: "
                            f"dim {axis} is {dim_str(dm)}, expected 1 or {dim_str(dt)}", "E0402")


def _infer(ctx: InferContext) -> TensorType:
    _dims(ctx)
    return ctx.types[0]


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    """In the torch module's state-dict order (see the module docstring)."""
    d, d_ctx = _dims(ctx)
    a = ctx.attrs
    q_rows, kv_rows = d, d // a.heads * a.group_kv()
    layers = ((("qkv", q_rows + 2 * kv_rows, d), ("out", d, d)) if a.qkv == "fused" else
              (("q_proj", q_rows, d), ("k_proj", kv_rows, d_ctx), ("v_proj", kv_rows, d_ctx), ("o_proj", d, d)))
    params: dict[str, ParamSpec] = {}
    for layer, rows, cols in layers:
        params[f"{layer}.weight"] = ParamSpec((rows, cols))
        if a.bias:
            params[f"{layer}.bias"] = ParamSpec((rows,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """Projections (2 multiply-adds per weight per token of the sequence each one reads), then q k^T and
    the weighted sum of v (2*T*S*d each per batch row).

    Softmax, scaling, masking and rotary are not counted: they are O(T S) or O(T d) per head, not O(T S d).
    """
    d, d_ctx = _dims(ctx)
    mask, context = _operands(ctx)
    b, t, _ = ctx.types[0].shape
    s = ctx.types[context].shape[1] if context is not None else t
    kv_rows = d // ctx.attrs.heads * ctx.attrs.group_kv()
    queries, keys = dim_mul(b, t), dim_mul(b, s)
    projections = dim_add(dim_mul(queries, 2 * 2 * d * d), dim_mul(keys, 2 * 2 * kv_rows * d_ctx))
    return dim_add(projections, dim_mul(dim_mul(queries, s), 2 * 2 * d))


register(OpDef("attention", "multi-head attention over [B, T, d]: grouped-query heads, fused or separate q/k/v, "
                            "rotary positions, bool or additive mask, cross-attention (context)",
               ("x", "mask", "context"), AttentionAttrs, infer=_infer, params=_params, flops=_flops,
               optional=("mask", "context"), keyword_operands=True))
