"""Scale-out plans: the spec's `shard` statements resolved to layers, checked against a device mesh.

`shard gate_proj, up_proj = colwise` in a block or model names layers by their module paths relative to
it (as `tie` names parameters) and gives each a tensor-parallel style:

- `colwise`: a `linear` (or `embedding`) whose output features are split over the tensor-parallel ranks
  (torch's `ColwiseParallel`): each rank computes its slice of the output.
- `rowwise`: a `linear` (or `embedding`) whose input features are split (`RowwiseParallel`): each rank
  multiplies its slice and the partial results are summed, so its output is whole again.
- `heads`: an `attention` with `qkv="separate"`: its heads are split, `q_proj`/`k_proj`/`v_proj`
  colwise and `o_proj` rowwise, so every rank runs heads / tp query heads and kv_heads / tp key/value heads.
- `sequence`: a norm (`rmsnorm`, `layernorm`) run on each rank's part of the sequence (`SequenceParallel`).
  A plan with `sequence` layers keeps the residual stream split over the sequence (dim 1) between them:
  rowwise layers and `heads` attentions scatter their summed output over the sequence, a rowwise
  embedding too, and colwise layers and `heads` attentions gather their input first.
- `replicate`: kept whole on every tensor-parallel rank (also what every layer not named gets); it says
  so in the spec and in `specc summary`.

The plan is checked here, where the IR knows every layer's op and shape, so a plan that cannot work is a
located error at compile time rather than a shape error inside `torch.distributed`: a path that is no
layer, a style the op cannot take, and a value that reads a colwise layer's shard other than through
elementwise ops into a rowwise layer (that value would be one rank's slice, not the tensor the spec
means). With a mesh (`--mesh dp=2,tp=4`) the sizes the plan splits must also divide by the
tensor-parallel degree. The torch target turns the plan into `parallelize(model, mesh)`
(backends/torch/parallel.j2); `per_rank` estimates the memory one rank holds for `specc summary`.
"""

from __future__ import annotations

import dataclasses

import difflib
import fnmatch
import math
from dataclasses import dataclass

from . import ops
from .diagnostics import SpeccError, Span
from .ir import Graph, Node
from .ties import tied_targets
from .types import DTYPES, Dim, Sym, _terms, dim_add, dim_mul

STYLES = ("colwise", "rowwise", "heads", "sequence", "replicate")
_NORMS = ("rmsnorm", "layernorm")  # what `sequence` splits over the sequence
_SPLIT = ("linear", "embedding")  # what colwise and rowwise split
MESH_DIMS = ("dp", "tp")


@dataclass
class Sharded:
    """One layer instance and its style: `key` is its module path from the model (`model.layers.0.mlp.up_proj`)."""

    key: str
    node: Node
    style: str
    span: Span  # the path in the `shard` statement
    seq_input: bool = False  # its input arrives split over the sequence: gathered first (colwise, heads)
    seq_output: bool = False  # sequence parallelism: its summed output is scattered over the sequence (rowwise, heads)


def plan(graph: Graph) -> list[Sharded]:
    """Every layer instance the `shard` statements name, in model order; raises a located SpeccError for a
    style that does not exist, a path that is no layer, a style the layer's op cannot take, a layer given
    two styles, and a colwise shard read by anything but elementwise ops on the way to a rowwise layer."""
    if not graph.shards:
        return []
    layers = {node.key: node for node in graph.nodes() if node.params}
    chosen: dict[str, Sharded] = {}
    for scope, stmt in graph.shards:
        if stmt.style not in STYLES:
            close = difflib.get_close_matches(stmt.style, STYLES, n=1)
            raise SpeccError("E0233", f"`{stmt.style}` is not a sharding style", stmt.style_span,
                             help=f"did you mean `{close[0]}`?" if close else f"use one of {', '.join(STYLES)}")
        for path, span in stmt.layers:
            key = ".".join(scope + tuple(path.split(".")))
            node = layers.get(key)
            if node is None:
                prefix = ".".join(scope) + "." if scope else ""
                here = [k[len(prefix):] for k in layers if k.startswith(prefix)]
                close = difflib.get_close_matches(path, here, n=1)
                where = f"block `{graph.scopes[scope].block}`" if scope and graph.scopes[scope].block \
                    else f"model `{graph.name}`"
                raise SpeccError("E0234", f"`{path}` is not a layer of {where}", span,
                                 help=f"did you mean `{close[0]}`?" if close else
                                 "name a layer with parameters by its path in this block (see `specc summary`)")
            _check_style(graph, node, stmt.style, span)
            earlier = chosen.get(key)
            if earlier is not None and earlier.style != stmt.style:
                raise SpeccError("E0234", f"`{key}` is sharded `{earlier.style}` and `{stmt.style}`", span)
            chosen[key] = Sharded(key, node, stmt.style, span)
    order = {name: i for i, name in enumerate(graph.topo_order())}
    entries = sorted(chosen.values(), key=lambda s: order[s.node.name])
    _check_dataflow(graph, entries)
    return entries


