"""Tied parameters: `tie lm_head.weight = transformer.wte.weight` makes one parameter answer to two keys.

This is how checkpoints such as GPT-2's are laid out: `lm_head.weight` and `transformer.wte.weight` are
one tensor, and the state dict lists it under both keys. The generated module assigns the source
parameter to the target's place after building its layers (as transformers' `tie_weights` does), so
`parameters()` holds it once, training updates both uses, and a state dict with both keys loads strictly.
"""

from __future__ import annotations

import difflib

from .diagnostics import SpeccError
from .escape import py_string
from .ir import Graph, ParamSpec, attribute_name, param_key


def parameter_keys(graph: Graph) -> dict[str, ParamSpec]:
    """Every parameter and buffer of the model by state-dict key."""
    return {param_key(node, name): spec for node in graph.nodes() for name, spec in node.params.items()}


def check(graph: Graph) -> None:
    """Each tie names two distinct trainable parameters of one shape; a key is tied once, and a source is
    not itself tied to something else (one parameter, several keys: tie each to the same source)."""
    if not graph.ties:
        return
    keys = parameter_keys(graph)
    targets: set[str] = set()
    for tie in graph.ties:
        for key, span in ((tie.target, tie.target_span), (tie.source, tie.source_span)):
            if key not in keys:
                close = difflib.get_close_matches(key, list(keys), n=1)
                raise SpeccError("E0232", f"`{key}` is not a parameter of model `{graph.name}`", span,
                                 help=f"did you mean `{close[0]}`?" if close else "keys are state-dict keys, "
                                      "like `lm_head.weight` (see `specc summary`)")
            if not keys[key].trainable:
                raise SpeccError("E0232", f"`{key}` is a buffer; only parameters can be tied", span)
        if tie.target == tie.source:
            raise SpeccError("E0232", f"`{tie.target}` is tied to itself", tie.span)
        if keys[tie.target].shape != keys[tie.source].shape:
            raise SpeccError("E0232", f"cannot tie `{tie.target}` {list(keys[tie.target].shape)} to `{tie.source}` "
                                      f"{list(keys[tie.source].shape)}: the shapes differ", tie.span)
        if tie.target in targets:
            raise SpeccError("E0232", f"`{tie.target}` is tied twice", tie.target_span)
        targets.add(tie.target)
    for tie in graph.ties:
        if tie.source in targets:
            raise SpeccError("E0232", f"`{tie.source}` is itself tied to another parameter", tie.source_span,
                             help="tie every key to the same source parameter")


def tied_targets(graph: Graph) -> set[str]:
    """The keys whose parameter is another key's (not counted again in parameter counts)."""
    return {tie.target for tie in graph.ties}


def attribute_path(key: str) -> str:
    """`transformer.wte.weight` -> `self.transformer.wte.weight`: Python that reaches a parameter from the
    model. A module path with a segment that is no attribute name (`layers.0`, a layer named `"0"`) is
    reached with `get_submodule`, which reads ModuleList and ModuleDict children alike."""
    module, _, name = key.rpartition(".")
    segments = module.split(".") if module else []
    if all(attribute_name(s) for s in segments):
        return "self" + "".join(f".{s}" for s in segments) + f".{name}"
    return f"self.get_submodule({py_string(module)}).{name}"


def tie_lines(graph: Graph) -> list[str]:
    """The model's `__init__` lines that tie its parameters, after its layers exist."""
    return [f"{attribute_path(t.target)} = {attribute_path(t.source)}  # tie" for t in graph.ties]
