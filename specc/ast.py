"""The syntax tree of a .nnspec file: plain data, one class per construct.

The parser builds it; `specc.lower` turns a model of it into IR. Every node keeps
its `Span` so later stages can point at the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span


# ----------------------------------------------------------------- expressions
@dataclass
class Expr:
    span: Span


@dataclass
class Number(Expr):
    value: int | float


@dataclass
class String(Expr):
    value: str


@dataclass
class Ratio(Expr):
    """`N:M`, as in `sparsity(pattern=2:4)`."""

    n: int
    m: int


@dataclass
class Name(Expr):
    id: str


@dataclass
class Placeholder(Expr):
    """`_`: the value threaded through a `repeat` body."""


@dataclass
class EllipsisLit(Expr):
    """`...`: "let the compiler infer this" in an argument."""


@dataclass
class ListExpr(Expr):
    items: list[Expr]


@dataclass
class BinOp(Expr):
    op: str  # one of + - * / % **
    left: Expr
    right: Expr


@dataclass
class Neg(Expr):
    operand: Expr


@dataclass
class Compare(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Logic(Expr):
    """`a or b`, `a and b`, `not a`, `a -> b` (op "or", "and", "not", "->"): only in constraint blocks,
    between inequalities (see specc.constraints.disjunctive)."""

    op: str
    operands: list[Expr]


@dataclass
class Member(Expr):
    """`heating in {gas, oil}`: a literal of a constraint formula (specc.constraints.categorical)."""

    name: str
    categories: list[tuple[str, Span]]
    name_span: Span | None = None


@dataclass
class CategoricalDecl(Expr):
    """`heating = [gas, oil]` in a constraint block: a categorical variable over those one-hot columns."""

    name: str
    categories: list[tuple[str, Span]]


@dataclass
class Conditional(Expr):
    then: Expr
    cond: Expr
    otherwise: Expr


@dataclass
class Attribute(Expr):
    value: Expr
    name: str


@dataclass
class Named(Expr):
    """`call as name`: the layer (or block instance) `value` makes is named `name` in its module."""

    value: Expr
    name: str
    name_span: Span


@dataclass
class Slice(Expr):
    """`start:end:step` inside an index, each part optional (`:`, `1:`, `::2`)."""

    start: Expr | None
    end: Expr | None
    step: Expr | None


@dataclass
class Index(Expr):
    """`x[:, 0]`, `x[..., 1:]`: items are expressions (an int picks one element and removes the dim),
    `Slice`s, and at most one `EllipsisLit` (as many whole dims as needed)."""

    value: Expr
    items: list[Expr]


@dataclass
class Keyword:
    name: str
    value: Expr
    span: Span


@dataclass
class Call(Expr):
    func: str
    func_span: Span
    args: list[Expr]
    kwargs: list[Keyword]
    constraints: list[Expr] | None = None  # inequalities, or `Logic` formulas of them


@dataclass
class Repeat(Expr):
    """`repeat [i in] N { body } (x)`: `index` names the iteration (0, 1, ...) inside the body."""

    count: Expr
    body: Expr
    args: list[Expr]
    kwargs: list[Keyword]
    index: str | None = None


# ------------------------------------------------------------------ statements
@dataclass
class Stmt:
    span: Span


@dataclass
class Input(Stmt):
    name: str
    dtype: str
    dtype_span: Span
    dims: list[Expr]


@dataclass
class Assign(Stmt):
    targets: list[str]
    value: Expr


@dataclass
class Output(Stmt):
    """`output y = expr`, `output a, b = expr` (unpacking), or `output h` (an existing value)."""

    names: list[str]
    value: Expr | None


@dataclass
class Return(Stmt):
    values: list[Expr]


@dataclass
class Tie(Stmt):
    """`tie a.weight = b.weight`: parameter `target` is parameter `source` (keys as in the state dict)."""

    target: str
    target_span: Span
    source: str
    source_span: Span


@dataclass
class Shard(Stmt):
    """`shard q_proj, k_proj = colwise`: the tensor-parallel style of layers of this block or model, by their
    module paths relative to it (see specc/parallel.py)."""

    layers: list[tuple[str, Span]]
    style: str
    style_span: Span


@dataclass
class Columns(Stmt):
    names: list[str]
    value: Expr


# ----------------------------------------------------------------- definitions
@dataclass
class Choice:
    """The values a model parameter may take in a search space (specc/space.py): `in [64, 128]` (a list,
    kind "list") or `in {relu, gelu}` (kind "set"): those values; `in 2..12` (kind "range"): the ints from
    `low` to `high`, both included; `~ uniform(0.0, 0.3)` (kind "dist"): a continuous distribution, `dist`."""

    kind: str  # "list" | "set" | "range" | "dist"
    span: Span
    items: list[Expr] = field(default_factory=list)
    low: Expr | None = None
    high: Expr | None = None
    dist: Call | None = None


@dataclass
class Param:
    name: str
    type: str | None  # a parameter type (`int`), or a tensor's dtype (`f32`) when `dims` is given
    default: Expr | None
    span: Span
    dims: list[Expr] | None = None  # `x: f32[B, T, D]`: a typed tensor parameter of a block
    choice: Choice | None = None  # `width: int in [64, 128]`: a choice point of a search space
    where: Expr | None = None  # `... where width % heads == 0`: a condition on a choice's value


@dataclass
class Definition:
    """A `model` or a `block`: a parametrized body of statements."""

    kind: str  # "model" | "block"
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span
    name_span: Span


@dataclass
class Stage:
    """One line of a `compress` section: `transform(args) on selector ...`."""

    transform: Call
    selectors: list[Expr]
    excepts: list[Expr]
    where: Expr | None
    span: Span


@dataclass
class CompressDef:
    name: str
    base: str
    stages: list[Stage]
    span: Span
    name_span: Span
    base_span: Span | None = None  # the model it compresses, as written


@dataclass
class Import:
    path: str
    span: Span


@dataclass
class Module:
    """One parsed file."""

    path: str
    imports: list[Import] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    compressions: list[CompressDef] = field(default_factory=list)
