"""arange: the 1-D tensor start, start + step, ... below end, as torch.arange.

`arange(n)` counts from 0 to n - 1, like Python's range(n); `arange(start, end, step=1)` otherwise.
With ints it reads no tensor, so the torch module keeps it as a (non-persistent) buffer, which follows
the module's device. `arange(T)` of a symbolic dim (a model input's, or one a typed block parameter
bound) counts the positions along that dim: the generated code reads its size from the tensor that
has it (`OpDef.reads`), like expand does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, PrivateAttr, model_validator

from ..types import Sym, TensorType, dim_str
from . import InferContext, OpAttrs, OpDef, no_flops, register
from .expand import Source, input_dim_source


class ArangeAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    start: int | Sym = 0
    end: int | Sym | None = None  # None only before validation: `arange(n)` binds n to `start`
    step: int = 1
    dtype: Literal["i64", "f32"] = "i64"
    _source: Source | None = PrivateAttr(default=None)  # where a symbolic end is read (see expand.Source)

    @property
    def source(self) -> Source | None:
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _one_bound(cls, data: Any) -> Any:
        """`arange(n)` means arange(0, n), as range(n) does."""
        if isinstance(data, dict) and data.get("end") is None and "start" in data:
            return {**data, "start": 0, "end": data["start"]}
        return data


def _infer(ctx: InferContext) -> TensorType:
    start, end, step = ctx.attrs.start, ctx.attrs.end, ctx.attrs.step
    if end is None:
        raise ctx.error("needs an end: arange(n) or arange(start, end, step)")
    if isinstance(start, Sym) or isinstance(end, Sym):
        if start != 0 or step != 1 or not isinstance(end, Sym):
            raise ctx.error(f"a symbolic arange counts positions: arange({dim_str(end)}) from 0 by 1, got "
                            f"arange({dim_str(start)}, {dim_str(end)}, {step})")
        ctx.attrs._source = input_dim_source(ctx, end, f"count to {dim_str(end)}")
        return TensorType(ctx.attrs.dtype, (end,))
    if step == 0:
        raise ctx.error("step=0 never reaches the end")
    length = max(0, -((start - end) // step))  # ceil((end - start) / step)
    if length == 0:
        raise ctx.error(f"arange({start}, {end}, {step}) is empty")
    return TensorType(ctx.attrs.dtype, (length,))


register(OpDef("arange", "start, start + step, ... below end, from ints (arange(n) counts from 0), as torch.arange",
               (), ArangeAttrs, infer=_infer, flops=no_flops,
               reads=lambda attrs: (attrs.source[0],) if attrs.source else ()))
