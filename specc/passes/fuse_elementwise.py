"""Elementwise fusion: groups the Triton backend emits as one kernel each."""

from __future__ import annotations

from .. import ops
from ..ir import Graph
from . import register_pass


@register_pass("fuse_elementwise", requires=("typed", "no_dead_code"), ensures=("fused",))
def fuse_elementwise(graph: Graph) -> None:
    """Group connected elementwise ops that share one output shape.

    Greedy in topological order: an elementwise node merges with the groups of
    its elementwise operands of the same output shape, as long as the union stays
    convex (no path leaves it and comes back, so it can run as one kernel);
    otherwise it starts a new group. Inputs may broadcast into a group; every
    value a group computes has the group's shape.
    """
    order = graph.topo_order()
    position = {name: i for i, name in enumerate(order)}
    groups: dict[str, set[str]] = {}
    next_id = 0
    for name in order:
        node = graph.node(name)
        node.group = None
        if not ops.get(node.op).elementwise:
            continue
        members = {name}
        for operand in graph.operands(name):
            gid = graph.node(operand).group
            if gid is None or gid not in groups or graph.node(operand).type.shape != node.type.shape:
                continue
            if _is_convex(graph, members | groups[gid], position):
                members |= groups.pop(gid)
        gid, next_id = f"t{next_id}", next_id + 1
        groups[gid] = members
        for m in members:
            graph.node(m).group = gid
    # number groups by first member, so ids are stable and readable
    renamed = sorted(groups.values(), key=lambda ms: min(position[m] for m in ms))
    for i, ms in enumerate(renamed):
        for m in ms:
            graph.node(m).group = f"g{i}"


def _is_convex(graph: Graph, members: set[str], position: dict[str, int]) -> bool:
    """No path from the set through an outside value back into it.

    Walks up from every outside operand of the set; values earlier than the
    set's first member cannot depend on it, so the walk stops there.
    """
    first = min(position[m] for m in members)
    stack = [o for m in members for o in graph.operands(m) if o not in members]
    seen: set[str] = set()
    while stack:
        v = stack.pop()
        if v in members:
            return False
        if v in seen or position[v] < first:
            continue
        seen.add(v)
        stack.extend(graph.operands(v))
    return True
