"""The intermediate representation: a dataflow graph of ops on networkx.

A `Graph` wraps an `nx.MultiDiGraph` whose nodes are value names and whose
edges run operand -> user, keyed by operand position (so `add(x, x)` keeps both
edges). Each node carries a `Node` record: the op, its validated attributes, the
source span it came from, and (after shape inference) its tensor type and the
trainable parameters it owns. Passes mutate the graph; `verify` checks the
invariants after every pass.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Iterator

import networkx as nx
from pydantic import BaseModel

from . import limits
from .diagnostics import Span
from .types import TensorType

# Names generated code already uses or that nn.Module defines: a value with one
# of these names gets a trailing underscore.
RESERVED = frozenset(keyword.kwlist) | {
    "self", "torch", "nn", "F", "triton", "tl", "math", "ctx", "input", "type", "super",
    "training", "forward", "parameters", "buffers", "modules", "children", "state_dict", "train",
    "eval", "to", "cuda", "cpu", "float", "double", "half", "apply", "register_buffer", "zero_grad",
    "named_parameters", "load_state_dict", "extra_repr", "dump_patches", "call_super_init",
}

_WORD = re.compile(r"[A-Za-z0-9_]+")  # a hint that needs no cleaning (the common case, checked fast)

# Ops that may lead a fusion group as its anchor: the group's elementwise ops become the epilogue
# of the anchor's matmul, one kernel in all (see passes/fuse_epilogues.py). Every other member of a
# group is elementwise.
EPILOGUE_ANCHORS = frozenset({"linear"})


@dataclass(frozen=True)
class ParamSpec:
    """A tensor an op owns, keyed in the state dict as `<node>.<name>` (`param_key`).

    `trainable=False` marks a buffer (e.g. batchnorm's running statistics): it is
    in the state dict but not in `parameters()`, nor in parameter counts.
    """

    shape: tuple[int, ...]
    trainable: bool = True
    dtype: str | None = None  # None: the dtype of the op's first operand


@dataclass(frozen=True)
class Scope:
    """A module instance the generated code nests layers in: a block call (`kind="block"`, `block` names
    the block, or is None for the body of a `repeat` that is not one block call) or a `repeat`
    (`kind="list"`, an nn.ModuleList whose children are its iterations, named "0", "1", ...).

    A scope is keyed by its path from the model, e.g. ("layer1", "0"); its segment is the name the
    spec gave it (the assignment target, or `as "name"`), unique in its parent.
    """

    kind: str
    block: str | None
    span: Span | None
    arg_names: tuple[tuple[str, str], ...] = ()  # (value, parameter name) for the tensors a block call passes in
    # the block's number parameters and the dims its typed tensor parameters bound, by name, in order:
    # what generated code may make constructor arguments of a class several instances share
    sizes: tuple[tuple[str, int | float], ...] = ()
    size_dims: tuple[str, ...] = ()  # which of `sizes` are dims (a number parameter is preferred where both fit)


def param_key(node: "Node", param: str) -> str:
    """A parameter's state-dict key: `<node key>.<param>`, or just `<node key>` for a value that is
    itself a parameter (`cls = parameter([1, 1, d])` is keyed `cls`), whose ParamSpec is named "".
    The node key is hierarchical: `layer1.0.conv1` for `conv1` in the first iteration of `layer1`."""
    return f"{node.key}.{param}" if param else node.key


def attribute_name(name: str) -> bool:
    """Whether generated code can spell a layer named `name` as `self.<name>` (else `self["<name>"]`)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def identifier_base(hint: str) -> str:
    """`hint` made a Python identifier that generated code can use for a value or a layer."""
    base = hint if _WORD.fullmatch(hint) else "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "v"
    if base[0].isdigit():
        base = "v_" + base
    elif base[0] == "_":  # generated modules keep their own helpers (`_fused`, `_constrain`) under `_` names
        base = "v" + base
    return base + "_" if base in RESERVED else base


class Exact(str):
    """A name the spec gave with `as` (`conv2d(...) as "0"`): taken as it is, not made an identifier.
    Generated code reaches such a layer as `self["0"]` (its class is then an nn.ModuleDict)."""


class _Names:
    """Names taken in one namespace, handing out `base`, `base_1`, `base_2`, ... in O(1) each."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self._suffix: dict[str, int] = {}

    def take(self, hint: str) -> str:
        if isinstance(hint, Exact):  # the spec checked it is free (`as` names one layer per scope)
            self.taken.add(str(hint))
            return str(hint)
        base = identifier_base(hint)
        name, i = base, self._suffix.get(base, 1)
        while name in self.taken:
            name = f"{base}_{i}"
            i += 1
        self._suffix[base] = i
        self.taken.add(name)
        return name


@dataclass
class Node:
    name: str
    op: str
    attrs: BaseModel
    span: Span | None
    arg_spans: list[Span | None] = field(default_factory=list)
    type: TensorType | None = None
    params: dict[str, ParamSpec] = field(default_factory=dict)
    group: str | None = None  # fusion group, set by the fusion passes (an anchor's group is its epilogue)
    call_sites: tuple[tuple[str, Span], ...] = ()  # (block, call span) for values inlined from blocks, outermost first
    scope: tuple[str, ...] = ()  # the module instance holding this value (see `Scope`); () is the model
    local: str = ""  # its name inside that instance: attribute and variable name in generated code

    @property
    def key(self) -> str:
        """The module path of the layer this node is, as in torch's state dict: `layer1.0.conv1`."""
        return ".".join(self.scope + (self.local,))


def explicit_attrs(attrs: BaseModel) -> dict[str, object]:
    """The attributes that differ from their defaults (what a reader needs to see)."""
    out = {}
    for key, info in type(attrs).model_fields.items():
        value = getattr(attrs, key)
        if info.is_required() or value != info.default:
            out[key] = value
    return out


def _show(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, (str, float)) else str(value)


class Graph:
    """One model, as a DAG of named values."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nx = nx.MultiDiGraph()
        self.inputs: list[str] = []
        self.outputs: dict[str, str] = {}  # output name -> value name
        self.output_spans: dict[str, Span | None] = {}
        self.constants: dict[str, object] = {}  # the model's compile-time parameters
        self.properties: set[str] = set()  # what passes have ensured
        self.source_path: str | None = None  # the spec file, for headers of generated code
        self.base_name: str | None = None  # for a compressed model: the model it compresses
        self.plan: list = []  # for a compressed model: what each stage did to each layer (transforms.LayerPlan)
        self._order = 0
        self._suffix: dict[str, int] = {}  # base name -> the next numbered suffix `fresh_name` tries
        self.scopes: dict[tuple[str, ...], Scope] = {}  # module instances by path (see `Scope`)
        self.ties: list = []  # ast.Tie statements: parameters shared under two keys (see specc/ties.py)
        self.shards: list = []  # (scope, ast.Shard): tensor-parallel styles of layers (see specc/parallel.py)
        self._locals: dict[tuple[str, ...], _Names] = {}  # each scope's taken local names
        self.max_nodes = limits.value("nodes")

    # ---------------------------------------------------------------- building
    def fresh_name(self, hint: str) -> str:
        """`hint` made an identifier, numbered `_1`, `_2`, ... if taken: the first free one. The next
        number to try is kept per base, so n values with one hint cost O(n), not O(n^2). Every name
        below it is taken (nodes are not renamed, and `remove_node` forgets the numbers), so the
        names are exactly those of trying from 1."""
        base = identifier_base(hint)
        name, i = base, self._suffix.get(base, 1)
        if name in self.nx:
            name = f"{base}_{i}"
            while name in self.nx:
                i += 1
                name = f"{base}_{i}"
            self._suffix[base] = i + 1
        return name

    def names_in(self, scope: tuple[str, ...]) -> "_Names":
        """The local names taken in a scope: its values' and its child scopes' (they share the module's
        attributes, `self.conv1` and `self.layer1`)."""
        return self._locals.setdefault(scope, _Names())

    def add_scope(self, parent: tuple[str, ...], hint: str, scope: Scope) -> tuple[str, ...]:
        """A child scope of `parent` named after `hint` (made unique there); returns its path. The
        children of a `list` scope are named by their index instead (see `add_item`)."""
        path = parent + (self.names_in(parent).take(hint),)
        self.scopes[path] = scope
        return path

    def add_item(self, parent: tuple[str, ...], index: int, scope: Scope) -> tuple[str, ...]:
        """Iteration `index` of the `list` scope `parent`."""
        path = parent + (str(index),)
        self.scopes[path] = scope
        return path

    def add_node(self, op: str, operands: list[str], attrs: BaseModel, span: Span | None,
                 name_hint: str, arg_spans: list[Span | None] | None = None,
                 call_sites: tuple[tuple[str, Span], ...] = (), scope: tuple[str, ...] = ()) -> str:
        if len(self.nx) >= self.max_nodes:  # checked per node: inlined blocks can double the graph at each level
            raise limits.exceeded("nodes", f"more than {self.max_nodes:,}", span, "this model")
        local = self.names_in(scope).take(name_hint)
        name = self.fresh_name("_".join(scope + (local,)))
        node = Node(name, op, attrs, span, list(arg_spans or [None] * len(operands)), call_sites=call_sites,
                    scope=scope, local=local)
        # operands are kept in order on the node as well as as edges: passes read them constantly
        self.nx.add_node(name, node=node, order=self._order, operands=tuple(operands))
        self._order += 1
        for index, src in enumerate(operands):
            self.nx.add_edge(src, name, key=index)
        return name

    def remove_node(self, name: str) -> None:
        self.nx.remove_node(name)
        self._suffix.clear()  # its name is free again: `fresh_name` searches from 1 once more

    # ---------------------------------------------------------------- querying
    def node(self, name: str) -> Node:
        return self.nx.nodes[name]["node"]

    def operands(self, name: str) -> list[str]:
        return list(self.nx.nodes[name]["operands"])

    def users(self, name: str) -> list[str]:
        return sorted(set(self.nx.successors(name)), key=lambda n: self.nx.nodes[n]["order"])

    def topo_order(self) -> list[str]:
        """A deterministic topological order: ties broken by creation order."""
        order = nx.get_node_attributes(self.nx, "order")
        return list(nx.lexicographical_topological_sort(self.nx, key=lambda n: order[n]))

    def nodes(self) -> Iterator[Node]:
        for name in self.topo_order():
            yield self.node(name)

    def dump(self) -> str:
        """A readable listing, one value per line, like MLIR's generic form."""
        lines = [f"graph {self.name}({', '.join(self.inputs)}) {{"]
        for node in self.nodes():
            operands = ", ".join("%" + o for o in self.operands(node.name))
            attrs = ", ".join(f"{k}={_show(v)}" for k, v in explicit_attrs(node.attrs).items())
            args = ", ".join(p for p in (operands, attrs) if p)
            ty = f" : {node.type}" if node.type else ""
            extra = f"  group={node.group}" if node.group else ""
            if node.group and node.op in EPILOGUE_ANCHORS:
                extra += " (anchor)"
            params = ""
            if node.params:
                params = "  params{" + ", ".join(f"{param_key(node, k)}: {list(p.shape)}"
                                                 for k, p in node.params.items()) + "}"
            where = f"  // {node.span.source.path.split('/')[-1]}:{node.span.line}" if node.span else ""
            lines.append(f"  %{node.name} = {node.op}({args}){ty}{params}{extra}{where}")
        outs = ", ".join(f"{k}=%{v}" for k, v in self.outputs.items())
        lines.append(f"  return {outs}")
        lines.append("}")
        for node in self.nodes():
            details = node.attrs.details() if hasattr(node.attrs, "details") else ""
            if details:
                lines.append(f"%{node.name}: " + details.replace("\n", "\n  "))
        return "\n".join(lines)
