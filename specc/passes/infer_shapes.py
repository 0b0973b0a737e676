"""Shape and dtype inference, and the parameters each op owns."""

from __future__ import annotations

import math

from .. import limits, ops
from ..ir import Graph, Node
from ..types import TensorType, check_dim
from . import register_pass


def node_type(graph: Graph, node: Node) -> TensorType:
    """Run a node's shape function (its operands are typed) and check its dims against the limits:
    an op can make a dim no spec wrote (`linear(x, n)` with n from arithmetic, a flatten's product)."""
    with limits.at(node.span):
        result = ops.get(node.op).infer(ops.InferContext(graph, node))
        for dim in result.shape:
            check_dim(dim, "a dim of this layer's output")
    return result


@register_pass("infer_shapes", ensures=("typed",))
def infer_shapes(graph: Graph) -> None:
    """Give every value a tensor type by running each op's shape function in topological order.

    The model's parameter count (every tensor in its state dict, buffers too: they take memory
    alike) is checked against the `params` limit at the node that goes over it."""
    total = 0
    for node in graph.nodes():
        node.type = node_type(graph, node)
        node.params = ops.get(node.op).params(ops.InferContext(graph, node))
        total += sum(math.prod(spec.shape) for spec in node.params.values())
        limits.check("params", total, node.span, "the model, with this layer,")
