"""Elementwise arithmetic with numpy broadcasting; `x + 1` stores the 1 as `scalar`."""

from __future__ import annotations

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, broadcast, register, same_dtype


class BinaryAttrs(OpAttrs):
    scalar: float | None = None  # set when one side is a number instead of a tensor
    scalar_first: bool = False  # `2 - x`: the number is the left operand


def _infer(ctx: InferContext) -> TensorType:
    if len(ctx.types) == 1:
        if ctx.attrs.scalar is None:
            raise ctx.error("needs two operands, or one and a number")
        return ctx.types[0]
    if ctx.attrs.scalar is not None:
        raise ctx.error("takes two tensors or one tensor and a number, not both")
    return TensorType(same_dtype(ctx, 0, 1), broadcast(ctx, 0, 1))


for _name, _doc in {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b"}.items():
    register(OpDef(_name, f"{_doc}, elementwise with broadcasting", ("a", "b"), BinaryAttrs,
                   infer=_infer, elementwise=True, scalar_operand=True))
