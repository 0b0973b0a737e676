"""The ops the expression syntax lowers to: `-x` (neg), `a ** b` (pow), `a < b` and the other
comparisons (lt le gt ge eq ne), and `where(cond, a, b)`.

`pow` takes a number on either side, like the arithmetic ops (`scalar`). Comparisons and `where`
output or read bool tensors; their numbers are kept as written (`number`, an int stays an int) so
that `where(c, i, 0)` on an int tensor stays int in every target. They are not elementwise for the
fusion pass: Triton's interpreter has no `pow` (libdevice) and the fused kernels compute in the
output's float dtype, so the triton target runs them through the torch templates.
"""

from __future__ import annotations

from ..types import FLOAT_DTYPES, Dim, TensorType, dim_str
from . import InferContext, NoAttrs, check_number, OpAttrs, OpDef, broadcast, float_input, register, same_dtype
from .binary import _infer as binary_infer


def _signed_input(ctx: InferContext) -> TensorType:
    t = ctx.types[0]
    if t.dtype in ("bool", "u8"):
        raise ctx.error(f"cannot negate {ctx.describe(0)}", "E0403")
    return t


register(OpDef("neg", "-x, elementwise", ("x",), NoAttrs, infer=_signed_input, elementwise=True))


class PowAttrs(OpAttrs):
    scalar: float | None = None  # `x ** 2.0` or `2.0 ** x`: the number side
    scalar_first: bool = False  # the number is the base


def _infer_pow(ctx: InferContext) -> TensorType:
    """The arithmetic ops' rules (two tensors, or one and a number), on floating-point tensors."""
    for i in range(len(ctx.types)):
        float_input(ctx, i)
    return binary_infer(ctx)


register(OpDef("pow", "a ** b, elementwise with broadcasting (floating-point tensors; either side may be a number)",
               ("a", "b"), PowAttrs, infer=_infer_pow, scalar_operand=True))


class CompareAttrs(OpAttrs):
    number: int | float | None = None  # `x < 0.5`: the number side, as written
    number_first: bool = False  # `0.5 < x`: the number is the left operand


def _infer_compare(ctx: InferContext) -> TensorType:
    if len(ctx.types) == 1:
        if ctx.attrs.number is None:
            raise ctx.error("needs two operands, or one and a number")
        check_number(ctx, 0, ctx.attrs.number)
        return TensorType("bool", ctx.types[0].shape)
    if ctx.attrs.number is not None:
        raise ctx.error("takes two tensors or one tensor and a number, not both")
    same_dtype(ctx, 0, 1)
    return TensorType("bool", broadcast(ctx, 0, 1))


COMPARISONS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
for _symbol, _name in COMPARISONS.items():
    register(OpDef(_name, f"a {_symbol} b, elementwise with broadcasting: a bool tensor", ("a", "b"), CompareAttrs,
                   infer=_infer_compare, optional=("b",)))  # a number takes an operand's place


class WhereAttrs(OpAttrs):
    a_number: int | float | None = None  # `where(c, x, 0.0)`: a number in place of a tensor, as written
    b_number: int | float | None = None


def _broadcast_shapes(ctx: InferContext, indices: list[int]) -> tuple[Dim, ...]:
    """Numpy broadcasting of several operands, naming the two that disagree."""
    out: tuple[Dim, ...] = ()
    first = indices[0]
    for j in indices:
        shape = ctx.types[j].shape
        dims: list[Dim] = []
        for k in range(1, max(len(out), len(shape)) + 1):
            da = out[-k] if k <= len(out) else 1
            db = shape[-k] if k <= len(shape) else 1
            if da != db and da != 1 and db != 1:
                raise ctx.error(f"cannot broadcast {ctx.describe(first)} with {ctx.describe(j)}: "
                                f"dim {-k} is {dim_str(da)} vs {dim_str(db)}", "E0402")
            dims.append(db if da == 1 else da)
        out = tuple(reversed(dims))
        first = j if len(shape) >= len(ctx.types[first].shape) else first
    return out


def _infer_where(ctx: InferContext) -> TensorType:
    a = ctx.attrs
    if ctx.types[0].dtype != "bool":
        raise ctx.error(f"the condition must be a bool tensor (a comparison), got {ctx.describe(0)}", "E0403")
    values = list(range(1, len(ctx.types)))  # the tensors among a and b
    if len(values) + (a.a_number is not None) + (a.b_number is not None) != 2 or not values:
        raise ctx.error("needs a condition and two values, at least one of them a tensor")
    if len(values) == 2:
        same_dtype(ctx, 1, 2)
    for number in (a.a_number, a.b_number):
        check_number(ctx, 1, number)
    return TensorType(ctx.types[1].dtype, _broadcast_shapes(ctx, [0] + values))


register(OpDef("where", "where(cond, a, b): a where cond is true, else b, with broadcasting; a or b may be a number",
               ("cond", "a", "b"), WhereAttrs, infer=_infer_where, optional=("a", "b")))
