"""Which layers a compression stage applies to.

`on SELECTOR (except SELECTOR)* (where PREDICATE)?`, resolved in this order:
  1. a bare name that is an op type (`linear`) selects every layer of that op;
     any other bare name selects the layer with exactly that name;
  2. a string: `"re:REGEX"` selects layer names the regex fully matches, a
     string with `*`, `?` or `[` is a glob over layer names, any other string
     is an exact layer name (so `"linear"` means the layer named linear);
  3. `except` selectors, resolved the same way, are removed;
  4. `where` keeps layers for which the predicate, evaluated over the layer's
     attributes (e.g. `out_features`) and facts (`in_features`, `params`), is true;
  5. only layers whose op the transform can rewrite are kept.
A layer's name here is either its IR name (`layer1_0_conv1`) or its state-dict path (`layer1.0.conv1`),
so `"layer1.*"` selects every layer under `layer1`.
Each step that leaves nothing is an error pointing at the selector.
"""

from __future__ import annotations

import fnmatch
import re
from math import prod
from typing import Any, Iterable

from .. import ast, ops
from ..diagnostics import SpeccError
from ..ir import Graph, Node


# the compressed ops and the stage that makes each, to name both stages when a later one cannot follow
MADE_BY = {"lowrank_linear": "lowrank", "nm_linear": "sparsity", "nm_mask_linear": "sparsity(learnable=true)",
           "masked_linear": "prune", "quant_linear": "quantize", "codebook_linear": "codebook",
           "tt_linear": "tensor_train", "tt_embedding": "tensor_train", "tt_conv1d": "tensor_train", "tt_conv2d": "tensor_train", "moe_merged": "merge_experts", "lowrank_quant_linear": "lowrank + quantize",
           "quant_attention": "quantize", "quant_embedding": "quantize", "quant_conv1d": "quantize",
           "quant_conv2d": "quantize"}


def _layers(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes() if n.op != "input"]


def _match(graph: Graph, selector: ast.Expr) -> list[str]:
    layers = _layers(graph)
    if isinstance(selector, ast.Name):
        if ops.get(selector.id) is not None:
            return [n.name for n in layers if n.op == selector.id]
        return [n.name for n in layers if selector.id in (n.name, n.key)]
    assert isinstance(selector, ast.String)
    text = selector.value
    if text.startswith("re:"):
        try:
            pattern = re.compile(text[3:])
        except re.error as exc:
            raise SpeccError("E0804", f"invalid regex: {exc}", selector.span) from None
        return [n.name for n in layers if pattern.fullmatch(n.name) or pattern.fullmatch(n.key)]
    if any(c in text for c in "*?["):
        return [n.name for n in layers if fnmatch.fnmatchcase(n.name, text) or fnmatch.fnmatchcase(n.key, text)]
    return [n.name for n in layers if text in (n.name, n.key)]


def facts(node: Node) -> dict[str, Any]:
    """What a `where` predicate can read about a layer."""
    out = {k: getattr(node.attrs, k) for k in type(node.attrs).model_fields}
    weight = node.params.get("weight")
    if weight is not None and len(weight.shape) == 2:
        out.setdefault("out_features", weight.shape[0])
        out.setdefault("in_features", weight.shape[1])
    out["params"] = sum(prod(p.shape) for p in node.params.values() if p.trainable)
    return out


def select(graph: Graph, stage: ast.Stage, applicable: frozenset[str], transform: str) -> list[str]:
    from ..lower import evaluate

    (selector,) = stage.selectors
    chosen = _match(graph, selector)
    if not chosen:
        names = ", ".join(n.name for n in _layers(graph)[:12])
        raise SpeccError("E0801", "this selector matches no layer", selector.span, help=f"layers: {names}, ...")
    for exc in stage.excepts:
        removed = set(_match(graph, exc))
        if not removed:
            raise SpeccError("E0801", "this `except` selector matches no layer", exc.span)
        chosen = [n for n in chosen if n not in removed]
    if stage.where is not None:
        context = ast.Definition("block", transform, [], [], stage.span, stage.span)
        kept = []
        for name in chosen:
            verdict = evaluate(stage.where, facts(graph.node(name)), context)
            if not isinstance(verdict, bool):
                raise SpeccError("E0805", f"`where` must be true or false, got {verdict!r}", stage.where.span)
            if verdict:
                kept.append(name)
        if not kept:
            raise SpeccError("E0801", "no selected layer satisfies this `where`", stage.where.span)
        chosen = kept
    usable = [n for n in chosen if graph.node(n).op in applicable]
    if not usable:
        made = next((graph.node(n) for n in chosen if graph.node(n).op in MADE_BY), None)
        if made is not None:  # an earlier stage rewrote the layer into something this transform does not take
            raise SpeccError("E0802", f"`{transform}` cannot follow `{MADE_BY[made.op]}`: an earlier stage made layer "
                                      f"`{made.key if made.local else made.name}` `{made.op}`, and `{transform}` "
                                      f"rewrites only {_listed(applicable)} layers", selector.span,
                             help=f"apply `{transform}` before `{MADE_BY[made.op]}` (stages run in order)")
        found = ", ".join(f"{n} ({graph.node(n).op})" for n in chosen[:6])
        raise SpeccError("E0802", f"`{transform}` rewrites {_listed(applicable)} layers, but the selector "
                                  f"matches only {found}", selector.span)
    return usable


def _listed(ops: Iterable[str]) -> str:
    """`linear`, `linear and moe`, `conv1d, conv2d and linear`."""
    names = sorted(ops)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
