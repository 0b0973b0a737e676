"""The torch target: one readable Python file holding an `nn.Module`.

The file needs only torch at run time. Parameters live in standard submodules
(`nn.Linear`, `nn.LayerNorm`, ...) so state dicts match what users expect and
init follows torch's defaults; `forward` is straight-line code, one line per IR
value, so it traces cleanly under `torch.compile(fullgraph=True)`.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping

from ..escape import comment, py_float
from ..ir import Graph, Node
from ..types import DTYPES, FLOAT_DTYPES, dim_value
from . import (_MODULE_NAMES, Artifact, Backend, NodeView, class_name, environment, node_view, register_backend,
               render, self_attribute)
from ..ties import tie_lines
from .modules import ModuleTree

TARGET = "torch"


def scalar_text(node: Node) -> str:
    """The number of `x * 2` as the code spells it: an int for an int tensor (so torch keeps its dtype;
    shape inference refuses a fraction there), a float otherwise."""
    if node.type.dtype not in FLOAT_DTYPES:
        return str(int(node.attrs.scalar))
    return py_float(node.attrs.scalar)



def view(graph: Graph, node: Node) -> NodeView:
    return node_view(graph, node, lambda name: name, scalar_text)


def module_context(graph: Graph, step_of: Callable[[str], str] | None = None,
                   render_step: Callable[[str, Mapping[str, str]], tuple[str, str]] | None = None) -> dict[str, Any]:
    """What both Python targets' module templates need: I/O docs, helpers, and the classes (the
    model's last), from `modules.ModuleTree`. By default each node is one forward statement in
    torch; the triton target passes its own `step_of` and `render_step` for its fused groups.

    `helpers` are module-level functions that op templates define in a `helpers`
    macro (e.g. attention's reshaping), emitted once per distinct text the model's nodes need.
    """
    body = [graph.node(n) for n in graph.topo_order() if n not in graph.inputs]
    nodes = [view(graph, n) for n in body]
    op = environment(TARGET).globals["op"]
    helpers: dict[str, None] = {}  # each distinct text once (an op may need several, e.g. attention's variants)
    for v in nodes:
        helpers.setdefault(op("helpers", v), None)
    name = class_name(graph.name)
    tree = ModuleTree(graph, step_of or (lambda n: n), set(_MODULE_NAMES) | {name})
    model = tree.build_all(render_step or (lambda step, var: torch_step(graph, step, var)))
    model.name = name
    model.init += tie_lines(graph)
    return {
        "model": graph.name,
        "class_name": name,
        "source": Path(graph.source_path or "spec").name,
        "constants": graph.constants,
        "inputs": [(n, graph.node(n).type) for n in graph.inputs],
        "outputs": [(out, value, graph.node(value).type) for out, value in graph.outputs.items()],
        "nodes": nodes,
        "classes": tree.classes + [model],
        "helpers": [code for code in helpers if code],
    }


def scoped_view(graph: Graph, node: Node, var: Mapping[str, str]) -> NodeView:
    """A node as its scope's class sees it: its local name, its operands by the names they have there."""
    v = node_view(graph, node, var.__getitem__, scalar_text)
    v.name, v.local = var[node.name], node.local
    v.attr = self_attribute(node.local)
    return v


def torch_step(graph: Graph, name: str, var: Mapping[str, str]) -> tuple[str, str]:
    """A node's `__init__` line (or "") and forward statement in its scope's class."""
    op = environment(TARGET).globals["op"]
    v = scoped_view(graph, graph.node(name), var)
    return op("init", v), f"{v.name} = {op('forward', v)}  # {comment(str(v.type) + '  ' + v.where)}"


def emit(graph: Graph) -> Artifact:
    return Artifact(render(TARGET, "module.py.j2", **module_context(graph)).encode(), ".py")


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute generated Python as a real module (registered in sys.modules, as imports are)."""
    module = types.ModuleType(name)
    module.__file__ = f"<specc:{name}>"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def instantiate(graph: Graph, seed: int) -> Any:
    """The torch module for `graph`, initialized from `seed` (used to make ONNX weights)."""
    import torch

    module = load_module(emit(graph).data.decode(), f"specc_generated_{graph.name}")
    torch.manual_seed(seed)
    return module.Model().eval()


def example_inputs(graph: Graph, sizes: Mapping[str, int], default: int, seed: int = 0,
                   int_high: Mapping[str, int] | None = None) -> list[Any]:
    """Random inputs for the generated module, symbolic dims set from `sizes` (`default` for others):
    standard normal floats, 0/1 masks for bool inputs, and integers in [0, 4) for ids (tokens,
    positions), valid for any vocabulary; `int_high` gives other ranges [0, high) by input name."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in graph.inputs:
        t = graph.node(name).type
        shape = [dim_value(d, sizes, default) for d in t.shape]
        dtype = getattr(torch, DTYPES[t.dtype][0])
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=gen, dtype=dtype))
        elif dtype == torch.bool:
            out.append(torch.randint(0, 2, shape, generator=gen).bool())
        else:
            out.append(torch.randint(0, (int_high or {}).get(name, 4), shape, generator=gen, dtype=dtype))
    return out


register_backend(Backend(TARGET, ".py", emit, "a PyTorch nn.Module (Python source)"))
