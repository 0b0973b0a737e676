"""The onnx target: a `.onnx` model that onnxruntime loads.

The templates write the graph in ONNX's textual syntax (`onnx.parser`), one op
template per IR op; this driver parses it, attaches the weights as initializers
and runs the full checker. Weights come from a torch state dict: one saved from
the torch target's module, or that module initialized from a seed, so every
target starts from the same numbers.
"""

from __future__ import annotations

from pathlib import Path
import re
from collections import Counter
from typing import Any, Callable, Mapping

from ..diagnostics import SpeccError
from ..escape import identifier, py_float
from ..ir import Graph, param_key
from ..types import DTYPES, TensorType
from . import Artifact, Backend, environment, node_view, register_backend, render
from ..ties import tied_targets
from ..weights import param_dtype, stored_as
from .torch_backend import scalar_text

TARGET = "onnx"
# Pinned to what the installed onnxruntime loads (see ../shared/README.md).
IR_VERSION = 10
OPSET = 21
# onnxruntime's contrib ops (MatMulNBits, for quant_linear); imported only by models that use one
CONTRIB_DOMAIN, CONTRIB_OPSET = "com.microsoft", 1


def _onnx_type(t: TensorType) -> str:
    dims = [str(d) if isinstance(d, int) else (str(d) if str(d).isidentifier() else "?") for d in t.shape]
    # a 0-d tensor is spelled `float`; `float[]` would mean "shape unknown"
    return f"{DTYPES[t.dtype][1]}[{', '.join(dims)}]" if t.shape else DTYPES[t.dtype][1]


def initializer_name(node: str, param: str) -> str:
    """ONNX's text syntax has no dots in names: `fc.weight` is `fc__weight`, `attn.qkv.bias` is `attn__qkv__bias`."""
    return f"{node}__{param.replace('.', '__')}"


def value_names(graph: Graph) -> Callable[[str], str]:
    """The ONNX name of each IR value.

    Templates name a value's helper values and initializers `NAME__SUFFIX`. Those never collide with
    each other or with a value when no value's name contains `__` or ends in `_`, and no graph input or
    output name is `NAME__...` for a value NAME: then the first `__` of a derived name ends the value it
    came from. Inputs and outputs keep their names (the model's interface); every other value keeps
    its name if that is safe, else gets the first free `BASE_1`, `BASE_2`, ... (an output whose value
    was renamed is then an Identity of it).
    """
    outputs = dict(graph.outputs)
    interface = set(graph.inputs) | set(outputs)
    # `P` of every interface name `P__...`, where a value named P would derive that name (only the part
    # before the first `__` matters: a longer one holds `__` itself, and no kept value does)
    prefixes = {name[:name.find("__")] for name in interface if name.find("__") > 0}
    blocked = interface | prefixes

    def safe(name: str) -> bool:
        return "__" not in name and not name.endswith("_")

    names = {name: name for name in graph.inputs}
    for name in graph.topo_order():
        if name in names:
            continue
        if safe(name) and name not in prefixes and (name not in interface or outputs.get(name) == name):
            names[name] = name
            continue
        base = re.sub("_+", "_", name).strip("_") or "v"
        i = 1
        while f"{base}_{i}" in blocked or f"{base}_{i}" in graph.nx:
            i += 1
        names[name] = f"{base}_{i}"
        blocked.add(names[name])
    return names.__getitem__


def _name(text: str) -> str:
    """A spec name spelled in ONNX text: the IR makes names ASCII identifiers; Python keywords are fine here."""
    return identifier(text, keywords=True)


