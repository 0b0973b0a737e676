"""A linear layer whose weight is a tensor train (MPO), as produced by the tensor_train transform.

With in = i_1 * ... * i_d and out = o_1 * ... * o_d, the weight entry
W[(o_1..o_d), (i_1..i_d)] (row-major multi-indices) is the matrix product
G_1[:, o_1, i_1, :] G_2[:, o_2, i_2, :] ... G_d[:, o_d, i_d, :] of cores
G_k [r_{k-1}, o_k, i_k, r_k] with r_0 = r_d = 1 and bond dims `ranks` = (r_1..r_{d-1}).
Forward contracts the input with the cores one at a time (never forming W), so
parameters and FLOPs scale with the bond dims instead of in * out.
"""

from __future__ import annotations

from math import prod

from pydantic import PositiveInt, model_validator

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register


def core_shapes(out_modes: tuple[int, ...], in_modes: tuple[int, ...], ranks: tuple[int, ...]
                ) -> list[tuple[int, int, int, int]]:
    """The cores [r_{k-1}, o_k, i_k, r_k] of a train over a [prod(out_modes), prod(in_modes)] matrix."""
    bonds = (1, *ranks, 1)
    return [(bonds[k], o, i, bonds[k + 1]) for k, (o, i) in enumerate(zip(out_modes, in_modes))]


def wrong_lengths(first: tuple[str, tuple[int, ...]], second: tuple[str, tuple[int, ...]],
                  ranks: tuple[int, ...]) -> str | None:
    """Why a train's modes and ranks do not fit together (d >= 2 cores: d modes each, d-1 ranks), or None."""
    (a, modes_a), (b, modes_b) = first, second
    d = len(modes_a)
    if d < 2 or len(modes_b) != d or len(ranks) != d - 1:
        return (f"a train of d >= 2 cores needs d {a}, d {b} and d-1 ranks, got "
                f"{len(modes_a)}, {len(modes_b)} and {len(ranks)}")
    return None


class TTLinearAttrs(OpAttrs):
    out_features: PositiveInt
    in_modes: tuple[PositiveInt, ...]
    out_modes: tuple[PositiveInt, ...]
    ranks: tuple[PositiveInt, ...]
    bias: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "TTLinearAttrs":
        wrong = wrong_lengths(("in_modes", self.in_modes), ("out_modes", self.out_modes), self.ranks)
        if wrong:
            raise ValueError(wrong)
        if prod(self.out_modes) != self.out_features:
            raise ValueError(f"out_modes {list(self.out_modes)} multiply to {prod(self.out_modes)}, "
                             f"not out_features={self.out_features}")
        return self

    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        return core_shapes(self.out_modes, self.in_modes, self.ranks)

    def steps(self) -> list[tuple[int, int, int, int, int, int]]:
        """Per core: (i_k, rest of the input modes, output modes done, r_{k-1}, o_k, r_k), the contraction's shapes."""
        out, done, rest = [], 1, prod(self.in_modes)
        for r, o, i, s in self.core_shapes():
            rest //= i
            out.append((i, rest, done, r, o, s))
            done *= o
        return out


def _in_features(ctx: InferContext) -> int:
    width = ctx.static(0, -1, "the input feature dim (last)")
    if prod(ctx.attrs.in_modes) != width:
        raise ctx.error(f"in_modes {list(ctx.attrs.in_modes)} multiply to {prod(ctx.attrs.in_modes)}, but "
                        f"{ctx.describe(0)} has {width} input features", "E0402")
    return width


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    _in_features(ctx)
    return x.with_shape(x.shape[:-1] + (ctx.attrs.out_features,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    _in_features(ctx)
    params = {f"cores.{k}": ParamSpec(shape) for k, shape in enumerate(ctx.attrs.core_shapes())}
    if ctx.attrs.bias:
        params["bias"] = ParamSpec((ctx.attrs.out_features,))
    return params


def _flops(ctx: InferContext) -> Dim:
    rows = dim_div(ctx.node.type.numel(), ctx.attrs.out_features)
    _in_features(ctx)
    return dim_mul(rows, sum(2 * i * rest * done * r * o * s for i, rest, done, r, o, s in ctx.attrs.steps()))


register(OpDef("tt_linear", "linear layer whose weight is a tensor train (MPO) of cores, contracted with the input "
                            "core by core", ("x",), TTLinearAttrs, infer=_infer, params=_params, flops=_flops))
