"""Helpers shared by the transforms that rewrite linear layers (not a transform itself)."""

from __future__ import annotations

from typing import Any

from ..diagnostics import SpeccError
from ..ir import Node

# a transform cannot apply to a layer it selected (e.g. N:M groups that do not divide the input width)
CANNOT_APPLY = "E0808"


def linear_shape(node: Node) -> tuple[int, int]:
    """(out_features, in_features) of a linear layer about to be rewritten."""
    out_features, in_features = node.params["weight"].shape
    return out_features, in_features


def cannot_apply(node: Node, message: str, help: str | None = None) -> SpeccError:
    return SpeccError(CANNOT_APPLY, f"layer `{node.name}`: {message}", node.span, help=help)


def with_bias(converted: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    """The converted layer state plus the dense layer's bias, if it had one (biases stay dense)."""
    if "bias" in dense:
        converted["bias"] = dense["bias"]
    return converted


def sqnr_db(weight: Any, approx: Any) -> float:
    """Signal-to-quantization-noise ratio, 10 log10(|W|^2 / |W - Q(W)|^2), in dB (inf when exact)."""
    import math

    noise = float((weight.double() - approx.double()).pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float(weight.double().pow(2).sum()) / noise)