def onnx_text(graph: Graph) -> tuple[str, list[tuple[str, str]]]:
    """The model in ONNX's textual syntax, weights not included, and its body as (IR node, text) chunks
    in order: the ONNX nodes each IR node's template wrote, so a failure can point at the spec."""
    outputs = dict(graph.outputs)
    value = value_names(graph)
    chunks: list[tuple[str, str]] = []
    for name in graph.topo_order():
        node = graph.node(name)
        if node.op == "input":
            continue
        view = node_view(graph, node, value, lambda n: f"{value(n.name)}__scalar")
        view.name = value(name)
        lines = []
        if getattr(node.attrs, "scalar", None) is not None:
            lines.append(f"{view.name}__scalar = Constant <value = {DTYPES[node.type.dtype][1]} "
                         f"{{{scalar_text(node)}}}> ()")
        lines.append(environment(TARGET).globals["op"]("nodes", view))
        chunks.append((name, "\n".join(lines)))
    for out, v in outputs.items():
        if out != value(v):
            chunks.append((v, f"{_name(out)} = Identity({value(v)})"))
    owners = {param_key(node, p): (node.name, p) for node in graph.nodes() for p in node.params}
    ties = [(owners[t.target][0], f"{initializer_name(value(owners[t.target][0]), owners[t.target][1])} = Identity("
                                  f"{initializer_name(value(owners[t.source][0]), owners[t.source][1])})")
            for t in graph.ties]  # a tied parameter is its source's initializer, stored once
    chunks = ties + chunks
    text = render(TARGET, "model.onnxtxt.j2", name=_name(graph.name), ir_version=IR_VERSION, opset=OPSET,
                  inputs=[f"{_onnx_type(graph.node(n).type)} {_name(n)}" for n in graph.inputs],
                  outputs=[f"{_onnx_type(graph.node(v).type)} {_name(out)}" for out, v in outputs.items()],
                  lines=[text for _, text in chunks])
    return text, chunks


def _name_nodes(model: Any, chunks: list[tuple[str, str]]) -> dict[str, str]:
    """Name each top-level ONNX node after the IR node whose template wrote it (`h`, or `h/0`, `h/1`, ...
    for several) and return ONNX node name -> IR node. Each chunk is parsed alone to count its nodes."""
    import onnx.parser

    owners: list[str] = []
    for ir_name, text in chunks:
        owners += [ir_name] * len(onnx.parser.parse_graph(f"chunk () => () {{\n{text}\n}}").node)
    if len(owners) != len(model.graph.node):
        raise RuntimeError(f"the onnx text has {len(model.graph.node)} nodes, its chunks {len(owners)}")
    total = Counter(owners)
    seen: Counter[str] = Counter()
    names = {}
    for onnx_node, ir_name in zip(model.graph.node, owners):
        onnx_node.name = ir_name if total[ir_name] == 1 else f"{ir_name}/{seen[ir_name]}"
        seen[ir_name] += 1
        names[onnx_node.name] = ir_name
    return names


def _type_name(elem_type: int) -> str:
    """An ONNX element type as its schemas spell it: 16 -> `tensor(bfloat16)`."""
    import onnx

    return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"


def _check_input_types(graph: Graph, model: Any, owners: dict[str, str]) -> None:
    """Check every top-level node's input types against its ONNX schema before the checker does, so an
    op the onnx target cannot run on some dtype (Conv on bf16) is an error at the spec's line."""
    import onnx
    import onnx.shape_inference

    inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    known = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            known[info.name] = info.type.tensor_type.elem_type
    known.update((init.name, init.data_type) for init in model.graph.initializer)
    spec_dtype = {onnx_name: name for name, (_, onnx_name, _) in DTYPES.items()}
    for onnx_node in model.graph.node:
        try:
            schema = onnx.defs.get_schema(onnx_node.op_type, OPSET, onnx_node.domain)
        except onnx.defs.SchemaError:
            continue  # no such op: the checker reports that, a bug in a template
        allowed = {c.type_param_str: list(c.allowed_type_strs) for c in schema.type_constraints}
        for i, name in enumerate(onnx_node.input):
            if not name or name not in known or not schema.inputs:
                continue
            formal = schema.inputs[min(i, len(schema.inputs) - 1)].type_str
            accepted = allowed.get(formal, [formal])
            actual = _type_name(known[name])
            if actual in accepted:
                continue
            ir_node = graph.node(owners[onnx_node.name])
            dtype = actual[len("tensor("):-1]
            raise SpeccError(
                "E0610", f"the onnx target cannot run {ir_node.op} on {spec_dtype.get(dtype, dtype)} inputs "
                         f"(ONNX {onnx_node.op_type} accepts {', '.join(accepted)})", ir_node.span,
                help="use the torch or triton target, or another dtype for this model")


# A .onnx file is one protobuf message, and protobuf refuses to write one of 2 GiB or more.
MAX_MODEL_BYTES = 2**31 - 1