def unshard_compressed(graph: Graph, plans: list) -> None:
    """A compressed model keeps its base model's `shard` plan where compression left a layer's op as it was.
    A layer a stage rewrote into an op its style cannot split (a `quant_linear` cannot be split colwise
    yet) is left whole on every rank instead: the `shard` statement is a fact about the base model, and
    compressing it must not make it an error. The layer's last stage says so with a located warning
    (E0238, printed with the other stage warnings) rather than silently."""
    last = {plan.layer: plan for plan in plans if not plan.kept}
    layers = {node.key: node for node in graph.nodes() if node.params}
    kept_shards = []
    for scope, stmt in graph.shards:
        kept = []
        for path, span in stmt.layers:
            node = layers.get(".".join(scope + tuple(path.split("."))))
            plan = last.get(node.name) if node is not None else None
            if plan is not None and stmt.style in STYLES:
                try:
                    _check_style(graph, node, stmt.style, span)
                except SpeccError as err:
                    if plan.warning is None:
                        plan.warning = SpeccError(
                            "E0238", f"`{plan.transform}` made `{node.key}` a {node.op}, which `{stmt.style}` cannot "
                                     f"split: it stays whole on every rank", span,
                            help="tensor parallelism splits linear, embedding, norm and attention layers, not "
                                 f"compressed ones ({err.message})")
                    continue
            kept.append((path, span))
        if kept:
            kept_shards.append((scope, dataclasses.replace(stmt, layers=kept)))
    graph.shards = kept_shards


def _check_style(graph: Graph, node: Node, style: str, span: Span) -> None:
    if style == "sequence" and node.op not in _NORMS:
        raise SpeccError("E0235", f"`sequence` splits a norm over the sequence; `{node.key}` is {node.op}", span)
    if style in ("colwise", "rowwise") and node.op not in _SPLIT:
        raise SpeccError("E0235", f"`{style}` splits a linear or embedding layer; `{node.key}` is {node.op}", span,
                         help="split an attention's heads with `heads`; leave other layers whole (`replicate`)")
    if style == "heads":
        if node.op != "attention":
            raise SpeccError("E0235", f"`heads` splits an attention's heads; `{node.key}` is {node.op}", span)
        if node.attrs.qkv != "separate":
            raise SpeccError("E0235", f"`heads` needs an attention with qkv=\"separate\"; `{node.key}` fuses q, k and "
                                      "v in one `qkv` weight, whose rows cannot be split per rank", span,
                             help="use qkv=\"separate\", or keep this attention whole with `replicate`")
        if "mask" in node.attrs.operands:
            mask = graph.node(graph.operands(node.name)[node.attrs.operands.index("mask")]).type
            if mask.rank == 4 and mask.shape[1] != 1:
                raise SpeccError("E0235", f"`heads` splits `{node.key}`'s heads, but its mask has a dim per head, "
                                          "which would not be split with them", span,
                                 help="give a mask of [T, S] or [B, 1, T, S], or keep this attention `replicate`")


