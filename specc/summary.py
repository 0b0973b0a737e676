"""Per-layer accounting: parameters, weight bytes and FLOPs of a compiled graph.

Parameter counts are those of the generated torch module's `parameters()`
(buffers excluded; a tied parameter once); bytes count parameters and buffers at their dtype. FLOPs
come from each op's `flops` function (a multiply-add is 2), or one per output
element when an op declares none; they may be symbolic in the batch dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from . import ops
from .ir import Graph, param_key
from .ties import tied_targets
from .types import DTYPES, Dim, TensorType, dim_add


@dataclass
class LayerRow:
    name: str  # the layer's state-dict path (`layer1.0.conv1`)
    op: str
    type: TensorType
    params: int
    weight_bytes: int
    flops: Dim


def summarize(graph: Graph) -> list[LayerRow]:
    rows = []
    tied = tied_targets(graph)
    for node in graph.nodes():
        if node.op == "input":
            continue
        opdef = ops.get(node.op)
        ctx = ops.InferContext(graph, node)
        flops = opdef.flops(ctx) if opdef.flops else node.type.numel()
        own = {k: p for k, p in node.params.items() if param_key(node, k) not in tied}  # a tied one is counted once
        params = sum(prod(p.shape) for p in own.values() if p.trainable)
        weight_bytes = sum(prod(p.shape) * DTYPES[p.dtype or (ctx.types[0].dtype if ctx.types else "f32")][2]
                           for p in own.values())
        rows.append(LayerRow(node.key, node.op, node.type, params, weight_bytes, flops))
    return rows


def totals(rows: list[LayerRow]) -> tuple[int, int, Dim]:
    flops: Dim = 0
    for r in rows:
        flops = dim_add(flops, r.flops)
    return sum(r.params for r in rows), sum(r.weight_bytes for r in rows), flops