def _check_weight_bytes(graph: Graph) -> None:
    """Refuse, before any weights are made, a model whose parameters alone exceed one .onnx file."""
    total, largest = 0, None
    for node in graph.nodes():
        operands = graph.operands(node.name)
        default = graph.node(operands[0]).type.dtype if operands else node.type.dtype
        size = 0
        for spec in node.params.values():
            elements = 1
            for d in spec.shape:
                elements *= d
            size += elements * DTYPES[param_dtype(graph, node, spec)][2]
        # tensors an op exports besides its parameters (fixed_point's mdbm_conv: W and V, dense)
        size += getattr(node.attrs, "onnx_export_elements", lambda: 0)() * DTYPES[default][2]
        total += size
        if size and (largest is None or size > largest[0]):
            largest = (size, node)
    if total > MAX_MODEL_BYTES:
        raise _too_big(graph, total, largest[1].span if largest else None)


def _too_big(graph: Graph, size: int, span: Any) -> SpeccError:
    return SpeccError("E0611", f"model `{graph.name}` needs {size / 2**30:.1f} GiB of weights; one .onnx file "
                               f"holds at most 2 GiB (a protobuf limit)", span,
                      help="use the torch or triton target, or make the model smaller")


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
    # a parameter op's tensor is the value itself: its param name is empty and its key the node's name
    expected = {param_key(node, p): (node, p, spec)
                for node in graph.nodes() for p, spec in node.params.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise SpeccError("E0602", f"weights from {origin} do not match model `{graph.name}`: {'; '.join(parts)}", None)
    value = value_names(graph)
    tied = tied_targets(graph)
    tensors = []
    for key, (node, param, spec) in expected.items():
        tensor = stored_as(graph, node, spec, key, state[key].detach().cpu(), origin)
        name = initializer_name(value(node.name), param)
        if name in used and key not in tied:  # a tied one is its source's tensor (see onnx_text)
            tensors.append(_initializer(tensor, name))
    return tensors


def _initializer(tensor: Any, name: str) -> Any:
    """A torch tensor as an ONNX initializer. numpy has no bfloat16, so a bf16 tensor goes in as its raw
    16-bit words (ONNX's BFLOAT16 layout is the same: the upper half of a float32, little-endian)."""
    import onnx
    import torch
    from onnx import numpy_helper

    if tensor.dtype == torch.bfloat16:
        raw = tensor.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
        return onnx.helper.make_tensor(name, onnx.TensorProto.BFLOAT16, list(tensor.shape), raw, raw=True)
    return numpy_helper.from_array(tensor.numpy(), name)


def _derived_initializers(graph: Graph, state: Mapping[str, Any], used: set[str]) -> list:
    """Tensors that ops marked `export_weights` compute from their parameters (a parametrized weight
    matrix, a step size depending on its norm): the torch module's own layer computes them, from the
    same state dict, so every target runs on the same numbers."""
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
        for name, tensor in module.get_submodule(node.key).export_weights().items():
            key = initializer_name(value(node.name), name)
            if key in used:
                tensors.append(_initializer(tensor.detach().cpu(), key))
    return tensors


def emit(graph: Graph, weights: str | Path | None = None, seed: int = 0) -> Artifact:
    import onnx
    import onnx.helper
    import onnx.parser

    text, chunks = onnx_text(graph)
    try:
        model = onnx.parser.parse_model(text)
    except Exception as exc:  # the parser's error says where; this is a backend bug, not user input
        raise RuntimeError(f"the onnx templates produced text that does not parse: {exc}\n{text}") from None
    owners = _name_nodes(model, chunks)
    if any(node.domain == CONTRIB_DOMAIN for node in model.graph.node):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, CONTRIB_OPSET))
    _check_weight_bytes(graph)
    origin = str(weights) if weights is not None else f"seed {seed}"
    used = {name for node in model.graph.node for name in node.input}
    state = _state_dict(graph, weights, seed)
    model.graph.initializer.extend(_initializers(graph, state, origin, used))
    model.graph.initializer.extend(_derived_initializers(graph, state, used))
    if model.ByteSize() > MAX_MODEL_BYTES:
        raise _too_big(graph, model.ByteSize(), None)
    _check_input_types(graph, model, owners)
    onnx.checker.check_model(model, full_check=True)  # a failure here is a bug in a template: exit 3
    return Artifact(model.SerializeToString(deterministic=True), ".onnx")


register_backend(Backend(TARGET, ".onnx", emit, "an ONNX model (opset %d) with weights as initializers" % OPSET))
