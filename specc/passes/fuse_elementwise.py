"""Elementwise fusion: groups the Triton backend emits as one kernel each."""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..ir import Graph
from . import register_pass


@dataclass
class _Group:
    members: list[str]
    exited: bool = False  # whether a value outside the group reads one of its members


@register_pass("fuse_elementwise", requires=("typed", "no_dead_code"), ensures=("fused",))
def fuse_elementwise(graph: Graph) -> None:
    """Group connected elementwise ops that share one output shape.

    Greedy in topological order: an elementwise node merges with the groups of
    its elementwise operands of the same output shape, as long as the union stays
    convex (no path leaves it and comes back, so it can run as one kernel);
    otherwise it starts a new group. Inputs may broadcast into a group; every
    value a group computes has the group's shape.

    Fusing must keep the graph of groups acyclic (each group runs as one
    step). Every path between the union's parts would leave a part through an
    *exit*, a value outside it that reads a member; nodes are visited in
    topological order, so every exit that exists is already known. A part
    with no exit joins; one with an exit stays apart even where its exits
    never come back. So each candidate costs constant time and the pass is
    linear (n log n for relabeling on merges), where a reachability search
    per candidate made it quadratic on chains.
    """
    order = graph.topo_order()
    position = {name: i for i, name in enumerate(order)}

    group_of: dict[str, _Group] = {}  # elementwise node -> its group
    for name in order:
        node = graph.node(name)
        node.group = None
        operands = graph.operands(name)
        if ops.get(node.op).elementwise:
            group = _Group([name])
            for operand in operands:
                other = group_of.get(operand)
                if (other is None or other is group or other.exited
                        or graph.node(operand).type.shape != node.type.shape
                        or graph.node(operand).scope != node.scope):  # a group stays in one module's forward
                    continue
                group = _merge(group, other, group_of)
            group_of[name] = group
        # `name` is an exit of every operand group it did not join
        for operand in operands:
            other = group_of.get(operand)
            if other is not None and other is not group_of.get(name):
                other.exited = True

    # number groups by first member, so ids are stable and readable
    groups = {id(g): g for g in group_of.values()}.values()
    for i, group in enumerate(sorted(groups, key=lambda g: min(position[m] for m in g.members))):
        for m in group.members:
            graph.node(m).group = f"g{i}"


def _merge(a: _Group, b: _Group, group_of: dict[str, _Group]) -> _Group:
    """Merge two groups into the larger one and return it; relabeling only the smaller keeps all merges n log n."""
    big, small = (a, b) if len(a.members) >= len(b.members) else (b, a)
    big.members.extend(small.members)
    for m in small.members:
        group_of[m] = big
    return big
