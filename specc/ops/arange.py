"""arange: the 1-D tensor start, start + step, ... below end, from compile-time ints, as torch.arange.

`arange(n)` counts from 0 to n - 1, like Python's range(n); `arange(start, end, step=1)` otherwise.
It reads no tensor, so the torch module keeps it as a (non-persistent) buffer, which follows the
module's device.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, no_flops, register


class ArangeAttrs(OpAttrs):
    start: int = 0
    end: int | None = None  # None only before validation: `arange(n)` binds n to `start`
    step: int = 1
    dtype: Literal["i64", "f32"] = "i64"

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
    if step == 0:
        raise ctx.error("step=0 never reaches the end")
    length = max(0, -((start - end) // step))  # ceil((end - start) / step)
    if length == 0:
        raise ctx.error(f"arange({start}, {end}, {step}) is empty")
    return TensorType(ctx.attrs.dtype, (length,))


register(OpDef("arange", "start, start + step, ... below end, from ints (arange(n) counts from 0), as torch.arange",
               (), ArangeAttrs, infer=_infer, flops=no_flops))
