"""Shape and dtype inference, and the parameters each op owns."""

from __future__ import annotations

from .. import ops
from ..ir import Graph
from . import register_pass


@register_pass("infer_shapes", ensures=("typed",))
def infer_shapes(graph: Graph) -> None:
    """Give every value a tensor type by running each op's shape function in topological order."""
    for node in graph.nodes():
        opdef = ops.get(node.op)
        ctx = ops.InferContext(graph, node)
        node.type = opdef.infer(ctx)
        node.params = opdef.params(ctx)
