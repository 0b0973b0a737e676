"""Elementwise arithmetic with numpy broadcasting; `x + 1` stores the 1 as `scalar`."""

from __future__ import annotations

from ..types import FLOAT_DTYPES, TensorType
from . import InferContext, OpAttrs, OpDef, broadcast, check_number, register, same_dtype


class BinaryAttrs(OpAttrs):
    scalar: float | None = None  # set when one side is a number instead of a tensor
    scalar_first: bool = False  # `2 - x`: the number is the left operand


def _infer(ctx: InferContext) -> TensorType:
    if len(ctx.types) == 1:
        if ctx.attrs.scalar is None:
            raise ctx.error("needs two operands, or one and a number")
        check_number(ctx, 0, ctx.attrs.scalar)
        out = ctx.types[0]
    elif ctx.attrs.scalar is not None:
        raise ctx.error("takes two tensors or one tensor and a number, not both")
    else:
        out = TensorType(same_dtype(ctx, 0, 1), broadcast(ctx, 0, 1))
    if ctx.node.op == "div" and out.dtype not in FLOAT_DTYPES:
        # torch's `/` makes floats of ints, ONNX's Div floors them: neither is the operands' type
        raise ctx.error(f"divides {out.dtype} tensors; division needs floating-point ones", "E0403")
    return out


for _name, _doc in {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b"}.items():
    register(OpDef(_name, f"{_doc}, elementwise with broadcasting", ("a", "b"), BinaryAttrs,
                   infer=_infer, elementwise=True, scalar_operand=True))
