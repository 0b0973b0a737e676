"""The triton target: a Python file with one `@triton.jit` kernel per fusion group.

The module has the same layers and state dict as the torch target. Each group
of elementwise ops found by the fusion pass becomes one kernel that reads its
inputs once and writes only the values used outside the group. Kernels run on
CUDA tensors, and on CPU under `TRITON_INTERPRET=1`; otherwise (plain CPU) the
group runs as the torch ops it was made from: where no tensor can reach a kernel
(CPU-only torch, no interpreter) the group's function `_gN` is bound at import to
its torch reference itself, so that path costs what the torch target's does.
On the kernel path, backward recomputes the group with those torch ops and
differentiates them, so the module trains.

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
from typing import Mapping

from ..escape import comment, py_float
from ..ir import EPILOGUE_ANCHORS, Graph, Node
from . import Artifact, Backend, NodeView, environment, has_macro, node_view, register_backend, render
from .torch_backend import module_context, scoped_view

TARGET = "triton"


@dataclass
class GroupView:
    """A fusion group. Inside its kernel and torch reference, values go by local names (`v_i0`) and
    pointers by pointer names (`p_i0`), numbered by their place in the group; the templates' own names
    start with `_` or are fixed (`BLOCK`, `M`), so nothing can collide with them or each other."""

    id: str
    inputs: list[str]  # values read elementwise (for an anchored group, by its elementwise ops)
    outputs: list[str]
    kernel_inputs: list[tuple[str, str]]  # (pointer, local) of each input, inside the kernel
    kernel_outputs: list[tuple[str, str]]  # (pointer, local) of each output
    nodes: list[NodeView]  # the elementwise ops on local names, for the kernel body (triton `scalar` macros)
    reference: list[tuple[str, str]]  # (local, torch expression): the same computation in torch
    anchor: NodeView | None = None  # the linear whose matmul epilogue the group is; None: an elementwise kernel
    anchor_local: str = ""  # the anchor's output tile, inside the kernel
    kernel: str = ""  # the id of the group whose kernel (and torch reference) this one runs: equal groups share


def _triton_scalar(node: Node) -> str:
    return py_float(node.attrs.scalar)


def _groups(graph: Graph) -> dict[str, GroupView]:
    """Each fusion group's view. Inside a kernel, values go by their place in the group (`v_i0` the
    first input, `v_t2` the third op's result, `v_acc` an anchor's tile), so groups that compute the
    same thing, such as one block's in every iteration of a `repeat`, have the same kernel text and
    share one kernel (`kernel`: the id of the first such group)."""
    torch_op, triton_op = environment("torch").globals["op"], environment(TARGET).globals["op"]
    members: dict[str, list[str]] = {}
    for name in graph.topo_order():
        gid = graph.node(name).group
        if gid is not None:
            members.setdefault(gid, []).append(name)
    outputs = set(graph.outputs.values())
    views: dict[str, GroupView] = {}
    kernels: dict[tuple, str] = {}  # what a kernel's text depends on -> the group that defines it
    for gid, names in members.items():
        inside = set(names)
        anchors = [n for n in names if graph.node(n).op in EPILOGUE_ANCHORS]
        names = [n for n in names if n not in anchors]
        inputs = list(dict.fromkeys(o for n in names for o in graph.operands(n) if o not in inside))
        outs = [n for n in names if n in outputs or any(u not in inside for u in graph.users(n))]
        place = {v: f"i{k}" for k, v in enumerate(inputs)} | {n: f"t{k}" for k, n in enumerate(names)}
        place.update((a, "acc") for a in anchors)

        def local(value: str) -> str:
            return f"v_{place[value]}"

        nodes = []
        for n in names:
            view = node_view(graph, graph.node(n), local, _triton_scalar)
            view.name = local(n)
            nodes.append(view)
        reference = [(v.name, torch_op("forward", v)) for v in nodes]
        anchor = node_view(graph, graph.node(anchors[0]), lambda v: v, _triton_scalar) if anchors else None
        kernel_inputs = [(f"p_{place[v]}", local(v)) for v in inputs]
        kernel_outputs = [(f"p_{place[v]}", local(v)) for v in outs]
        text = (bool(anchors), tuple(kernel_inputs), tuple(kernel_outputs), tuple(reference),
                tuple(triton_op("scalar", v) for v in nodes))
        views[gid] = GroupView(gid, inputs, outs, kernel_inputs, kernel_outputs, nodes, reference, anchor,
                               "v_acc" if anchors else "", kernels.setdefault(text, gid))
    return views


def _own_kernel(op: str) -> bool:
    """Ops whose triton template has its own `forward` (a dedicated kernel, e.g. the constraint layer)."""
    return has_macro(TARGET, op, "forward")


def _step(graph: Graph, groups: dict[str, GroupView], step: str, var: Mapping[str, str]) -> tuple[str, str]:
    """A step's `__init__` line and forward statement in its scope's class: a fused group's kernel
    call `_gN(...)` (its kernel, or its torch reference; an anchored group also owns its linear layer), or one node (its triton `forward` if the op
    has one, else the torch code)."""
    torch_op, triton_op = environment("torch").globals["op"], environment(TARGET).globals["op"]
    if step not in groups:
        view = scoped_view(graph, graph.node(step), var)
        code = (triton_op if _own_kernel(view.op) else torch_op)("forward", view)
        return torch_op("init", view), f"{view.name} = {code}  # {comment(str(view.type) + '  ' + view.where)}"
    g = groups[step]
    outs = ", ".join(var[v] for v in g.outputs) + ","
    ops = " -> ".join(n.op for n in g.nodes)
    if g.anchor is None:
        return "", f"{outs} = _{g.kernel}({', '.join(var[v] for v in g.inputs)})  # {ops}"
    anchor = scoped_view(graph, graph.node(g.anchor.name), var)
    inputs = "".join(f", {var[v]}" for v in g.inputs)
    return torch_op("init", anchor), (f"{outs} = _{g.kernel}({anchor.args[0]}, {anchor.attr}.weight, "
                                      f"{anchor.attr}.bias{inputs})  # {comment('linear -> ' + ops + '  ' + anchor.where)}")


def emit(graph: Graph) -> Artifact:
    """Fused groups become kernels; ops with a triton `forward` use it; every other op is the torch code."""
    groups = _groups(graph)
    context = module_context(graph, step_of=lambda n: graph.node(n).group or n,
                             render_step=lambda step, var: _step(graph, groups, step, var))
    torch_op, triton_op = environment("torch").globals["op"], environment(TARGET).globals["op"]
    helpers: dict[str, None] = {}  # each distinct text once, as in the torch target
    for node in context["nodes"]:
        helpers.update(dict.fromkeys((triton_op if _own_kernel(node.op) else torch_op)("helpers", node).split("\f")))
    context.update(groups=[g for g in groups.values() if g.kernel == g.id], has_epilogues=any(g.anchor for g in groups.values()),
                   helpers=[code for code in helpers if code])
    return Artifact(render(TARGET, "module.py.j2", **context).encode(), ".py")


register_backend(Backend(TARGET, ".py", emit, "Triton kernels for fused groups inside an nn.Module (Python source)"))