def _check_dataflow(graph: Graph, entries: list[Sharded]) -> None:
    """Follow the layout of every value: whole, a colwise layer's slice of the features, or (with
    `sequence` layers) a part of the sequence. A feature slice may only flow through elementwise ops whose
    tensor operands are all such slices, into rowwise layers, or be a model output (gathered). A sequence
    part may only flow through elementwise ops on sequence parts, into sequence norms and colwise or
    `heads` layers (which gather it). Marks each entry's `seq_input` and `seq_output` for the plan."""
    style = {s.node.name: s for s in entries}
    sequence_parallel = any(s.style == "sequence" for s in entries)
    outputs = set(graph.outputs.values())
    sharded: dict[str, Sharded] = {}  # value -> the colwise layer it is a slice of
    seq: set[str] = set()  # values split over the sequence
    for name in graph.topo_order():
        node = graph.node(name)
        s = style.get(name)
        operands = [o for o in graph.operands(name)]
        slices = [o for o in operands if o in sharded]
        if s is not None and s.style == "rowwise":
            if node.op == "linear" and operands and operands[0] not in sharded:
                raise SpeccError("E0236", f"rowwise `{s.key}` reads `{graph.node(operands[0]).local}`, which is not "
                                          "the output of a colwise layer", s.span,
                                 help="a rowwise layer takes the per-rank slice a colwise layer makes")
            if sequence_parallel:
                s.seq_output = True
                seq.add(name)
            continue
        if s is not None and s.style in ("colwise", "heads"):
            if slices:
                raise SpeccError("E0236", f"{s.style} `{s.key}` reads a per-rank slice of "
                                          f"`{sharded[slices[0]].key}`", s.span)
            s.seq_input = bool(operands) and operands[0] in seq
            if any(o in seq for o in operands[1:]):
                raise SpeccError("E0236", f"`{s.key}` reads a mask or context split over the sequence", s.span)
            if s.style == "colwise":
                sharded[name] = s
            elif sequence_parallel:
                s.seq_output = True
                seq.add(name)
            continue
        if s is not None and s.style == "sequence":
            if operands[0] not in seq:
                raise SpeccError("E0236", f"sequence-parallel `{s.key}` reads `{graph.node(operands[0]).local}`, "
                                          "which is whole on every rank, not split over the sequence", s.span,
                                 help="split the sequence before it: a rowwise embedding or layer, or a `heads` "
                                      "attention, scatters its output over the sequence in a plan with `sequence`")
            seq.add(name)
            continue
        parts = [o for o in operands if o in seq]
        if parts:
            if ops.get(node.op).elementwise and all(o in seq for o in operands):
                seq.add(name)
                continue
            raise SpeccError("E0236", f"`{node.local}` ({node.op}) reads `{graph.node(parts[0]).local}`, which is "
                                      "split over the sequence", node.span or (s.span if s else None),
                             help="only elementwise ops on sequence parts, `sequence` norms and colwise or `heads` "
                                  "layers may read it")
        if not slices:
            continue
        source = sharded[slices[0]]
        if ops.get(node.op).elementwise and all(o in sharded for o in operands):
            sharded[name] = source
            continue
        raise SpeccError("E0236", f"`{node.local}` ({node.op}) reads the per-rank slice of colwise `{source.key}`",
                         node.span or source.span,
                         help="a colwise layer's output may only pass through elementwise ops into a rowwise layer")
    for name in outputs:
        if name in sharded and graph.node(name).op not in ("linear", "embedding"):
            raise SpeccError("E0236", f"output `{graph.node(name).local}` is a per-rank slice of colwise "
                                      f"`{sharded[name].key}`", sharded[name].span)
        if name in seq:
            raise SpeccError("E0236", f"output `{graph.node(name).local}` is split over the sequence",
                             graph.output_spans.get(next(k for k, v in graph.outputs.items() if v == name)),
                             help="end the model with a colwise layer (gathered, as a model output) or keep it whole")


# ------------------------------------------------------------------ meshes
def parse_mesh(text: str) -> dict[str, int]:
    """`dp=2,tp=4` -> {"dp": 2, "tp": 4}; ValueError with the reason otherwise (a usage error)."""
    mesh: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in MESH_DIMS:
            raise ValueError(f"expected dp=N,tp=N, got {text!r}")
        if name in mesh:
            raise ValueError(f"`{name}` is given twice in {text!r}")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        mesh[name] = int(value)
    return {"dp": mesh.get("dp", 1), "tp": mesh.get("tp", 1)}


def check_mesh(entries: list[Sharded], tp: int) -> None:
    """Every size the plan splits divides by the tensor-parallel degree `tp` (located at the `shard` path)."""
    if tp == 1:
        return
    for s in entries:
        for what, size in split_sizes(s):
            if size % tp:
                raise SpeccError("E0237", f"`{s.key}` cannot be split {tp} ways: its {what} is {size}, not a "
                                          f"multiple of tp={tp}", s.span,
                                 help=f"choose a tensor-parallel degree that divides {size}")


def split_sizes(s: Sharded) -> list[tuple[str, int]]:
    """The sizes a style splits, named as errors and the generated code's checks say them."""
    node = s.node
    if s.style == "heads":
        return [("number of heads", node.attrs.heads), ("number of key/value heads", node.attrs.group_kv())]
    if s.style not in ("colwise", "rowwise"):
        return []
    out, features = node.params["weight"].shape[:2]
    if node.op == "embedding":  # weight [vocab, dim]: rowwise splits the vocabulary, colwise the dim
        return [("vocabulary", out)] if s.style == "rowwise" else [("embedding dim", features)]
    return [("output features", out)] if s.style == "colwise" else [("input features", features)]


# ------------------------------------------------------------------ memory
@dataclass
class RankMemory:
    params: int  # parameters one rank holds
    param_bytes: int
    activation_bytes: Dim  # in the per-rank batch (symbolic dims as the model's inputs name them)


