"""A state dict's tensors checked against the parameters of a model: shape and dtype, located at the layer.

`specc compress --weights` (the dense base model's checkpoint) and the onnx target's `--weights` read
checkpoints made elsewhere, often in another float dtype (bf16/f16 releases, f64 from numpy). torch's
`load_state_dict` casts floats silently, so both do the same: a float tensor is cast to the dtype the
model stores it in (else a compressed state would keep f64 factors and scales, twice the bytes the plan
promised, and an f16 tensor would make an ONNX graph onnxruntime refuses). A wrong shape, or a tensor
that is not a float where the model stores one (or the reverse: integer codes), is an error at the layer
that declares the parameter.
"""

from __future__ import annotations

from typing import Any

from .diagnostics import Note, SpeccError
from .ir import Graph, Node, ParamSpec
from .types import DTYPES, FLOAT_DTYPES

WEIGHTS_MISMATCH = "E0602"  # weights that load but do not fit the model: keys, shapes, dtypes (exit 1; E0601,
#                             a file that will not load, is 2)


def param_dtype(graph: Graph, node: Node, spec: ParamSpec) -> str:
    """The dtype a parameter is stored in: its own, else its op's first operand's (the dtype the generated
    modules give it), else the node's own type's (a `parameter` op has no operands). Needs typed nodes."""
    if spec.dtype is not None:
        return spec.dtype
    operands = graph.operands(node.name)
    return graph.node(operands[0]).type.dtype if operands else node.type.dtype


def _spec_dtype(tensor: Any) -> str | None:
    return next((name for name, (torch_name, _, _) in DTYPES.items() if str(tensor.dtype) == f"torch.{torch_name}"),
                None)


def stored_as(graph: Graph, node: Node, spec: ParamSpec, key: str, tensor: Any, origin: str) -> Any:
    """`tensor` (the state dict's `key`) as the model stores parameter `spec` of `node`: the same shape, a
    float cast to the parameter's float dtype; else a located SpeccError naming the key."""
    want = param_dtype(graph, node, spec)
    got = _spec_dtype(tensor)
    if tuple(tensor.shape) != tuple(spec.shape):
        problem = f"has shape {list(tensor.shape)}, but layer `{node.key}` of model `{graph.name}` needs " \
                  f"{list(spec.shape)}"
        help = ("a checkpoint of another configuration of this model needs its parameters (-p NAME=VALUE); "
                "one whose keys name other layers, a key mapping (--rename OLD=NEW)")
    elif got == want:
        return tensor
    elif got in FLOAT_DTYPES and want in FLOAT_DTYPES:
        return tensor.to(getattr(__import__("torch"), DTYPES[want][0]))
    else:
        problem = f"is {got or str(tensor.dtype).removeprefix('torch.')}, but layer `{node.key}` of model " \
                  f"`{graph.name}` stores it as {want}"
        help = "save the tensors the model stores (`model.state_dict()` of the same model)"
    notes = [Note(f"in block `{block}`, called here", span) for block, span in reversed(node.call_sites)]
    raise SpeccError(WEIGHTS_MISMATCH, f"weight `{key}` in {origin} {problem}", node.span, notes, help=help)
