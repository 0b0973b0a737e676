"""The onnx target: a `.onnx` model that onnxruntime loads.

The templates write the graph in ONNX's textual syntax (`onnx.parser`), one op
template per IR op; this driver parses it, attaches the weights as initializers
and runs the full checker. Weights come from a torch state dict: one saved from
the torch target's module, or that module initialized from a seed, so every
target starts from the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..diagnostics import SpeccError
from ..ir import Graph
from ..types import DTYPES, TensorType
from . import Artifact, Backend, environment, node_view, register_backend, render

TARGET = "onnx"
# Pinned to what the installed onnxruntime loads (see ../shared/README.md).
IR_VERSION = 10
OPSET = 21


def _onnx_type(t: TensorType) -> str:
    dims = [str(d) if isinstance(d, int) else (str(d) if str(d).isidentifier() else "?") for d in t.shape]
    # a 0-d tensor is spelled `float`; `float[]` would mean "shape unknown"
    return f"{DTYPES[t.dtype][1]}[{', '.join(dims)}]" if t.shape else DTYPES[t.dtype][1]


def initializer_name(node: str, param: str) -> str:
    """ONNX's text syntax has no dots in names: `fc.weight` is `fc__weight`, `attn.qkv.bias` is `attn__qkv__bias`."""
    return f"{node}__{param.replace('.', '__')}"


def value_names(graph: Graph):
    """The ONNX name of each IR value: an internal value that shares its name with a (different) output is
    renamed `NAME__value` (and so are its initializers, `NAME__value__weight`)."""
    outputs = dict(graph.outputs)
    clash = {v for v in graph.nx.nodes if v in outputs and outputs[v] != v}

    def value(name: str) -> str:
        return f"{name}__value" if name in clash else name

    return value


def onnx_text(graph: Graph) -> str:
    """The model in ONNX's textual syntax, weights not included."""
    outputs = dict(graph.outputs)
    value = value_names(graph)
    lines: list[str] = []
    for name in graph.topo_order():
        node = graph.node(name)
        if node.op == "input":
            continue
        view = node_view(graph, node, value, lambda n: f"{value(n.name)}__scalar")
        view.name = value(name)
        if getattr(node.attrs, "scalar", None) is not None:
            lines.append(f"{view.name}__scalar = Constant <value = {DTYPES[node.type.dtype][1]} "
                         f"{{{float(node.attrs.scalar)!r}}}> ()")
        lines.append(environment(TARGET).globals["op"]("nodes", view))
    for out, v in outputs.items():
        if out != value(v):
            lines.append(f"{out} = Identity({value(v)})")
    return render(TARGET, "model.onnxtxt.j2", name=graph.name, ir_version=IR_VERSION, opset=OPSET,
                  inputs=[f"{_onnx_type(graph.node(n).type)} {n}" for n in graph.inputs],
                  outputs=[f"{_onnx_type(graph.node(v).type)} {out}" for out, v in outputs.items()],
                  lines=lines)


def _state_dict(graph: Graph, weights: str | Path | None, seed: int) -> dict[str, Any]:
    import torch

    if weights is None:
        from .torch_backend import instantiate

        return dict(instantiate(graph, seed).state_dict())
    try:
        loaded = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here; all mean "not a usable weights file"
        raise SpeccError("E0601", f"cannot load weights from {weights}: {exc}", None) from None
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise SpeccError("E0601", f"{weights} is not a state dict (save one with torch.save(model.state_dict(), path))",
                         None)
    return dict(loaded)


def _initializers(graph: Graph, state: Mapping[str, Any], origin: str, used: set[str]) -> list:
    """Check the state dict against the model, then turn the tensors the graph reads into initializers.

    Buffers that inference does not read (batchnorm's `num_batches_tracked`) are checked but not exported.
    """
    from onnx import numpy_helper

    expected = {f"{node.name}.{p}": (node, p, spec) for node in graph.nodes() for p, spec in node.params.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise SpeccError("E0602", f"weights from {origin} do not match model `{graph.name}`: {'; '.join(parts)}", None)
    value = value_names(graph)
    tensors = []
    for key, (node, param, spec) in expected.items():
        tensor = state[key].detach().cpu()
        if tuple(tensor.shape) != tuple(spec.shape):
            raise SpeccError("E0602", f"weight {key} from {origin} has shape {list(tensor.shape)}, "
                                      f"model `{graph.name}` needs {list(spec.shape)}", None)
        name = initializer_name(value(node.name), param)
        if name in used:
            tensors.append(numpy_helper.from_array(tensor.numpy(), name))
    return tensors


def _derived_initializers(graph: Graph, state: Mapping[str, Any], used: set[str]) -> list:
    """Tensors that ops marked `export_weights` compute from their parameters (a parametrized weight
    matrix, a step size depending on its norm): the torch module's own layer computes them, from the
    same state dict, so every target runs on the same numbers."""
    from onnx import numpy_helper

    from .. import ops
    from .torch_backend import instantiate

    nodes = [n for n in graph.nodes() if ops.get(n.op).export_weights]
    if not nodes:
        return []
    module = instantiate(graph, 0)
    module.load_state_dict(dict(state))
    value = value_names(graph)
    tensors = []
    for node in nodes:
        for name, tensor in getattr(module, node.name).export_weights().items():
            key = initializer_name(value(node.name), name)
            if key in used:
                tensors.append(numpy_helper.from_array(tensor.detach().cpu().numpy(), key))
    return tensors


def emit(graph: Graph, weights: str | Path | None = None, seed: int = 0) -> Artifact:
    import onnx
    import onnx.parser

    text = onnx_text(graph)
    try:
        model = onnx.parser.parse_model(text)
    except Exception as exc:  # the parser's error says where; this is a backend bug, not user input
        raise RuntimeError(f"the onnx templates produced text that does not parse: {exc}\n{text}") from None
    origin = str(weights) if weights is not None else f"seed {seed}"
    used = {name for node in model.graph.node for name in node.input}
    state = _state_dict(graph, weights, seed)
    model.graph.initializer.extend(_initializers(graph, state, origin, used))
    model.graph.initializer.extend(_derived_initializers(graph, state, used))
    onnx.checker.check_model(model, full_check=True)
    return Artifact(model.SerializeToString(deterministic=True), ".onnx")


register_backend(Backend(TARGET, ".onnx", emit, "an ONNX model (opset %d) with weights as initializers" % OPSET))
