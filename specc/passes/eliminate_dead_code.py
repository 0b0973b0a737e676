"""Dead-code elimination."""

from __future__ import annotations

from ..ir import Graph
from . import register_pass


@register_pass("eliminate_dead_code", requires=("typed",), ensures=("no_dead_code",))
def eliminate_dead_code(graph: Graph) -> None:
    """Remove values no output depends on (inputs stay: they are the module's signature).

    One walk up from all outputs together, so each value is visited once (a
    walk per output was quadratic in models with many outputs).
    """
    live = set(graph.outputs.values()) | set(graph.inputs)
    stack = list(live)
    while stack:
        for operand in graph.operands(stack.pop()):
            if operand not in live:
                live.add(operand)
                stack.append(operand)
    for name in [n for n in graph.nx.nodes if n not in live]:
        graph.remove_node(name)
