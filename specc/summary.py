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
from .ir import Graph, Node, param_key
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



# Compressed ops that run slower than the dense layer they replace, and where (measured with
# bench/compression_bench.py --runtime, CPU, one thread). They store less but rebuild a float weight at
# run time; the onnx target's rebuild reads constants only, so onnxruntime folds it into a dense weight
# when it loads the model (dense speed and dense memory in the session, the small weights in the file).
# Not here: masked_linear (prune), whose zeros are its mask, so inference is the dense layer's matmul.
_REBUILT = {
    "nm_linear": "N:M sparsity rebuilds the dense weight in every forward (no sparse kernels are used)",
    "nm_mask_linear": "learnable N:M masks score every candidate mask in every forward; freeze them "
                      "(`sparsity` on the layer) before deploying",
    "codebook_linear": "codebook weights are looked up into a dense weight in every forward",
    "quant_attention": "quantized attention projections are dequantized whole in every forward",
    "quant_conv1d": "a quantized convolution's weight is dequantized whole in every forward",
    "quant_conv2d": "a quantized convolution's weight is dequantized whole in every forward",
}


def speed_notes(graph: Graph) -> list[str]:
    """One line per compressed op kind in the graph that runs slower than its dense layer somewhere:
    which layers, on which target, and which target runs them fast."""
    layers: dict[str, list[Node]] = {}
    for node in graph.nodes():
        if node.op in _REBUILT or node.op == "quant_linear":
            layers.setdefault(node.op, []).append(node)
    notes = []
    for op, nodes in layers.items():
        if op == "quant_linear":
            text = ("slower than dense on the torch target (CPU: one pass over the codes per forward, about "
                    "0.4x dense at batch 1 for int4, 0.5-0.8x for int8; GPU: the whole weight rebuilt); "
                    "fast on the onnx target on CPU (onnxruntime MatMulNBits: int4 faster than dense, int8 "
                    "with accuracy_level=4); on GPU the triton target dequantizes inside its matmul (its speed is not "
                    "measured yet)")
            standard = [n for n in nodes if n.attrs.onnx == "standard"]
            if standard:
                text += (f"; {_named(standard)} use onnx=\"standard\" (blocked DequantizeLinear, kept "
                         f"quantized by onnxruntime): slower than dense on the onnx target too")
            low = [n for n in nodes if n.attrs.bits in (2, 3) and n.attrs.onnx != "standard"]
            if low:
                text += (f"; {_named(low)} store int2/int3 codes, which MatMulNBits does not run: the onnx target "
                         f"folds their weight into a dense one at load (dense speed, dense memory)")
        else:
            text = (f"{_REBUILT[op]}: slower than dense on the torch and triton targets, CPU and GPU; the onnx "
                    f"target runs at dense speed (onnxruntime folds the weight at load: dense memory or more)")
        notes.append(f"{_named(nodes)} ({op}): {text}")
    return notes


def _named(nodes: list[Node]) -> str:
    keys = [n.key for n in nodes]
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
