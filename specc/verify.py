"""IR invariants, checked after lowering and after every pass.

A failure here is a compiler bug, not a user error, so it raises
`IRVerificationError` (reported as an internal error) rather than a diagnostic.
"""

from __future__ import annotations

import networkx as nx

from . import ops
from .ir import EPILOGUE_ANCHORS, Graph


class IRVerificationError(RuntimeError):
    pass


def verify(graph: Graph) -> None:
    def fail(msg: str) -> None:
        raise IRVerificationError(f"IR of `{graph.name}` is invalid: {msg}\n{graph.dump()}")

    if not nx.is_directed_acyclic_graph(graph.nx):
        fail("the graph has a cycle")
    for name in graph.nx.nodes:
        node = graph.node(name)
        opdef = ops.get(node.op)
        if opdef is None:
            fail(f"%{name} uses unregistered op {node.op}")
        if not isinstance(node.attrs, opdef.attrs):
            fail(f"%{name} has attrs of type {type(node.attrs).__name__}, expected {opdef.attrs.__name__}")
        n_operands = len(graph.operands(name))
        expected = len(opdef.operands)
        scalar = getattr(node.attrs, "scalar", None) is not None
        if opdef.variadic:
            if n_operands < expected:
                fail(f"%{name} ({node.op}) has {n_operands} operands, expected at least {expected}")
        else:  # a number given as `scalar` takes an operand's place; trailing optional operands may be left out
            most = expected - (1 if scalar else 0)
            least = most - len(opdef.optional)
            if not least <= n_operands <= most:
                fail(f"%{name} ({node.op}) has {n_operands} operands, expected "
                     f"{most if least == most else f'{least} to {most}'}")
        if "typed" in graph.properties and node.type is None:
            fail(f"%{name} has no type after shape inference")
    for out, value in graph.outputs.items():
        if value not in graph.nx:
            fail(f"output {out} refers to missing value %{value}")
    for value in graph.inputs:
        if value not in graph.nx or graph.node(value).op != "input":
            fail(f"input %{value} is not an input node")
    if "fused" in graph.properties:
        _verify_groups(graph, fail)


def _verify_groups(graph: Graph, fail) -> None:
    groups: dict[str, list[str]] = {}
    anchors: dict[str, list[str]] = {}
    for name in graph.nx.nodes:
        node = graph.node(name)
        if node.group is not None:
            if node.op in EPILOGUE_ANCHORS:
                anchors.setdefault(node.group, []).append(name)
            elif not ops.get(node.op).elementwise:
                fail(f"%{name} ({node.op}) is in fusion group {node.group} but is not elementwise")
            groups.setdefault(node.group, []).append(name)
    for gid, members in groups.items():
        shapes = {graph.node(m).type.shape for m in members}
        if len(shapes) != 1:
            fail(f"fusion group {gid} mixes output shapes {shapes}")
    # an anchor (a matmul whose epilogue is the group) leads an elementwise group that alone reads it
    outputs = set(graph.outputs.values())
    for gid, names in anchors.items():
        if len(names) > 1 or len(groups[gid]) == 1:
            fail(f"fusion group {gid} needs one anchor and some elementwise ops, has {groups[gid]}")
        name = names[0]
        if name in outputs or any(graph.node(u).group != gid for u in graph.users(name)):
            fail(f"%{name} anchors fusion group {gid} but is read outside it")
        if any(graph.node(o).group == gid for o in graph.operands(name)):
            fail(f"%{name} anchors fusion group {gid} but reads a value of it")
    # every group is convex (no path leaves it and comes back) iff the graph with each
    # group contracted to one vertex is still acyclic; linear time
    step = {name: graph.node(name).group or name for name in graph.nx.nodes}
    contracted = nx.DiGraph()
    contracted.add_nodes_from(set(step.values()))
    contracted.add_edges_from((step[a], step[b]) for a, b in graph.nx.edges() if step[a] != step[b])
    if not nx.is_directed_acyclic_graph(contracted):
        cycle = nx.find_cycle(contracted)
        fail(f"fusion groups are not convex: {cycle}")
