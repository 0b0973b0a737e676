"""The triton target: a Python file with one `@triton.jit` kernel per fusion group.

The module has the same layers and state dict as the torch target. Each group
of elementwise ops found by the fusion pass becomes one kernel that reads its
inputs once and writes only the values used outside the group. Kernels run on
CUDA tensors, and on CPU under `TRITON_INTERPRET=1`; otherwise (plain CPU) the
group runs as the torch ops it was made from. Backward recomputes the group with
those torch ops and differentiates them, so the module trains.

A group led by a linear layer (its anchor, set by the epilogue fusion pass)
becomes one tiled matmul kernel instead (backends/triton/matmul_epilogue.j2):
the group's ops, spelled by the same per-op `scalar` macros, run on each output
tile after the bias is added, so the linear's output never goes to memory.

An op can bring its own kernel: if `backends/triton/ops/<op>.j2` defines
`forward` (and usually `helpers`, holding the `@triton.jit` kernel and its
launcher), the triton module uses it instead of the torch code for that op.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..escape import py_float
from ..ir import EPILOGUE_ANCHORS, Graph, Node
from . import Artifact, Backend, NodeView, environment, has_macro, node_view, register_backend, render
from .torch_backend import module_context

TARGET = "triton"


@dataclass
class GroupView:
    """A fusion group. Inside its kernel and torch reference, spec values go by `local` names (`v_h`) and
    pointers by `pointer` names (`p_h`); the templates' own names start with `_` or are fixed (`BLOCK`,
    `M`), so no spec value (one named `mask`, `offsets`, `x_ptr` ...) can collide with them or each other."""

    id: str
    inputs: list[str]  # values read elementwise (for an anchored group, by its elementwise ops)
    outputs: list[str]
    kernel_inputs: list[tuple[str, str]]  # (pointer, local) of each input, inside the kernel
    kernel_outputs: list[tuple[str, str]]  # (pointer, local) of each output
    nodes: list[NodeView]  # the elementwise ops on local names, for the kernel body (triton `scalar` macros)
    reference: list[tuple[str, str]]  # (local, torch expression): the same computation in torch
    anchor: NodeView | None = None  # the linear whose matmul epilogue the group is; None: an elementwise kernel
    anchor_local: str = ""  # the anchor's output tile, inside the kernel


def local(value: str) -> str:
    return f"v_{value}"


def pointer(value: str) -> str:
    return f"p_{value}"


def _triton_scalar(node: Node) -> str:
    return py_float(node.attrs.scalar)


def _local_view(graph: Graph, name: str) -> NodeView:
    view = node_view(graph, graph.node(name), local, _triton_scalar)
    view.name = local(view.name)
    return view


def _groups(graph: Graph) -> dict[str, GroupView]:
    torch_op = environment("torch").globals["op"]
    members: dict[str, list[str]] = {}
    for name in graph.topo_order():
        gid = graph.node(name).group
        if gid is not None:
            members.setdefault(gid, []).append(name)
    outputs = set(graph.outputs.values())
    views = {}
    for gid, names in members.items():
        inside = set(names)
        anchors = [n for n in names if graph.node(n).op in EPILOGUE_ANCHORS]
        names = [n for n in names if n not in anchors]
        inputs = list(dict.fromkeys(o for n in names for o in graph.operands(n) if o not in inside))
        outs = [n for n in names if n in outputs or any(u not in inside for u in graph.users(n))]
        nodes = [_local_view(graph, n) for n in names]
        reference = [(v.name, torch_op("forward", v)) for v in nodes]
        anchor = node_view(graph, graph.node(anchors[0]), lambda v: v, _triton_scalar) if anchors else None
        views[gid] = GroupView(gid, inputs, outs, [(pointer(v), local(v)) for v in inputs],
                               [(pointer(v), local(v)) for v in outs], nodes, reference, anchor,
                               local(anchors[0]) if anchors else "")
    return views


def _schedule(graph: Graph) -> list[str]:
    """Topological order of the graph with each fusion group contracted to one step."""
    key = {}
    contracted = nx.DiGraph()
    for name in graph.topo_order():
        step = graph.node(name).group or name
        key.setdefault(step, len(key))
        contracted.add_node(step)
    for src, dst in graph.nx.edges():
        a, b = graph.node(src).group or src, graph.node(dst).group or dst
        if a != b:
            contracted.add_edge(a, b)
    return list(nx.lexicographical_topological_sort(contracted, key=lambda s: key[s]))


def _own_kernel(op: str) -> bool:
    """Ops whose triton template has its own `forward` (a dedicated kernel, e.g. the constraint layer)."""
    return has_macro(TARGET, op, "forward")


def emit(graph: Graph) -> Artifact:
    """Fused groups become kernels; ops with a triton `forward` use it; every other op is the torch code."""
    context = module_context(graph)
    torch_op, triton_op = environment("torch").globals["op"], environment(TARGET).globals["op"]
    nodes = {n.name: n for n in context["nodes"]}
    groups = _groups(graph)
    steps = []
    for step in _schedule(graph):
        if step in groups:
            steps.append(("group", groups[step], ""))
        elif step not in graph.inputs:
            node = nodes[step]
            steps.append(("node", node, (triton_op if _own_kernel(node.op) else torch_op)("forward", node)))
    helpers: dict[str, None] = {}  # each distinct text once, as in the torch target
    for node in context["nodes"]:
        helpers.setdefault((triton_op if _own_kernel(node.op) else torch_op)("helpers", node), None)
    context.update(steps=steps, groups=list(groups.values()), torch_op=torch_op,
                   has_epilogues=any(g.anchor for g in groups.values()),
                   helpers=[code for code in helpers if code])
    return Artifact(render(TARGET, "module.py.j2", **context).encode(), ".py")


register_backend(Backend(TARGET, ".py", emit, "Triton kernels for fused groups inside an nn.Module (Python source)"))