def per_rank(graph: Graph, entries: list[Sharded], dp: int, tp: int) -> RankMemory:
    """What one rank of a dp x tp mesh holds: tensor parallelism splits the planned weights tp ways, then
    FSDP shards every parameter's dim 0 dp ways (padded up, as `fully_shard` does). Activations are an
    estimate for a rank's own batch: every value's output once (what backward may keep; attention's
    internals not counted), the feature slices and sequence parts tensor parallelism makes divided by tp."""
    style = {s.node.name: s.style for s in entries}
    by_name = {s.node.name: s for s in entries}
    tied = tied_targets(graph)
    params = param_bytes = 0
    for node in graph.nodes():
        for name, spec in node.params.items():
            key = f"{node.key}.{name}" if name else node.key
            if key in tied:
                continue
            shape = list(spec.shape)
            if shape and _tp_split(style.get(node.name), node.op, name) is not None:
                dim = _tp_split(style[node.name], node.op, name)
                shape[dim] = shape[dim] // tp
            local = (math.ceil(shape[0] / dp) * math.prod(shape[1:])) if shape else 1
            dtype = spec.dtype or "f32"
            if spec.trainable:
                params += local
            param_bytes += local * DTYPES[dtype][2]
    activations: Dim = 0
    sliced = set()
    for name in graph.topo_order():
        node = graph.node(name)
        if node.op == "input" or node.type is None:
            continue
        split = by_name.get(name)
        if (split is not None and (split.style in ("colwise", "sequence") or split.seq_output)) or \
                (split is None and ops.get(node.op).elementwise and graph.operands(name)
                 and all(o in sliced for o in graph.operands(name))):
            sliced.add(name)  # a slice of the features, or a part of the sequence
        size = dim_mul(node.type.numel(), DTYPES[node.type.dtype][2])
        activations = dim_add(activations, _divide(size, tp) if name in sliced else size)
    return RankMemory(params, param_bytes, activations)


def _tp_split(style: str | None, op: str, param: str) -> int | None:
    """The dim tensor parallelism splits one parameter along (None: the parameter stays whole)."""
    if style == "colwise":
        return 1 if op == "embedding" else 0  # a linear's weight rows and its bias
    if style == "rowwise":
        if op == "embedding":
            return 0
        return 1 if param == "weight" else None
    if style == "heads":
        if param.startswith(("q_proj.", "k_proj.", "v_proj.")):
            return 0
        return 1 if param == "o_proj.weight" else None
    return None


def _divide(size: Dim, tp: int) -> Dim:
    """`size / tp`, exact (a symbolic size keeps a rational coefficient)."""
    return Sym._make({m: c / tp for m, c in _terms(size).items()}) if tp > 1 else size


def layer_patterns(graph: Graph, keys: list[str]) -> list[str]:
    """Module paths for `parallelize_module`: the iterations of a `repeat` that all take a style collapse
    into one `*` pattern (`model.layers.*.mlp.up_proj`), so an 80-layer model's plan is a few lines;
    a path a pattern would over-match (a layer only some iterations have) stays literal."""
    every = [n.key for n in graph.nodes() if n.params]
    out: list[str] = []
    for key in keys:
        parts = key.split(".")
        pattern = ".".join("*" if part.isdigit() and ".".join(parts[:i]) and
                           graph.scopes.get(tuple(parts[:i]), None) is not None and
                           graph.scopes[tuple(parts[:i])].kind == "list" else part
                           for i, part in enumerate(parts))
        matched = {k for k in every if _match(k, pattern)}
        if matched <= set(keys) and pattern not in out:
            out.append(pattern)
        elif not matched <= set(keys):
            out.append(key)
    return out


def _match(key: str, pattern: str) -> bool:
    a, b = key.split("."), pattern.split(".")
    return len(a) == len(b) and all(fnmatch.fnmatchcase(x, y) for x, y in zip(a, b))


def rank_report(graph: Graph, entries: list[Sharded], dp: int, tp: int) -> str:
    """The lines `specc summary --mesh` prints after its table: what one rank of the mesh holds."""
    from .summary import summarize, totals
    from .types import dim_str

    whole = totals(summarize(graph))[0]
    mine = per_rank(graph, entries, dp, tp)
    split = sum(1 for s in entries if s.style != "replicate")
    kept = sum(1 for s in entries if s.style == "replicate")
    return "\n".join([
        f"mesh dp={dp} x tp={tp} ({dp * tp} ranks), per rank:",
        f"  parameters   {mine.params:,} of {whole:,} ({_bytes(mine.param_bytes)} of parameters and buffers; "
        "gradients as much again, optimizer state per its kind)",
        f"  activations  {dim_str(mine.activation_bytes)} bytes for the rank's own batch (an estimate: every "
        "value once, as backward may keep them; the slices colwise layers make count 1/tp)",
        f"  plan         {split} layer instances split over tp, {kept} kept whole by `replicate`; FSDP shards "
        "every parameter over dp",
    ])


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"
