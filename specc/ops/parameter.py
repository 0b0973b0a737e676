"""parameter: a learned tensor as a value (ViT's class token, a tied embedding table, a buffer).

`cls = parameter([1, 1, d], init="zeros")` is an f32 tensor of that compile-time shape, owned by the
module: in torch an `nn.Parameter` named after the value, so its state-dict key is the value's name
itself (`cls`), not `cls.weight`. Any op can read it, any number of times, which is how weights are
tied (`embedding(ids, weight=wte)` and `matmul(h, transpose(wte, 0, 1))` share one tensor).
`trainable=false` makes it a persistent buffer: in the state dict, not in `parameters()` nor in
parameter counts. The ONNX target stores it as one initializer, read through an Identity.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, FiniteFloat, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..ir import ParamSpec
from ..types import Sym, TensorType
from . import InferContext, OpAttrs, OpDef, no_flops, register

# the settings each init reads; giving another init's setting is an error, not silently ignored
_SETTINGS = {"zeros": (), "ones": (), "normal": ("mean", "std"), "uniform": ("low", "high")}


class ParameterAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    shape: tuple[Any, ...]  # compile-time ints; checked below so a symbolic dim gets a clear message
    init: Literal["zeros", "ones", "normal", "uniform"] = "normal"
    mean: FiniteFloat = 0.0
    std: FiniteFloat = 0.02
    low: FiniteFloat = 0.0  # uniform's bounds default to torch.nn.init.uniform_'s [0, 1)
    high: FiniteFloat = 1.0
    trainable: bool = True

    @field_validator("shape", mode="before")
    @classmethod
    def _static_shape(cls, shape: Any) -> Any:
        """Its size is fixed when the module is built: every dim a positive compile-time int."""
        if not isinstance(shape, (tuple, list)):
            raise ValueError(f"shape must be a list of dims, e.g. [1, 1, d], got {shape!r}")
        for d in shape:
            if isinstance(d, Sym):
                raise ValueError(f"dim `{d}` is symbolic, but a parameter's size must be known at compile "
                                 f"time (write a number or a model parameter)")
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ValueError(f"dims must be positive ints, got {d!r}")
        return shape

    @model_validator(mode="after")
    def _settings_fit_init(self) -> ParameterAttrs:
        for name in ("mean", "std", "low", "high"):
            if name in self.model_fields_set and name not in _SETTINGS[self.init]:
                users = [i for i, s in _SETTINGS.items() if name in s]
                raise PydanticCustomError("value_error",
                                          "`{name}` applies to init=\"{user}\" only, not init=\"{init}\"",
                                          {"name": name, "user": users[0], "init": self.init, "at": name})
        if self.init == "normal" and self.std <= 0:
            raise PydanticCustomError("value_error", "std must be positive, got {std}", {"std": self.std, "at": "std"})
        if self.init == "uniform" and not self.low < self.high:
            raise PydanticCustomError("value_error", "uniform needs low < high, got low={low}, high={high}",
                                      {"low": self.low, "high": self.high, "at": "high"})
        return self


def _infer(ctx: InferContext) -> TensorType:
    return TensorType("f32", ctx.attrs.shape)


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    # the empty name: the node's value itself, keyed `<node>` in the state dict (not `<node>.<name>`)
    return {"": ParamSpec(ctx.attrs.shape, trainable=ctx.attrs.trainable, dtype="f32")}


register(OpDef("parameter", "a learned f32 tensor of a compile-time shape (init zeros, ones, normal or uniform), "
                            "keyed by its own name; trainable=false: a buffer",
               (), ParameterAttrs, infer=_infer, params=_params, flops=no_flops))
