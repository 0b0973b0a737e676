"""Mixture-of-experts feed-forward layer over the last dim of x: [..., d].

    y = moe(x, experts, top_k, hidden, expert="gelu", logits=None)
    r = moe(x, 8, 2, 14336, expert="swiglu")       // r (or r.output): [..., d]; r.router_logits: [..., experts]

A router (linear d -> experts, no bias) scores the experts per token; the top_k softmax
probabilities, renormalized to sum to 1, weight the outputs of their experts. The router logits
are the op's second result, `router_logits` (for an auxiliary load-balancing loss, as transformers'
`load_balancing_loss_func`). Given `logits=` ([..., experts], keyword-only), the layer routes by
them and owns no router: the spec computes them itself (Mixtral's `gate` as a bias-free `linear`).

Experts and weight layouts (state-dict keys under the layer's name):
- `expert="gelu"` (the default): each expert an MLP d -> hidden (gelu) -> d with biases; `router`
  [experts, d], `w1` [experts, hidden, d], `b1` [experts, hidden], `w2` [experts, d, hidden],
  `b2` [experts, d]. Every expert runs on every token, combined by a gate matrix that is zero
  outside the top_k (exact, no data-dependent shapes; `merge_experts` rewrites this form).
- `expert="swiglu"`: transformers' MixtralSparseMoeBlock, no biases: `gate.weight` [experts, d]
  (the router), `experts.gate_up_proj` [experts, 2 hidden, d] (rows: the gate projection, then
  the up projection), `experts.down_proj` [experts, d, hidden]; an expert is
  down_proj(silu(gate) * up). Without the router (`logits=` given) the keys are `gate_up_proj`,
  `down_proj`: MixtralExperts. Each expert runs only on the tokens routed to it (gathered, then
  added back with index_add, as Mixtral does); under torch.compile the torch module runs the
  exact dense form instead, which has no data-dependent shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register

RESULTS = ("output", "router_logits")


class MoEAttrs(OpAttrs):
    experts: PositiveInt
    top_k: PositiveInt
    hidden: PositiveInt
    expert: Literal["gelu", "swiglu"] = "gelu"
    operands: tuple[str, ...] = ("x",)  # the operands given, set by the lowering (see OpDef.keyword_operands)
    all_results: bool = False  # set by the lowering: the node computes the router logits too (see OpDef.results)

    @property
    def routed(self) -> bool:
        """Whether the router logits come in as the `logits` operand (the layer owns no router)."""
        return "logits" in self.operands


def _model_dim(ctx: InferContext) -> int:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    if ctx.attrs.top_k > ctx.attrs.experts:
        raise ctx.error(f"top_k={ctx.attrs.top_k} is more than experts={ctx.attrs.experts}")
    d = ctx.static(0, -1, "the feature dim (last)")
    if len(ctx.types) > 1:
        logits = ctx.types[1]
        if logits.dtype != x.dtype:
            raise ctx.error(f"dtype mismatch: {ctx.describe(1)} vs {ctx.describe(0)}", "E0403")
        want = x.shape[:-1] + (ctx.attrs.experts,)
        if logits.shape != want:
            raise ctx.error(f"router logits {ctx.describe(1)} must be shaped as {ctx.describe(0)} with its last "
                            f"dim the experts ({ctx.attrs.experts})", "E0402")
    return d


def _infer(ctx: InferContext) -> TensorType:
    _model_dim(ctx)
    return ctx.types[0]


def _results(ctx: InferContext) -> tuple[TensorType, ...]:
    """The output, shaped as x, then the router logits, [..., experts]."""
    _model_dim(ctx)
    x = ctx.types[0]
    return x, x.with_shape(x.shape[:-1] + (ctx.attrs.experts,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    """In the torch module's state-dict order (see the module docstring)."""
    d, a = _model_dim(ctx), ctx.attrs
    e, h = a.experts, a.hidden
    if a.expert == "swiglu":
        router = {} if a.routed else {"gate.weight": ParamSpec((e, d))}
        prefix = "" if a.routed else "experts."
        return {**router, f"{prefix}gate_up_proj": ParamSpec((e, 2 * h, d)), f"{prefix}down_proj": ParamSpec((e, d, h))}
    router = {} if a.routed else {"router": ParamSpec((e, d))}
    return {**router, "w1": ParamSpec((e, h, d)), "b1": ParamSpec((e, h)), "w2": ParamSpec((e, d, h)),
            "b2": ParamSpec((e, d))}


def _flops(ctx: InferContext) -> Dim:
    """Per token: the router (unless given), and top_k experts (two matmuls each, three for swiglu). The
    model's cost, not the dense implementation's (which runs every expert and masks the unselected ones)."""
    d, a = _model_dim(ctx), ctx.attrs
    tokens = dim_div(ctx.node.type.numel(), d)
    matmuls = 3 if a.expert == "swiglu" else 2
    return dim_mul(tokens, (0 if a.routed else 2 * d * a.experts) + a.top_k * matmuls * 2 * d * a.hidden)


register(OpDef("moe", "mixture-of-experts MLP over the last dim: top_k of `experts` MLPs (gelu with biases, or "
                      "Mixtral's bias-free swiglu) weighted by a router; results `output` and `router_logits`; "
                      "optional router logits `logits` in place of the router",
               ("x", "logits"), MoEAttrs, infer=_infer, params=_params, flops=_flops, optional=("logits",),
               keyword_operands=True, results=RESULTS, result_types=_results))
