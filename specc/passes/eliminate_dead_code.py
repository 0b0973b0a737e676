"""Dead-code elimination."""

from __future__ import annotations

import networkx as nx

from ..ir import Graph
from . import register_pass


@register_pass("eliminate_dead_code", requires=("typed",), ensures=("no_dead_code",))
def eliminate_dead_code(graph: Graph) -> None:
    """Remove values no output depends on (inputs stay: they are the module's signature)."""
    live = set(graph.outputs.values()) | set(graph.inputs)
    for out in list(live):
        live |= nx.ancestors(graph.nx, out)
    for name in [n for n in graph.nx.nodes if n not in live]:
        graph.remove_node(name)
