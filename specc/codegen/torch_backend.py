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

from ..escape import comment, py_float, py_string
from ..ir import Graph, Node
from ..types import DTYPES, FLOAT_DTYPES, dim_value
from . import (_MODULE_NAMES, Artifact, Backend, NodeView, class_name, environment, node_view, register_backend,
               render, self_attribute)
from ..ties import attribute_path, tie_lines
from .. import parallel
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
    for v in nodes:  # a form feed separates the helpers of one op's text (quant_attention: attention's, quant_linear's)
        helpers.update(dict.fromkeys(op("helpers", v).split("\f")))
    name = class_name(graph.name)
    torch_target = render_step is None  # the triton target renders its own steps and makes no init methods
    tree = ModuleTree(graph, step_of or (lambda n: n), set(_MODULE_NAMES) | {name},
                      (lambda step, line: reset_line(graph, step, line)) if torch_target else None)
    model = tree.build_all(render_step or (lambda step, var: torch_step(graph, step, var)))
    model.name = name
    model.init += tie_lines(graph)
    if torch_target:
        for c in tree.classes:  # a class owning tensors itself re-initializes them in order; others: `_reset`
            c.reset_method = "reset_parameters" if any(not r.startswith("_reset(") for r in c.reset) else None
        model.reset_method = "init_weights"
        untie = [f"{attribute_path(t.target)} = nn.Parameter(torch.empty_like({attribute_path(t.source)}))"
                 f"  # untied while the layers re-initialize, as __init__ ties after making them" for t in graph.ties]
        model.reset = untie + model.reset + tie_lines(graph)
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
        "parallel": parallel_context(graph) if torch_target else None,
    }


def reset_line(graph: Graph, step: str, line: str) -> str:
    """The `init_weights` line for a node's `__init__` line: a layer is `_reset` (its `reset_parameters`),
    a `parameter` value is initialized in place as `__init__` drew it, an `arange` buffer refilled."""
    node = graph.node(step)
    if node.op == "parameter":
        a = node.attrs
        target = self_attribute(node.local) if a.trainable else f"getattr(self, {py_string(node.local)})"
        if a.init in ("zeros", "ones"):
            return f"nn.init.{a.init}_({target})"
        if a.init == "normal":
            return f"nn.init.normal_({target}, mean={py_float(a.mean)}, std={py_float(a.std)})"
        return f"nn.init.uniform_({target}, a={py_float(a.low)}, b={py_float(a.high)})"
    if node.op == "arange":
        dtype = "torch.int64" if node.attrs.dtype == "i64" else "torch.float32"
        target = f"getattr(self, {py_string(node.local)})"
        return f"{target}.copy_(torch.arange({node.attrs.start}, {node.attrs.end}, {node.attrs.step}, dtype={dtype}))"
    lhs, sep, _ = line.partition(" = ")
    if sep and lhs.startswith("self") and "(" not in lhs.replace("self.get_submodule(", ""):
        return f"_reset({lhs})"
    return f"raise RuntimeError({py_string(f'{node.op} layer `{node.key}` cannot be re-initialized in place')})"


def tp_styles(path: str, s: "parallel.Sharded", output: bool) -> list[tuple[str, str, str]]:
    """The `parallelize_module` entries of one planned layer: (module path, ParallelStyle code, comment)."""
    gather = "input_layouts=Shard(1)" if s.seq_input else ""  # a sequence part: gathered first
    scatter = "output_layouts=Shard(1)" if s.seq_output else ""  # summed, then scattered over the sequence
    if s.style == "heads":
        prepare = [(path, "PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))",
                    "the sequence, gathered")] if s.seq_input else []
        return prepare + [(f"{path}.{proj}", "ColwiseParallel()", "heads / tp query heads" if proj == "q_proj" else "")
                          for proj in ("q_proj", "k_proj", "v_proj")] + \
            [(f"{path}.o_proj", f"RowwiseParallel({scatter})", "")]
    if s.style == "colwise":
        args = ", ".join(a for a in (gather, "output_layouts=Replicate()" if output else "") if a)
        return [(path, f"ColwiseParallel({args})", "a model output: gathered" if output else "")]
    if s.style == "rowwise" and s.node.op == "embedding":
        args = ", ".join(a for a in ("input_layouts=Replicate()", scatter) if a)
        return [(path, f"RowwiseParallel({args})", "token ids: whole on every rank")]
    if s.style == "rowwise":
        return [(path, f"RowwiseParallel({scatter})", "")]
    if s.style == "sequence":
        return [(path, "SequenceParallel(use_local_output=True)", "on this rank's part of the sequence")]
    return []  # replicate


def parallel_context(graph: Graph) -> dict[str, Any]:
    """What `parallelize` needs (backends/torch/parallel.j2): the `shard` plan as module-path patterns and
    styles, the sizes it splits (checked against the tensor-parallel degree at run time, as `--mesh` does
    at compile time), the colwise layers whose output is a model output (gathered), and the modules
    `fully_shard` wraps one by one: each iteration of the outermost `repeat`s, else each block instance
    directly in the model."""
    entries = parallel.plan(graph)
    by_key = {s.key: s for s in entries}
    patterns = parallel.layer_patterns(graph, [s.key for s in entries])
    plan = []
    outputs = set(graph.outputs.values())
    for pattern in patterns:
        s = next(by_key[k] for k in by_key if parallel._match(k, pattern))
        plan += tp_styles(pattern, s, s.node.name in outputs)
    splits: dict[tuple[str, int], str] = {}
    for s in entries:
        for what, size in parallel.split_sizes(s):
            splits.setdefault((what, size), s.key)
    made = {n.scope[:i] for n in graph.nodes() for i in range(1, len(n.scope) + 1)}
    lists = [p for p in graph.scopes if graph.scopes[p].kind == "list" and p in made
             and not any(graph.scopes.get(p[:i]) and graph.scopes[p[:i]].kind == "list" for i in range(1, len(p)))]
    blocks = [p for p in graph.scopes if len(p) == 1 and graph.scopes[p].kind == "block" and p in made]
    return {
        "plan": plan,
        "splits": [(key, what, size) for (what, size), key in splits.items()],
        "lists": [".".join(p) for p in lists],
        "blocks": [] if lists else [".".join(p) for p in blocks],
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
