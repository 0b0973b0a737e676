"""Epilogue fusion: a linear layer and the elementwise group it feeds become one kernel.

After `fuse_elementwise`, `relu(linear(x) + r)` is a linear followed by one
group {add, relu}: two kernels, and the linear's output makes a round trip
through memory between them. When the group is the linear's only reader, the
matmul kernel can apply the group's ops to each output tile while it is still in
registers (its "epilogue") and never write the linear's output at all. This pass
finds those pairs and records them by putting the linear in the group, as its
*anchor* (`ir.EPILOGUE_ANCHORS`); the triton backend emits an anchored group as
one tiled matmul kernel whose epilogue adds the bias and runs the group's ops.
The other backends ignore groups.
"""

from __future__ import annotations

from ..ir import EPILOGUE_ANCHORS, Graph
from . import register_pass

# dtypes the matmul kernel takes (tl.dot, fp32 accumulate); f64 linears stay separate kernels
EPILOGUE_DTYPES = frozenset({"f32", "f16", "bf16"})


@register_pass("fuse_epilogues", requires=("typed", "fused"), ensures=("epilogues",))
def fuse_epilogues(graph: Graph) -> None:
    """Attach each elementwise group to a linear layer whose output only that group reads.

    For each group, its outside operands are tried in order of first use; the
    first that is a linear with the group's output shape, a matmul dtype, no
    reader outside the group and not a model output becomes the group's anchor.
    One anchor per group (one matmul per kernel): in `linear(a) + linear(b)` the
    second linear stays a separate step. The enlarged group is still convex: the
    anchor's only readers are inside the group, so no path leaves it from there,
    and its operand cannot depend on the group it feeds. Each candidate's readers
    are looked at once, however many groups it feeds, so the pass is linear.
    """
    outputs = set(graph.outputs.values())
    members: dict[str, list[str]] = {}
    for name in graph.topo_order():
        gid = graph.node(name).group
        if gid is not None:
            members.setdefault(gid, []).append(name)
    group_of = {name: gid for gid, names in members.items() for name in names}  # before any anchoring
    reader_groups: dict[str, set[str | None]] = {}  # candidate -> the groups of its readers, computed once
    for gid, names in members.items():
        inside = set(names)
        shape = graph.node(names[0]).type.shape
        candidates = dict.fromkeys(o for n in names for o in graph.operands(n) if o not in inside)
        for operand in candidates:
            node = graph.node(operand)
            if (node.op in EPILOGUE_ANCHORS and node.group is None and node.type.shape == shape
                    and node.scope == graph.node(names[0]).scope  # a group stays in one module's forward
                    and node.type.dtype in EPILOGUE_DTYPES and operand not in outputs):
                if operand not in reader_groups:
                    reader_groups[operand] = {group_of.get(u) for u in graph.nx.successors(operand)}
                if reader_groups[operand] == {gid}:
                    node.group = gid
                    break
