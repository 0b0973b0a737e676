"""`result`: one result of an op with several (see `OpDef.results`), which the lowering adds per
declared result: `v, i = topk(x, 3)` is a `topk` node and a `result` node for each of values and
indices. The op's node computes them all once; this node only picks one (an index into torch's
tuple, the ONNX value `<node>__<name>`), so it costs nothing.
"""

from __future__ import annotations

from ..types import TensorType
from . import InferContext, OpAttrs, OpDef, get, no_flops, register


class ResultAttrs(OpAttrs):
    index: int
    name: str


def _infer(ctx: InferContext) -> TensorType:
    source = ctx.graph.node(ctx.graph.operands(ctx.node.name)[0])
    opdef = get(source.op)
    if opdef is None or opdef.result_types is None:
        raise ctx.error(f"picks a result of an op with several (topk, lstm, gru), not of {ctx.describe(0)}")
    names = opdef.results
    if not 0 <= ctx.attrs.index < len(names) or names[ctx.attrs.index] != ctx.attrs.name:
        raise ctx.error(f"{source.op} has no result {ctx.attrs.index} named `{ctx.attrs.name}`; its results: "
                        f"{', '.join(names)}", "E0404")
    return opdef.result_types(InferContext(ctx.graph, source))[ctx.attrs.index]


register(OpDef("result", "one result of an op with several (added by the compiler: `v, i = topk(x, 3)` or "
                         "`r.indices`)", ("x",), ResultAttrs, infer=_infer, flops=no_flops))
