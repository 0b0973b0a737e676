"""Common-subexpression elimination: a value computed twice is computed once.

Blocks and `repeat` are inlined into one graph, so a spec that reads `transpose(weight_hh, 0, 1)` in
every unrolled step would otherwise transpose the same tensor once per step. Copies in different
module instances merge into the innermost scope holding both, which passes the value in.
"""

from __future__ import annotations

from typing import Hashable

from pydantic import BaseModel

from ..ir import Graph, Node
from . import register_pass

# Ops whose result is not a function of their operands and attributes: each call draws its own random
# numbers (dropout zeroes a fresh mask per call while training), so two calls are two values. Ops that
# own parameters or buffers (which covers every random op with weights, such as attention's dropout,
# lowrank_linear's ordered dropout, batchnorm's running statistics) are never merged anyway; this set
# holds the random ops without any. A new op that draws random numbers without owning a tensor must be
# added here.
NONDETERMINISTIC_OPS = frozenset({"dropout"})


def mergeable(node: Node) -> bool:
    """Whether a node computes a pure function of its operands and attributes, so that two nodes with
    equal ones compute the same value. Not: inputs (each is its own argument), nodes that own
    parameters or buffers (two `linear(x, 8)` are two layers with their own weights, two `parameter`
    calls two tensors; a buffer may be state a layer updates), and random ops."""
    return not node.params and node.op != "input" and node.op not in NONDETERMINISTIC_OPS


def _fingerprint(attrs: BaseModel) -> Hashable:
    """A hashable stand-in for attributes, equal for equal attributes: the frozen model itself, or its
    repr when a field holds something unhashable. Candidates are still compared with `==`, so two
    attributes that merely share a fingerprint are never confused."""
    try:
        hash(attrs)
        return attrs
    except TypeError:
        return repr(attrs)


@register_pass("eliminate_common_subexpressions", requires=("typed",), ensures=("no_common_subexpressions",))
def eliminate_common_subexpressions(graph: Graph) -> None:
    """Merge nodes that compute the same value: same op, equal attributes, same operands.

    One walk in topological order: a node's operands are already merged when it is reached, so its
    key names their surviving values, and a chain of duplicates (`relu(t)` of two equal `t`) folds in
    the same walk. Each key maps to the first node seen with it; a later equal node hands its users
    and outputs to that one and is removed. Linear in the graph's size (a bucket holds several nodes
    only when their attributes differ yet share a fingerprint).
    """
    seen: dict[tuple[str, tuple[str, ...], Hashable], list[str]] = {}
    outputs_of: dict[str, list[str]] = {}
    for out, value in graph.outputs.items():
        outputs_of.setdefault(value, []).append(out)
    for name in graph.topo_order():
        node = graph.node(name)
        if not mergeable(node):
            continue
        bucket = seen.setdefault((node.op, graph.nx.nodes[name]["operands"], _fingerprint(node.attrs)), [])
        kept = next((other for other in bucket if graph.node(other).attrs == node.attrs), None)
        if kept is None:
            bucket.append(name)
            continue
        if not _hoist(graph, graph.node(kept), node.scope):
            bucket.append(name)  # its copy cannot move where both are visible: both stay
            continue
        _replace_uses(graph, name, kept)
        for out in outputs_of.pop(name, ()):
            graph.outputs[out] = kept
            outputs_of.setdefault(kept, []).append(out)
        graph.remove_node(name)


def _hoist(graph: Graph, kept: Node, other: tuple[str, ...]) -> bool:
    """Move the surviving node to the innermost scope holding both copies (a value two iterations of a
    `repeat` compute from the same outside operands is computed once, before them, and passed in), and
    say whether it could: each operand must be visible there, that is made in that scope or around it,
    not returned by a block instance inside it (which may itself read the moved value)."""
    common = 0
    while common < min(len(kept.scope), len(other)) and kept.scope[common] == other[common]:
        common += 1
    while common and graph.scopes[kept.scope[:common]].kind == "list":  # a ModuleList has no forward of its own
        common -= 1
    if common == len(kept.scope):
        return True
    target = kept.scope[:common]
    for operand in graph.operands(kept.name):
        scope = graph.node(operand).scope
        if target[:len(scope)] != scope or len(scope) > len(target):
            return False
    kept.scope = target
    kept.local = graph.names_in(target).take(kept.local)
    return True


def _replace_uses(graph: Graph, old: str, new: str) -> None:
    """Make every user of `old` read `new` in its place, in the same operand positions (each user's
    operand tuple rebuilt once, however many times it reads `old`)."""
    positions: dict[str, list[int]] = {}
    for _, user, position in list(graph.nx.out_edges(old, keys=True)):
        graph.nx.remove_edge(old, user, key=position)
        graph.nx.add_edge(new, user, key=position)
        positions.setdefault(user, []).append(position)
    for user, where in positions.items():
        operands = list(graph.nx.nodes[user]["operands"])
        for position in where:
            operands[position] = new
        graph.nx.nodes[user]["operands"] = tuple(operands)
