"""An embedding table stored as a tensor train (TT-Embedding, Hrinchuk et al. 2020), as
`tensor_train on embedding` makes it.

The [vocab, dim] table, its rows padded with zeros to v_1 * ... * v_d (a prime vocabulary has no
balanced factors; the padding rows are never looked up), is a train of cores
G_k [r_{k-1}, v_k, e_k, r_k] with dim = e_1 * ... * e_d, exactly as tt_linear stores a weight
(rows = vocabulary modes, columns = feature modes). Row t is the product over the bonds of
G_1[:, t_1] ... G_d[:, t_d], (t_1..t_d) being t's digits in the mixed radix (v_1..v_d), read as a
row-major [e_1, ..., e_d] block. A lookup gathers each id's slice of every core and contracts
those only: the table is never formed, on any target.
"""

from __future__ import annotations

from math import prod

from pydantic import PositiveInt, model_validator

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, register
from .embedding import INDEX_DTYPES
from .tt_linear import core_shapes, wrong_lengths


class TTEmbeddingAttrs(OpAttrs):
    vocab: PositiveInt
    dim: PositiveInt
    vocab_modes: tuple[PositiveInt, ...]
    dim_modes: tuple[PositiveInt, ...]
    ranks: tuple[PositiveInt, ...]

    @model_validator(mode="after")
    def _consistent(self) -> "TTEmbeddingAttrs":
        wrong = wrong_lengths(("vocab_modes", self.vocab_modes), ("dim_modes", self.dim_modes), self.ranks)
        if wrong:
            raise ValueError(wrong)
        if prod(self.vocab_modes) < self.vocab:
            raise ValueError(f"vocab_modes {list(self.vocab_modes)} multiply to {prod(self.vocab_modes)}, "
                             f"fewer than vocab={self.vocab}")
        if prod(self.dim_modes) != self.dim:
            raise ValueError(f"dim_modes {list(self.dim_modes)} multiply to {prod(self.dim_modes)}, not dim={self.dim}")
        return self

    @property
    def out_modes(self) -> tuple[int, ...]:
        """The train's row modes (the table's rows are its vocabulary), as tt_linear names them."""
        return self.vocab_modes

    @property
    def in_modes(self) -> tuple[int, ...]:
        return self.dim_modes

    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        return core_shapes(self.vocab_modes, self.dim_modes, self.ranks)

    def places(self) -> list[int]:
        """The place value of each vocabulary digit: t_k = t // places[k] % v_k."""
        return [prod(self.vocab_modes[k + 1:]) for k in range(len(self.vocab_modes))]


def _infer(ctx: InferContext) -> TensorType:
    ids = ctx.types[0]
    if ids.dtype not in INDEX_DTYPES:
        raise ctx.error(f"expects integer ids (i64 or i32), got {ctx.describe(0)}", "E0403")
    return TensorType("f32", ids.shape + (ctx.attrs.dim,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    return {f"cores.{k}": ParamSpec(shape, dtype="f32") for k, shape in enumerate(ctx.attrs.core_shapes())}


def _flops(ctx: InferContext) -> Dim:
    """Per id, core k contracts the [e_1..e_{k-1}, r_{k-1}] row so far with its [r_{k-1}, e_k, r_k] slice."""
    done, per_id = 1, 0
    for r, _, e, s in ctx.attrs.core_shapes():
        per_id += 2 * done * r * e * s
        done *= e
    return dim_mul(ctx.types[0].numel(), per_id)


register(OpDef("tt_embedding", "look up integer ids in a [vocab, dim] table stored as a tensor train (MPO): each "
                               "id's slice of every core, contracted (the table is never formed)",
               ("ids",), TTEmbeddingAttrs, infer=_infer, params=_params, flops=_flops))
