"""Recurrent layers: `lstm` and `gru`, as torch's nn.LSTM / nn.GRU (stacked, optionally bidirectional).

    y = lstm(x, 64, num_layers=2, bidirectional=true)     // x: f32[B, T, d] -> y: f32[B, T, 128]
    y = gru(x, 64, h0=h0)                                 // initial state h0: f32[layers * dirs, B, 64]

Each layer owns an `nn.LSTM`/`nn.GRU`, so its state-dict keys are torch's own (`weight_ih_l0`,
`weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `..._reverse` for the backward direction) and a checkpoint
of an `nn.LSTM` loads key for key. The results are the output sequence (torch's `output`), of width
`hidden_size * (2 if bidirectional else 1)`, which a call stands for as a tensor, and the final states
(`r = lstm(x, 64)` then `r.h`, `r.c`; `y, h = gru(x, 64)`), shaped as the initial ones. The initial states `h0` (and `c0` for an LSTM) are optional
tensor operands shaped as torch's, `[num_layers * directions, batch, hidden_size]`; without them the
state starts at zero. Dropout between layers (`dropout=`) is identity at eval and in ONNX.

ONNX runs its `LSTM`/`GRU` ops, one per layer, chained; their gate order (LSTM i,o,f,c; GRU z,r,h)
and stacked W/R/B layout differ from torch's (i,f,g,o; r,z,n), so the torch layer exports the
reordered tensors (`export_weights`) and the parameters stay in one layout. GRU uses
`linear_before_reset=1`, which is torch's formula.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from .. import limits
from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_mul, dim_str
from . import InferContext, OpAttrs, OpDef, float_input, register

GATES = {"lstm": 4, "gru": 3}
RESULTS = {"lstm": ("output", "h", "c"), "gru": ("output", "h")}


class RecurrentAttrs(OpAttrs):
    hidden_size: PositiveInt
    num_layers: PositiveInt = 1
    bidirectional: bool = False
    batch_first: bool = True
    bias: bool = True
    # between layers, while training; none with one layer (torch ignores it there, with a warning)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    operands: tuple[str, ...] = ("x",)  # the operands given, set by the lowering (see OpDef.keyword_operands)
    all_results: bool = False  # set by the lowering: the node computes the final states too (see OpDef.results)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


def _input_size(ctx: InferContext) -> int:
    """The feature dim of x, after checking x is a float [B, T, d] (or [T, B, d]) sequence."""
    x = float_input(ctx)
    layout = "[batch, sequence, features]" if ctx.attrs.batch_first else "[sequence, batch, features]"
    if x.rank != 3:
        raise ctx.error(f"expects a {layout} tensor, got {ctx.describe(0)} of rank {x.rank}")
    return ctx.static(0, -1, "the input feature dim (last)")


def _infer(ctx: InferContext) -> TensorType:
    _input_size(ctx)
    attrs: RecurrentAttrs = ctx.attrs  # type: ignore[assignment]
    # each layer is a layer of the model (its parameters, an ONNX node): bounded as IR nodes are
    limits.check("nodes", attrs.num_layers, ctx.node.span, f"{ctx.node.op}(num_layers={attrs.num_layers})")
    x = ctx.types[0]
    states = len(ctx.types) - 1
    if ctx.node.op == "lstm" and states == 1:
        raise ctx.error(f"an LSTM's initial state is h0 and c0 together; got only {ctx.describe(1)}", "E0303")
    batch = x.shape[0] if attrs.batch_first else x.shape[1]
    want = (attrs.num_layers * attrs.directions, batch, attrs.hidden_size)
    for i in range(1, len(ctx.types)):
        state = ctx.types[i]
        if state.dtype != x.dtype:
            raise ctx.error(f"dtype mismatch: {ctx.describe(i)} vs {ctx.describe(0)}", "E0403")
        if state.shape != want:
            raise ctx.error(f"initial state {ctx.describe(i)} must be [num_layers * directions, batch, "
                            f"hidden_size] = [{', '.join(dim_str(d) for d in want)}] for {ctx.describe(0)}",
                            "E0402")
    return x.with_shape(x.shape[:-1] + (attrs.hidden_size * attrs.directions,))


def _results(ctx: InferContext) -> tuple[TensorType, ...]:
    """The output sequence, then each final state shaped as the initial ones, [layers * directions, B, H]."""
    y = _infer(ctx)
    attrs: RecurrentAttrs = ctx.attrs  # type: ignore[assignment]
    x = ctx.types[0]
    state = x.with_shape((attrs.num_layers * attrs.directions, x.shape[0] if attrs.batch_first else x.shape[1],
                          attrs.hidden_size))
    return (y,) + (state,) * (len(RESULTS[ctx.node.op]) - 1)


def _layer_inputs(ctx: InferContext) -> list[int]:
    """The input width of each layer: the features of x, then the previous layer's output."""
    attrs: RecurrentAttrs = ctx.attrs  # type: ignore[assignment]
    return [_input_size(ctx)] + [attrs.hidden_size * attrs.directions] * (attrs.num_layers - 1)


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    """torch's names and order: per layer, per direction, weight_ih, weight_hh, bias_ih, bias_hh."""
    attrs: RecurrentAttrs = ctx.attrs  # type: ignore[assignment]
    rows = GATES[ctx.node.op] * attrs.hidden_size
    params: dict[str, ParamSpec] = {}
    for layer, width in enumerate(_layer_inputs(ctx)):
        for suffix in ("", "_reverse")[:attrs.directions]:
            params[f"weight_ih_l{layer}{suffix}"] = ParamSpec((rows, width))
            params[f"weight_hh_l{layer}{suffix}"] = ParamSpec((rows, attrs.hidden_size))
            if attrs.bias:
                params[f"bias_ih_l{layer}{suffix}"] = ParamSpec((rows,))
                params[f"bias_hh_l{layer}{suffix}"] = ParamSpec((rows,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """Per token, layer and direction: the gate projections of the input and of the state (2 per
    multiply-add). The gate nonlinearities and products are O(hidden) and not counted."""
    attrs: RecurrentAttrs = ctx.attrs  # type: ignore[assignment]
    rows = GATES[ctx.node.op] * attrs.hidden_size
    per_token = sum(attrs.directions * 2 * rows * (width + attrs.hidden_size) for width in _layer_inputs(ctx))
    x = ctx.types[0]
    return dim_mul(dim_mul(x.shape[0], x.shape[1]), per_token)


register(OpDef("lstm", "LSTM over a sequence, as torch.nn.LSTM (layers, bidirectional, batch_first); results "
                       "`output` (the sequence; the value as a tensor) and final states `h`, `c`; optional "
                       "initial states h0, c0",
               ("x", "h0", "c0"), RecurrentAttrs, infer=_infer, params=_params, flops=_flops,
               optional=("h0", "c0"), keyword_operands=True, export_weights=True, results=RESULTS["lstm"],
               result_types=_results))
register(OpDef("gru", "GRU over a sequence, as torch.nn.GRU (layers, bidirectional, batch_first); results "
                      "`output` (the sequence; the value as a tensor) and final state `h`; optional initial state h0",
               ("x", "h0"), RecurrentAttrs, infer=_infer, params=_params, flops=_flops,
               optional=("h0",), keyword_operands=True, export_weights=True, results=RESULTS["gru"],
               result_types=_results))
