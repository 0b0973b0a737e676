"""A model input: a placeholder with a declared dtype and (possibly symbolic) shape."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, register


class InputAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    dtype: str
    shape: tuple[Any, ...]  # ints and `Sym`s


def _infer(ctx: InferContext) -> TensorType:
    return TensorType(ctx.attrs.dtype, tuple(ctx.attrs.shape))


register(OpDef("input", "a model input (declared with `input name: dtype[dims]`)", (), InputAttrs, infer=_infer))
