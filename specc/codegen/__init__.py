"""Backend drivers: IR -> files, through the Jinja templates in `backends/<target>/`.

Each target registers a `Backend`. Templates run under `StrictUndefined`, so a
template that reads a missing field fails at compile time instead of writing
broken code. Each op has one template file per target, `ops/<op>.j2`, whose
macros the module template calls through `op(part, node)`.

Spec-derived text reaches generated code only through `specc.escape`, as the
template filters `comment`, `docstring`, `py_string` and `py_float`. Every other
`{{ ... }}` is a number, or a name the IR has already made a safe identifier;
the environment's `finalize` refuses a non-finite float anywhere in one (Python
spells it `inf`, an undefined name), which can only be a compiler bug.
"""

from __future__ import annotations

import builtins
import importlib
import keyword
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2

from .. import __version__, escape
from ..ir import Graph, Node, ParamSpec, attribute_name
from ..resources import data_dir
from ..types import TensorType


@dataclass
class NodeView:
    """What an op template sees of a node."""

    name: str
    op: str
    attrs: Any
    type: TensorType
    args: list[str]  # operand expressions in this target's syntax (a `scalar` attr slotted in)
    arg_types: list[TensorType]
    params: dict[str, ParamSpec]
    where: str  # "file:line", raw spec text: spell it through the `comment` filter
    refs: dict[str, str] = field(default_factory=dict)  # values it reads besides operands (OpDef.reads), spelled
    attr: str = ""  # how its class reaches the node's layer: `self.conv1`, or `self["0"]` for a name like that
    local: str = ""  # the layer's name in its class (`conv1`, `0`): a state-dict key segment

    def __post_init__(self) -> None:
        self.local = self.local or self.name
        self.attr = self.attr or f"self.{self.name}"


@dataclass
class Artifact:
    """A compiled output: the bytes to write and the file suffix it wants."""

    data: bytes
    suffix: str


@dataclass(frozen=True)
class Backend:
    name: str
    suffix: str
    emit: Callable[..., Artifact]
    doc: str = ""


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def backends() -> dict[str, Backend]:
    for name in ("torch", "triton", "onnx"):
        importlib.import_module(f"{__name__}.{name}_backend")
    return dict(_BACKENDS)


def _finite(value: Any) -> Any:
    """`finalize` for every `{{ ... }}`: a float (also inside a tuple, list or dict) must be finite."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"a non-finite float ({item!r}) reached code generation")
        if isinstance(item, (tuple, list)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return value


@lru_cache(maxsize=None)
def environment(target: str) -> jinja2.Environment:
    env = jinja2.Environment(
        # a target's templates may import another target's macros by prefix: "torch/ops/constrain.j2"
        loader=jinja2.ChoiceLoader([
            jinja2.FileSystemLoader(str(data_dir("backends") / target)),
            jinja2.PrefixLoader({name: jinja2.FileSystemLoader(str(data_dir("backends") / name))
                                 for name in ("torch", "triton", "onnx")}),
        ]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finite,
    )
    env.filters.update(comment=escape.comment, docstring=escape.docstring, py_string=escape.py_string,
                       py_float=escape.py_float)

    def op(part: str, node: NodeView) -> str:
        try:
            template = env.get_template(f"ops/{node.op}.j2")
        except jinja2.TemplateNotFound:
            raise RuntimeError(f"the {target} backend has no template for op `{node.op}`") from None
        macro = getattr(template.module, part, None)
        if macro is None:
            return ""
        return str(macro(node)).strip()

    env.globals["op"] = op
    env.globals["version"] = __version__
    return env


def has_macro(target: str, op: str, part: str) -> bool:
    try:
        template = environment(target).get_template(f"ops/{op}.j2")
    except jinja2.TemplateNotFound:
        return False
    return hasattr(template.module, part)


def render(target: str, template: str, **context: Any) -> str:
    return environment(target).get_template(template).render(**context)


def node_view(graph: Graph, node: Node, value: Callable[[str], str], scalar: Callable[[Node], str]) -> NodeView:
    """Build a template view; `value` names an operand, `scalar` spells the node's `scalar` attr."""
    escape.identifier(node.name)  # the IR only makes identifiers; anything else is a bug, caught here
    args = [value(o) for o in graph.operands(node.name)]
    if getattr(node.attrs, "scalar", None) is not None:
        args.insert(0 if node.attrs.scalar_first else len(args), scalar(node))
    where = f"{Path(node.span.path).name}:{node.span.line}" if node.span else ""
    return NodeView(node.name, node.op, node.attrs, node.type, args,
                    [graph.node(o).type for o in graph.operands(node.name)], node.params, where,
                    {v: value(v) for v in extra_reads(node)})


def extra_reads(node: Node) -> tuple[str, ...]:
    """The values a node reads at run time besides its operands (see `OpDef.reads`)."""
    from .. import ops

    reads = ops.get(node.op).reads
    return reads(node.attrs) if reads is not None else ()


# Names the generated modules bind or use at module level, which the model's class must not shadow.
_MODULE_NAMES = frozenset({"torch", "nn", "F", "triton", "tl", "os", "math", "Model"}) | frozenset(dir(builtins))


def camel(name: str) -> str:
    """`basic_block` -> `BasicBlock`: a spec name as a Python class name (maybe empty, or starting with a digit)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def self_attribute(name: str) -> str:
    """How a generated class reaches its child layer `name`: `self.conv1`, or `self["0"]` (an nn.ModuleDict's)."""
    return f"self.{name}" if attribute_name(name) else f"self[{escape.py_string(name)}]"


def class_name(model: str) -> str:
    """`tiny_gpt` -> `TinyGpt`; prefixed `Model` where that would not be a fresh identifier (`F`, `None`, `1x`)."""
    name = camel(model) or "Model"
    if not name[0].isalpha() or keyword.iskeyword(name) or (name in _MODULE_NAMES and name != "Model"):
        name = "Model" + name
    return escape.identifier(name)
