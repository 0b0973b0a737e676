"""Dropout: zeroes elements with probability p while training; identity at eval."""

from __future__ import annotations

from pydantic import Field

from . import OpAttrs, OpDef, float_input, register


class DropoutAttrs(OpAttrs):
    p: float = Field(0.5, ge=0.0, lt=1.0)


register(OpDef("dropout", "randomly zero elements with probability p while training (identity at eval)",
               ("x",), DropoutAttrs, infer=float_input))
