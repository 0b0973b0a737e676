"""Syntax tree -> IR: evaluate compile-time expressions and build the op graph.

A model's parameters (`hidden: int = 256`) are compile-time values; expressions
over them are evaluated here. Expressions over tensors become op nodes. Each op
call is bound to its `OpDef`: tensors to operands, everything else to the op's
pydantic attributes, so a wrong argument is reported at the argument.

Blocks are inlined at each call (their values named after the call site), and
`repeat N { body } (x)` unrolls its body N times, threading `_` through.
"""

from __future__ import annotations

import keyword
import math
import operator
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from pydantic import ValidationError

from . import ast, limits, ops
from .diagnostics import Note, Span, SpeccError, did_you_mean
from .ir import RESERVED, Exact, Graph, Scope, attribute_name
from .ops.operators import COMPARISONS
from .passes.infer_shapes import node_type
from .types import DTYPES, MAX_INT, Dim, Sym, check_dim, dim_add, dim_div, dim_mul


@dataclass(frozen=True)
class TensorRef:
    """A tensor value during lowering: the IR node that computes it."""

    node: str


@dataclass(frozen=True)
class Results:
    """Several values from one call (a block's `return a, b`): unpack them or pick one by name."""

    values: tuple[Any, ...]
    names: tuple[str | None, ...]


@dataclass(frozen=True)
class OpResults(TensorRef):
    """A call of an op with several results (`topk`: values, indices): a tensor, its first result, where
    one is expected (so `y = lstm(x, 64)` then `linear(y, 10)` reads the output sequence), and its
    results by name (`r.h`) or unpacked (`v, i = topk(x, 3)`)."""

    results: Results


def _results(value: Any) -> Any:
    """Several values (a block's `return a, b`, an op's results) as `Results`; anything else as is."""
    return value.results if isinstance(value, OpResults) else value


@dataclass(frozen=True)
class ColumnRef:
    """A named column of a tensor, from `columns (a, b) = t`: usable inside constraint blocks."""

    tensor: TensorRef
    index: int
    name: str


@dataclass(frozen=True)
class OpRef:
    """An op or a block as a compile-time value: a parameter declared `act: op` (or `mixer: block`) holds
    one, and `act(h)` calls it. A choice of a search space (`act: op in {relu, gelu}`) picks one."""

    name: str
    kind: str  # "op" | "block"

    def __repr__(self) -> str:
        return self.name


@dataclass
class Program:
    """Every definition visible to the file being compiled (its own and its imports')."""

    definitions: dict[str, ast.Definition]


_BUILTINS: dict[str, Any] = {"true": True, "false": False}
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "bool": (bool,), "str": (str,), "tensor": (TensorRef,),
    "op": (OpRef,), "block": (OpRef,),
}


def fits_type(type_name: str, value: Any) -> bool:
    """Whether `value` is a value of parameter type `type_name` (an int is a float too; a bool is no number)."""
    return isinstance(value, PARAM_TYPES[type_name]) and (type_name in ("bool", "tensor")
                                                           or not isinstance(value, bool))


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "%": operator.mod,
}
_TENSOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}


def _power(base: Any, exponent: Any, span: Span) -> Any:
    """`**` on compile-time numbers, as Python: an int to a non-negative int stays an int, anything
    else is a float. The size of an int result is bounded before computing it (`2 ** 10 ** 18` would
    never finish), and a result no target can hold is E0229 like any other."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        if abs(base) > 1 and exponent * math.log2(abs(base)) > 64:
            raise SpeccError("E0229", f"number out of range: {base} ** {exponent} does not fit an int (64-bit)", span,
                             help=f"ints must be at most {MAX_INT:,} in magnitude")
        return _in_range(base ** exponent, span)
    if base == 0 and exponent < 0:
        raise SpeccError("E0218", "division by zero: 0 to a negative power", span)
    try:
        value = math.pow(base, exponent)
    except OverflowError:
        raise SpeccError("E0229", f"number out of range: {base} ** {exponent} is too large for a float (64-bit)",
                         span) from None
    except ValueError:
        raise SpeccError("E0216", f"{base} ** {exponent} is not a real number (a negative base needs an int "
                                  "exponent)", span) from None
    return _in_range(value, span)


def _sqrt(value: Any, span: Span) -> float:
    if value < 0:
        raise SpeccError("E0216", f"sqrt({value}) is not a real number", span)
    return math.sqrt(value)


# Functions of compile-time numbers: used when every argument is a number, else the call is an op's
# (`max(x, 1)` on a tensor is the op `max`, when the registry has one). name -> (arity or None for 1+, function)
_NUMBER_FUNCTIONS: dict[str, tuple[int | None, Callable[[list[Any], Span], Any]]] = {
    "min": (None, lambda args, span: min(args)),
    "max": (None, lambda args, span: max(args)),
    "sqrt": (1, lambda args, span: _sqrt(args[0], span)),
}


def _divide(a: Any, b: Any) -> Any:
    """`/` on compile-time numbers: exact integer division stays an int."""
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and b != 0 and a % b == 0:
        return a // b
    return a / b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _in_range(value: Any, span: Span | None) -> Any:
    """A compile-time number, checked to be what the targets can hold: an int64 or a finite float64.
    `1e300 * 1e300` is inf and a product of two large ints needs 127 bits; neither can be written in
    generated code, so they are errors here rather than a broken artifact."""
    if isinstance(value, bool) or not _is_number(value):
        return value
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpeccError("E0229", f"number out of range: {value:,} does not fit an int (64-bit)", span,
                         help=f"ints must be at most {MAX_INT:,} in magnitude")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpeccError("E0229", f"number out of range: the result is {value}, not a finite float (64-bit)", span)
    return value


def _propositional(line: ast.Expr, labels: Any, columns: tuple[str, ...]) -> bool:
    """Whether a constraint line is made of bare labels (propositional) rather than inequalities; a line
    with both is E0717 at the first leaf that mixes them."""
    from .constraints.propositional import MIXED

    kinds: list[bool] = []
    stack = [line]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Logic):
            stack.extend(reversed(node.operands))
            continue
        label = isinstance(node, ast.Name) and node.id in columns and columns.index(node.id) in labels.columns
        if kinds and kinds[0] != label:
            raise SpeccError(MIXED, "a line is either propositional (labels joined by `and`, `or`, `not`, `->`) "
                                    "or made of inequalities, not both", node.span,
                             help="compare a label as a number on a line of its own (`a >= 0.5`), or use it bare "
                                  "with other labels")
        kinds.append(label)
    return bool(kinds) and kinds[0]


def _names_in(expr: Any) -> list[ast.Name]:
    """The names an expression reads (its `ast.Name` leaves), without recursion (a deep expression is fine)."""
    import dataclasses

    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            found.append(node)
        elif isinstance(node, list):
            stack.extend(node)
        elif dataclasses.is_dataclass(node) and isinstance(node, ast.Expr):
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "span")
    return found


def _source_text(span: Span) -> str:
    """The text a span covers, stripped (a constraint's, for messages; lines joined by a space)."""
    if span.end_line == span.line:
        return span.source.line(span.line)[span.col - 1:span.end_col - 1].strip()
    lines = [span.source.line(n) for n in range(span.line, span.end_line + 1)]
    lines[-1], lines[0] = lines[-1][:span.end_col - 1], lines[0][span.col - 1:]
    return " ".join(line.strip() for line in lines)


def _kind(v: Any) -> str:
    if isinstance(v, TensorRef):
        return "a tensor"
    if isinstance(v, Results):
        return f"{len(v.values)} values"
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, OpRef):
        return f"{v.kind} `{v.name}`"
    return {int: "an int", float: "a float", str: "a string", list: "a list"}.get(type(v), type(v).__name__)


class _Lowerer:
    def __init__(self, program: Program, model: ast.Definition) -> None:
        self.program = program
        self.defn = model
        self.graph = Graph(model.name)
        self.env: dict[str, Any] = {}
        self.scope: tuple[str, ...] = ()  # the module instance values are made in (see ir.Scope)
        self.placeholder: Any = None  # the value of `_` inside a `repeat` body
        # the blocks being inlined, outermost first (a tuple, shared by every node made inside them), and their names
        self.call_sites: tuple[tuple[str, Span], ...] = ()
        self.active: set[str] = set()
        self.input_names: set[str] = set()
        self.depth = 0  # compound expressions being evaluated, across inlined blocks
        self.max_depth = limits.value("nesting")
        # arguments already evaluated (by id of their syntax node), for a call that evaluated them before
        # knowing it is an op's: `max(a, b)` on numbers is computed here, on tensors it is the op `max`
        self.evaluated: dict[int, Any] = {}
        self.multi_result_nodes: list[str] = []  # nodes of ops with several results (see `_settle_results`)

    # ----------------------------------------------------------------- model
    def run(self, overrides: dict[str, Any]) -> Graph:
        known = {p.name for p in self.defn.params}
        for name in overrides:
            if name not in known:
                raise SpeccError("E0207", f"model `{self.defn.name}` has no parameter `{name}`", self.defn.name_span,
                                 help=did_you_mean(name, known) or f"its parameters: {', '.join(sorted(known)) or 'none'}")
        self._bind_params(self.defn, {k: (v, None) for k, v in overrides.items()})
        for p in self.defn.params:
            self.graph.constants[p.name] = self.env[p.name]
        for stmt in self.defn.body:
            self._statement(stmt)
        if not self.graph.outputs:
            raise SpeccError("E0206", f"model `{self.defn.name}` has no `output`", self.defn.name_span,
                             help="declare one with `output name = expr`")
        self._settle_results()
        return self.graph

    def _bind_params(self, defn: ast.Definition, given: dict[str, tuple[Any, Span | None]]) -> None:
        """Bind a definition's parameters in `self.env`: given values, else defaults (which may use earlier ones)."""
        for p in defn.params:
            if p.dims is not None:
                self._bind_tensor_param(defn, p, given)
                continue
            self._bind_param(defn, p, given)

    def _bind_param(self, defn: ast.Definition, p: ast.Param, given: dict[str, tuple[Any, Span | None]]) -> Any:
        """Bind one parameter (not a tensor) and return its value. A choice's value must be one of its
        domain and satisfy its `where`."""
        if p.type is not None and p.type not in PARAM_TYPES:
            raise SpeccError("E0208", f"unknown parameter type `{p.type}`", p.span,
                             help=f"use one of {', '.join(PARAM_TYPES)}")
        if p.name in given:
            value, span = given[p.name]
            _in_range(value, span or p.span)  # a `-p` value has not been through the parser's checks
            if p.type in ("op", "block"):
                value = self._callee(p.type, value, span or p.span)
        elif p.default is not None:
            span = p.default.span
            value = self._callee_arg(p.type, p.default) if p.type in ("op", "block") else self._expr(p.default, p.name)
        else:
            how = "pass it in the call" if defn.kind == "block" else f"give it a default, or pass `-p {p.name}=VALUE`"
            raise SpeccError("E0209", f"parameter `{p.name}` of {defn.kind} `{defn.name}` has no default and "
                                      "no value was given", p.span, help=how)
        if p.type is not None and not fits_type(p.type, value):
            raise SpeccError("E0210", f"parameter `{p.name}` is declared `{p.type}` but its value is "
                                      f"{_kind(value)}" + ("" if isinstance(value, TensorRef) else f" ({value!r})"),
                             span or p.span)
        value = float(value) if p.type == "float" else value
        if p.name in self.env and self.env[p.name] != value:  # bound by an earlier typed tensor's dims
            raise SpeccError("E0210", f"parameter `{p.name}` is {value!r}, but an earlier tensor parameter's "
                                      f"dim binds `{p.name}` to {self.env[p.name]}", span or p.span)
        if p.choice is not None:
            from . import space  # a choice's domain and `where` are a search space's rules

            space.check_in_domain(p, value, space.domain(p, self._const, self._callee_name), span)
            self.env[p.name] = value
            space.check_where(p, self._const, self.env)  # over this value and the earlier ones
        self.env[p.name] = value
        return value

    def _callee(self, kind: str, value: Any, span: Span) -> OpRef:
        """The value of a parameter declared `op` or `block`: an `OpRef` of that kind, or a name (from `-p`)."""
        if isinstance(value, OpRef) and value.kind == kind:
            return value
        if isinstance(value, str) and not isinstance(value, bool):
            return self._callee_name(kind, value, span)
        raise SpeccError("E0210", f"expected {'an op' if kind == 'op' else 'a block'}, got {_kind(value)}", span)

    def _callee_arg(self, kind: str, expr: ast.Expr) -> OpRef:
        """An argument or a default for a parameter declared `op` or `block`: a bare name is the op or
        block of that name (`act: op = gelu`), unless a value of that name is bound (`encoder(h, act)`)."""
        if isinstance(expr, ast.Name) and expr.id not in self.env:
            return self._callee_name(kind, expr.id, expr.span)
        return self._callee(kind, self._expr(expr, "arg"), expr.span)

    def _callee_name(self, kind: str, name: str, span: Span) -> OpRef:
        definition = self.program.definitions.get(name)
        if kind == "block" and definition is not None and definition.kind == "block":
            return OpRef(name, "block")
        opdef = ops.get(name)
        if kind == "op" and opdef is not None and opdef.name != "input" and definition is None:
            return OpRef(name, "op")
        blocks = [d.name for d in self.program.definitions.values() if d.kind == "block"]
        raise SpeccError("E0201", f"`{name}` is not {'an op' if kind == 'op' else 'a block'}", span,
                         help=did_you_mean(name, blocks) if kind == "block" else ops.suggest(name))

    def _bind_tensor_param(self, defn: ast.Definition, p: ast.Param, given: dict[str, tuple[Any, Span | None]]) -> None:
        """`x: f32[B, T, D]`: the argument must be a tensor of that dtype and rank; each dim name binds to the
        caller's dim (so the block's reshapes say `[B, T, heads, -1]` whatever the caller calls them), and
        each number or name already bound must equal it."""
        if defn.kind != "block":
            raise SpeccError("E0208", "only a block's parameters can be tensors; a model declares `input`s", p.span)
        if p.name not in given:
            raise SpeccError("E0209", f"tensor parameter `{p.name}` of block `{defn.name}` needs a value", p.span,
                             help="pass it in the call")
        value, span = given[p.name]
        if not isinstance(value, TensorRef):
            raise SpeccError("E0210", f"parameter `{p.name}` is declared a tensor but its value is {_kind(value)}",
                             span or p.span)
        t = self._infer(value.node)
        if p.type not in DTYPES:
            raise SpeccError("E0212", f"unknown dtype `{p.type}`", p.span,
                             help=did_you_mean(p.type, DTYPES) or f"use one of {', '.join(DTYPES)}")
        if t.dtype != p.type or t.rank != len(p.dims):
            raise SpeccError("E0210", f"parameter `{p.name}` of block `{defn.name}` is declared "
                                      f"{p.type}[{len(p.dims)} dims], but this is {t}", span or p.span)
        self.env[p.name] = value
        for expr, dim in zip(p.dims, t.shape):
            if isinstance(expr, ast.Name) and expr.id not in self.env and expr.id not in _BUILTINS:
                self.env[expr.id] = dim  # the caller's dim, a number or a symbol
                continue
            declared = self._dim(expr)
            if declared != dim:
                raise SpeccError("E0210", f"parameter `{p.name}` of block `{defn.name}` is declared with dim "
                                          f"{declared} where this tensor has {dim} ({t})", span or p.span)

    # ------------------------------------------------------------ statements
    def _statement(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, ast.Input):
            self._input(stmt)
        elif isinstance(stmt, ast.Assign):
            hint = stmt.targets[0]
            for name, value in zip(stmt.targets, self._unpack(stmt.targets, self._expr(stmt.value, hint), stmt)):
                self.env[name] = value
        elif isinstance(stmt, ast.Output):
            self._output(stmt)
        elif isinstance(stmt, ast.Columns):
            self._columns(stmt)
        elif isinstance(stmt, ast.Tie):
            if self.scope or self.call_sites:
                raise SpeccError("E0211", "`tie` belongs in the model (its keys are the model's state-dict keys)",
                                 stmt.span)
            self.graph.ties.append(stmt)
        elif isinstance(stmt, ast.Shard):
            self.graph.shards.append((self.scope, stmt))  # checked with the layers in place (specc/parallel.py)
        elif isinstance(stmt, ast.Return):
            raise SpeccError("E0211", "`return` belongs in a `block`; a model declares `output`s", stmt.span)
        else:
            raise SpeccError("E0901", f"`{type(stmt).__name__.lower()}` statements are not supported yet", stmt.span)

    def _input(self, stmt: ast.Input) -> None:
        if stmt.dtype not in DTYPES:
            raise SpeccError("E0212", f"unknown dtype `{stmt.dtype}`", stmt.dtype_span,
                             help=did_you_mean(stmt.dtype, DTYPES) or f"use one of {', '.join(DTYPES)}")
        if stmt.name in self.env:
            raise SpeccError("E0203", f"`{stmt.name}` is already defined", stmt.span)
        shape = tuple(self._dim(d) for d in stmt.dims)
        for dim, expr in zip(shape, stmt.dims):
            with limits.at(expr.span):
                check_dim(dim)
        attrs = ops.get("input").attrs(dtype=stmt.dtype, shape=shape)
        name = self._add("input", [], attrs, stmt.span, stmt.name)
        self.graph.inputs.append(name)
        self.input_names.add(stmt.name)
        self.env[stmt.name] = TensorRef(name)

    def _columns(self, stmt: ast.Columns) -> None:
        value = self._expr(stmt.value, "columns")
        if not isinstance(value, TensorRef):
            raise SpeccError("E0701", f"`columns` names the last dim of a tensor, got {_kind(value)}", stmt.value.span)
        t = self._infer(value.node)
        if t.rank == 0 or t.shape[-1] != len(stmt.names):
            raise SpeccError("E0701", f"{len(stmt.names)} column names for a tensor of type {t}: its last dim must be "
                                      f"{len(stmt.names)}", stmt.span)
        if len(set(stmt.names)) != len(stmt.names):
            raise SpeccError("E0701", "a column name is used twice", stmt.span)
        for i, name in enumerate(stmt.names):
            self.env[name] = ColumnRef(value, i, name)

    def _unpack(self, targets: list[str], value: Any, stmt: ast.Stmt) -> list[Any]:
        if len(targets) == 1:
            return [value]  # several results stay together; `r.name` picks one
        value = _results(value)
        if not isinstance(value, Results) or len(value.values) != len(targets):
            got = len(value.values) if isinstance(value, Results) else 1
            raise SpeccError("E0223", f"cannot unpack {got} value{'s' if got != 1 else ''} into {len(targets)} names",
                             stmt.span)
        return list(value.values)

    def _output(self, stmt: ast.Output) -> None:
        for name in stmt.names:
            if name in self.graph.outputs:
                raise SpeccError("E0203", f"output `{name}` is declared twice", stmt.span)
            if stmt.value is not None and name in self.input_names:
                raise SpeccError("E0203", f"output `{name}` has the name of an input; inputs and outputs "
                                          "need distinct names", stmt.span)
        if stmt.value is None:
            values = [self._lookup(name, stmt.span) for name in stmt.names]
        else:
            values = self._unpack(stmt.names, self._expr(stmt.value, stmt.names[0]), stmt)
        for name, value in zip(stmt.names, values):
            if not isinstance(value, TensorRef):
                raise SpeccError("E0213", f"output `{name}` must be a tensor, got {_kind(value)}", stmt.span)
            self.graph.outputs[name] = value.node
            self.graph.output_spans[name] = stmt.span
            self.env[name] = value

    # ----------------------------------------------------------- expressions
    def _lookup(self, name: str, span: Span) -> Any:
        if name in self.env:
            return self.env[name]
        if name in _BUILTINS:
            return _BUILTINS[name]
        raise SpeccError("E0202", f"undefined name `{name}`", span,
                         help=did_you_mean(name, list(self.env) + list(_BUILTINS)))

    def _const(self, expr: ast.Expr) -> Any:
        value = self._expr(expr, "const")
        if isinstance(value, TensorRef):
            raise SpeccError("E0214", "expected a compile-time value here, got a tensor", expr.span)
        return value

    def _dim(self, expr: ast.Expr) -> Dim:
        """A shape dim: an int, or a symbolic expression over undeclared names."""
        if isinstance(expr, ast.Name) and expr.id not in self.env:
            return Sym.of(expr.id)
        if isinstance(expr, ast.BinOp) and expr.op in "+-*/":
            a, b = self._dim(expr.left), self._dim(expr.right)
            with limits.at(expr.span):
                if expr.op == "/":
                    out = dim_div(a, b)
                    if out is None:
                        raise SpeccError("E0215", f"{a} / {b} is not an exact division", expr.span)
                else:
                    out = dim_mul(a, b) if expr.op == "*" else dim_add(a, b, 1 if expr.op == "+" else -1)
            return out
        value = self._const(expr)
        if isinstance(value, Sym):  # a dim bound by a typed tensor parameter
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpeccError("E0215", f"a dim must be a non-negative int or a symbol, got {value!r}", expr.span)
        return value

    def _expr(self, expr: ast.Expr, hint: str) -> Any:
        if self.evaluated and id(expr) in self.evaluated:
            return self.evaluated.pop(id(expr))
        if isinstance(expr, ast.Number):
            return expr.value
        if isinstance(expr, ast.String):
            return expr.value
        if isinstance(expr, ast.Name):
            return self._lookup(expr.id, expr.span)
        if isinstance(expr, ast.Ratio):
            return (expr.n, expr.m)
        if isinstance(expr, ast.Placeholder):
            if self.placeholder is None:
                raise SpeccError("E0224", "`_` is only defined inside a `repeat` body", expr.span)
            return self.placeholder
        if isinstance(expr, ast.EllipsisLit):
            return ...  # "let the op infer this"; only op attributes accept it
        # A compound expression: one level deeper, counted across inlined blocks, which the parser
        # cannot see (a chain of blocks each calling the next nests as deep as it is long).
        self.depth += 1
        if self.depth > self.max_depth:
            raise limits.exceeded("nesting", self.depth, expr.span, "this expression, with the blocks it is "
                                                                     "inlined from,")
        try:
            return self._compound(expr, hint)
        finally:
            self.depth -= 1

    def _compound(self, expr: ast.Expr, hint: str) -> Any:
        if isinstance(expr, ast.ListExpr):
            return [self._list_item(item) for item in expr.items]
        if isinstance(expr, ast.Neg):
            value = self._expr(expr.operand, _child_hint(hint, expr.operand))
            if isinstance(value, TensorRef):
                return TensorRef(self._add("neg", [value.node], ops.get("neg").attrs(), expr.span, hint,
                                                     [expr.operand.span], self.call_sites))
            if not _is_number(value):
                raise SpeccError("E0216", f"cannot negate {_kind(value)}", expr.span)
            return _in_range(-value, expr.span)
        if isinstance(expr, ast.BinOp):
            return self._binop(expr, hint)
        if isinstance(expr, ast.Conditional):
            cond = self._const(expr.cond)
            if not isinstance(cond, bool):
                raise SpeccError("E0217", f"a condition must be a bool, got {_kind(cond)}", expr.cond.span)
            return self._expr(expr.then if cond else expr.otherwise, hint)
        if isinstance(expr, ast.Compare):
            return self._compare(expr, hint)
        if isinstance(expr, ast.Index):
            return self._index(expr, hint)
        if isinstance(expr, ast.Call):
            callee = self.env.get(expr.func)
            if isinstance(callee, OpRef):  # `act(h)` with `act: op`: a call of the op (or block) it holds
                expr = replace(expr, func=callee.name)
            if expr.func in _NUMBER_FUNCTIONS and not expr.kwargs and expr.constraints is None \
                    and expr.func not in self.program.definitions:
                return self._number_call(expr, hint)
            if expr.func == "where" and expr.constraints is None:
                return self._where(expr, hint)
            if expr.func in self.program.definitions and ops.get(expr.func) is None:
                return self._call_block(expr, hint)
            if expr.func == "split":
                return self._split(expr, hint)
            if expr.constraints is not None:
                return self._constrain(expr, hint)
            return self._call(expr, hint)
        if isinstance(expr, ast.Repeat):
            return self._repeat(expr, hint)
        if isinstance(expr, ast.Named):
            return self._named(expr)
        assert isinstance(expr, ast.Attribute), expr
        return self._attribute(expr, hint)

    def _number_call(self, call: ast.Call, hint: str) -> Any:
        """`min(a, b)`, `max(a, b, c)`, `sqrt(d)` on compile-time numbers; when an argument is not a number
        the call is the op's of that name, which reuses the values already computed rather than build them twice."""
        arity, function = _NUMBER_FUNCTIONS[call.func]
        values = [self._expr(arg, _child_hint(hint, arg)) for arg in call.args]
        if values and all(_is_number(v) for v in values):
            if arity is not None and len(values) != arity:
                raise SpeccError("E0301", f"{call.func}() of numbers takes {arity} argument"
                                          f"{'s' if arity != 1 else ''}, got {len(values)}", call.span)
            return _in_range(function(values, call.span), call.span)
        if ops.get(call.func) is None:
            bad = next((a, v) for a, v in zip(call.args, values) if not _is_number(v)) if values else (call, None)
            raise SpeccError("E0216", f"{call.func}() takes compile-time numbers here, got {_kind(bad[1])}"
                             if values else f"{call.func}() needs at least one argument", bad[0].span)
        self.evaluated.update((id(arg), v) for arg, v in zip(call.args, values))
        try:
            return self._call(call, hint)
        finally:
            for arg in call.args:  # those the op did not read (a list of tensors is read item by item)
                self.evaluated.pop(id(arg), None)

    def _compare(self, expr: ast.Compare, hint: str) -> Any:
        """A comparison: of compile-time values it is a bool; with a tensor on either side, a bool tensor."""
        left = self._expr(expr.left, _child_hint(hint, expr.left))
        right = self._expr(expr.right, _child_hint(hint, expr.right))
        if not (isinstance(left, TensorRef) or isinstance(right, TensorRef)):
            if isinstance(left, (Results, ColumnRef)) or isinstance(right, (Results, ColumnRef)):
                raise SpeccError("E0214", f"cannot compare {_kind(left)} and {_kind(right)}", expr.span)
            try:
                return _COMPARE[expr.op](left, right)
            except TypeError:
                raise SpeccError("E0216", f"cannot compare {_kind(left)} and {_kind(right)} with `{expr.op}`",
                                 expr.span) from None
        opname = COMPARISONS[expr.op]
        operands, spans, attrs = [], [], {}
        for i, (value, side) in enumerate(((left, expr.left), (right, expr.right))):
            if isinstance(value, TensorRef):
                operands.append(value.node)
                spans.append(side.span)
            elif _is_number(value):
                attrs = {"number": value, "number_first": i == 0}
            else:
                raise SpeccError("E0216", f"cannot compare a tensor with {_kind(value)}", side.span)
        return TensorRef(self._add(opname, operands, ops.get(opname).attrs(**attrs), expr.span, hint,
                                             spans, self.call_sites))

    def _where(self, call: ast.Call, hint: str) -> TensorRef:
        """`where(cond, a, b)`: a or b may be a number, kept as written so an int tensor stays int."""
        slots = ("cond", "a", "b")
        args = dict(zip(slots, call.args))
        for kw in call.kwargs:
            if kw.name not in slots or kw.name in args:
                what = f"argument `{kw.name}` twice" if kw.name in args else f"no argument `{kw.name}`"
                raise SpeccError("E0301", f"where() got {what} (where(cond, a, b))", kw.span)
            args[kw.name] = kw.value
        if len(call.args) > 3 or len(args) != 3:
            raise SpeccError("E0301", "where() takes three arguments (cond, a, b), got "
                                      f"{len(call.args) + len(call.kwargs)}", call.span)
        operands, spans, attrs = [], [], {}
        for slot in slots:
            value = self._expr(args[slot], _child_hint(hint, args[slot]))
            if isinstance(value, TensorRef):
                operands.append(value.node)
                spans.append(args[slot].span)
            elif slot != "cond" and _is_number(value):
                attrs[f"{slot}_number"] = value
            else:
                what = "a bool tensor (a comparison)" if slot == "cond" else "a tensor or a number"
                raise SpeccError("E0304", f"argument `{slot}` of where() must be {what}, got {_kind(value)}",
                                 args[slot].span)
        if len(operands) == 1:
            raise SpeccError("E0304", "where() needs a tensor for `a` or `b`", call.span)
        return TensorRef(self._add("where", operands, ops.get("where").attrs(**attrs), call.span, hint,
                                             spans, self.call_sites))

    def _index(self, expr: ast.Index, hint: str) -> TensorRef:
        """`x[:, 0]`, `x[..., 1:]`: a `slice` per sliced dim and a `select` per int index, last dim first
        (so the dims still to do keep their numbers); `...` stands for as many whole dims as needed."""
        value = self._expr(expr.value, _child_hint(hint, expr.value))
        if not isinstance(value, TensorRef):
            raise SpeccError("E0216", f"only tensors can be indexed, got {_kind(value)}", expr.value.span)
        rank = self._infer(value.node).rank
        ellipses = [i for i, item in enumerate(expr.items) if isinstance(item, ast.EllipsisLit)]
        if len(ellipses) > 1:
            raise SpeccError("E0404", "an index has at most one `...`", expr.items[ellipses[1]].span)
        given = len(expr.items) - len(ellipses)
        if given > rank:
            raise SpeccError("E0404", f"{given} indices for a tensor of rank {rank}", expr.span)
        items: list[ast.Expr | None] = []
        for item in expr.items:
            items.extend([None] * (rank - given) if isinstance(item, ast.EllipsisLit) else [item])
        items += [None] * (rank - len(items))
        steps: list[tuple[str, dict[str, int | None]]] = []
        for dim in reversed(range(rank)):
            item = items[dim]
            if isinstance(item, ast.Slice):
                start, end, step = (self._index_int(part, "a slice bound")
                                    for part in (item.start, item.end, item.step))
                if step is not None and step <= 0:
                    raise SpeccError("E0404", f"a slice step must be positive, got {step}", item.step.span)
                if (start, end, step) != (None, None, None) and (start, end, step) != (None, None, 1):
                    steps.append(("slice", {"dim": dim, "start": start, "end": end, "step": step or 1}))
            elif item is not None:
                steps.append(("select", {"dim": dim, "index": self._index_int(item, "an index")}))
        node = value.node
        for i, (opname, attrs) in enumerate(steps):
            name = hint if i == len(steps) - 1 else f"{hint}_{opname}"
            node = self._add(opname, [node], ops.get(opname).attrs(**attrs), expr.span, name,
                                       [expr.value.span], self.call_sites)
        return TensorRef(node)

    def _index_int(self, expr: ast.Expr | None, what: str) -> int | None:
        if expr is None:
            return None
        value = self._const(expr)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpeccError("E0404", f"{what} must be an int, got {_kind(value)}", expr.span)
        return value

    def _attribute(self, expr: ast.Attribute, hint: str) -> Any:
        value = _results(self._expr(expr.value, hint))
        if isinstance(value, Results) and expr.name in value.names:
            return value.values[value.names.index(expr.name)]
        names = [n for n in value.names if n] if isinstance(value, Results) else []
        raise SpeccError("E0225", f"{_kind(value)} has no part named `{expr.name}`", expr.span,
                         help=did_you_mean(expr.name, names) or (f"its parts: {', '.join(names)}" if names else None))

    def _named(self, expr: ast.Named) -> Any:
        """`call as name`: the layer or block instance the call makes takes exactly this name in its scope."""
        name = expr.name
        if not isinstance(expr.value, (ast.Call, ast.Repeat)):
            raise SpeccError("E0230", "`as` names what a call makes (a layer, or a block instance); this is not "
                                      "a call", expr.value.span)
        if not (name.isidentifier() or (name.isdigit() and str(int(name)) == name)):
            raise SpeccError("E0231", f"`{name}` cannot name a layer: use a name (letters, digits, `_`) or an "
                                      "index (`0`, `1`, ...)", expr.name_span)
        if name in RESERVED and not keyword.iskeyword(name):
            raise SpeccError("E0231", f"`{name}` cannot name a layer: nn.Module uses that name", expr.name_span,
                             help="pick another name")
        if not attribute_name(name) and isinstance(expr.value, ast.Call) and expr.value.func in ("parameter", "arange"):
            raise SpeccError("E0231", f"`{name}` cannot name a {expr.value.func}: a tensor's name must be an "
                                      "identifier that is not a Python keyword", expr.name_span)
        if name in self.graph.names_in(self.scope).taken:
            raise SpeccError("E0231", f"`{name}` already names a value or layer here", expr.name_span,
                             self._taken_at(name), help="each name is one layer in its block (or model)")
        return self._expr(expr.value, Exact(name))

    def _taken_at(self, name: str) -> list[Note]:
        """Where `name` was taken in the current scope (a value, or a block instance), for an error note.
        Searched only when reporting, so it may look at the whole graph."""
        child = self.graph.scopes.get(self.scope + (name,))
        spans = [child.span] if child is not None and child.span is not None else []
        spans += [n.span for n in self.graph.nodes() if n.scope == self.scope and n.local == name and n.span]
        return [Note(f"`{name}` is taken here", spans[0])] if spans else []

    def _repeat(self, expr: ast.Repeat, hint: str) -> Any:
        count = self._const(expr.count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SpeccError("E0226", f"`repeat` needs a non-negative int count, got {count!r}", expr.count.span)
        if len(expr.args) != 1 or expr.kwargs:
            raise SpeccError("E0226", "`repeat N { ... } (x)` takes exactly one initial value", expr.span)
        limits.check("nodes", count, expr.count.span, "this `repeat`")  # before unrolling, not after
        value = self._expr(expr.args[0], _child_hint(hint, expr.args[0]))
        body = expr.body
        one_block = (isinstance(body, ast.Call) and body.constraints is None and body.func in self.program.definitions
                     and ops.get(body.func) is None)
        saved = (self.placeholder, self.scope)
        items = self.graph.add_scope(self.scope, hint, Scope("list", None, expr.span))
        had_index = expr.index in self.env if expr.index else False
        outer_index = self.env.get(expr.index) if expr.index else None
        try:
            for i in range(count):
                self.placeholder = value
                if expr.index:
                    self.env[expr.index] = i
                if one_block:  # each iteration is the block's instance: `layer1.0`, `layer1.1`, ...
                    value = self._call_block(body, "out", self.graph.add_item(items, i, Scope("block", None, None)))
                else:  # each iteration is an instance of the body, which the generated code makes a class
                    self.scope = self.graph.add_item(items, i, Scope("block", None, body.span, ((value.node, "x"),)
                                                                     if isinstance(value, TensorRef) else ()))
                    self.graph.names_in(self.scope).taken.add("x")
                    value = self._expr(body, "out")
                    self.scope = saved[1]
        finally:
            self.placeholder, self.scope = saved
            if expr.index and had_index:
                self.env[expr.index] = outer_index
            elif expr.index:
                self.env.pop(expr.index, None)
        return value

    def _split(self, call: ast.Call, hint: str) -> Results:
        """`split(x, sizes, dim=-1)`: consecutive slices of one dim; `sizes` is a list, or a count of equal parts."""
        args = dict(zip(("x", "sizes", "dim"), call.args)) | {kw.name: kw.value for kw in call.kwargs}
        unknown = set(args) - {"x", "sizes", "dim"}
        if unknown or "x" not in args or "sizes" not in args or len(call.args) > 3:
            raise SpeccError("E0301", "split() takes (x, sizes, dim=-1): sizes is a list of ints or a number of "
                                      "equal parts", call.span)
        x = self._expr(args["x"], _child_hint(hint, args["x"]))
        sizes = self._const(args["sizes"])
        dim = self._const(args["dim"]) if "dim" in args else -1
        if not isinstance(x, TensorRef):
            raise SpeccError("E0304", f"split() splits a tensor, got {_kind(x)}", args["x"].span)
        x_type = self._infer(x.node)
        if not isinstance(dim, int) or not -x_type.rank <= dim < x_type.rank:
            raise SpeccError("E0404", f"split(): dim={dim!r} is out of range for {x_type}", call.span)
        size = x_type.shape[dim]
        if not isinstance(size, int):
            raise SpeccError("E0401", f"split(): dim {dim} of {x_type} must be static", call.span)
        if isinstance(sizes, int) and not isinstance(sizes, bool):
            limits.check("nodes", sizes, args["sizes"].span, "this split()")  # a slice per part
            if sizes <= 0 or size % sizes:
                raise SpeccError("E0401", f"split(): {size} elements of dim {dim} do not split into {sizes} equal "
                                          "parts", args["sizes"].span)
            sizes = [size // sizes] * sizes
        if (not isinstance(sizes, list) or not sizes
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)):
            raise SpeccError("E0302", f"split(): sizes must be positive ints, got {sizes!r}", args["sizes"].span)
        if sum(sizes) != size:
            raise SpeccError("E0402", f"split(): sizes {sizes} add up to {sum(sizes)}, but dim {dim} of {x_type} "
                                      f"has {size}", args["sizes"].span)
        slice_attrs = ops.get("slice").attrs
        parts, start = [], 0
        for i, n in enumerate(sizes):
            attrs = slice_attrs(dim=dim, start=start, end=start + n)
            parts.append(TensorRef(self._add("slice", [x.node], attrs, call.span, f"{hint}_{i}",
                                                       [args["x"].span], self.call_sites)))
            start += n
        return Results(tuple(parts), (None,) * len(parts))

    def _constrain(self, call: ast.Call, hint: str) -> TensorRef:
        """`op(t, ...) { linear inequalities over t's columns }`: the block becomes the op's `constraints`."""
        if not call.args:
            raise SpeccError("E0303", f"{call.func}() needs the tensor whose columns it constrains", call.span)
        target = self._expr(call.args[0], _child_hint(hint, call.args[0]))
        columns = sorted((v for v in self.env.values() if isinstance(v, ColumnRef) and v.tensor == target),
                         key=lambda c: c.index)
        if not columns:
            raise SpeccError("E0701", "name the columns of this tensor first, e.g. `columns (a, b, c) = t`",
                             call.args[0].span)
        # the constraints reach the op as an attribute; the column names, for messages and the default order
        extra: dict[str, Any] = {"columns": tuple(c.name for c in columns)}
        lines = [c for c in call.constraints if not isinstance(c, ast.CategoricalDecl)]
        groups = self._categoricals(call.constraints, extra["columns"])
        labels = self._labels(call.constraints, extra["columns"])
        if labels is not None:  # lines of bare labels are propositional (specc.constraints.propositional)
            propositional = [c for c in lines if _propositional(c, labels, extra["columns"])]
            lines = [c for c in lines if c not in propositional]
            extra["labels"] = labels
            extra["propositions"] = tuple(self._proposition(c, labels, extra["columns"]) for c in propositional)
        if not groups and labels is None and all(isinstance(c, ast.Compare) for c in lines):
            extra["constraints"] = tuple(self._linear_constraint(c, target) for c in lines)
        else:  # `or`, `and`, `not`, `->`: clauses; linear constraints still, if every clause has one literal
            from .constraints.disjunctive import Formula, clauses_of

            formulas = tuple(Formula(clauses_of(c, lambda leaf: self._literal(leaf, target, groups, extra["columns"]),
                                                limits.value("constraints"), c.span), _source_text(c.span), c.span)
                             for c in lines)
            if not groups and labels is None and all(len(clause) == 1 for f in formulas for clause in f.clauses):
                extra["constraints"] = tuple(clause[0] for f in formulas for clause in f.clauses)
            else:
                extra["constraints"], extra["formulas"] = (), formulas
                extra["categoricals"] = tuple(groups.values())
        return self._call(call, hint, extra)

    def _categoricals(self, lines: list[ast.Expr], columns: tuple[str, ...]) -> dict[str, Any]:
        """The block's `name = [a, b]` lines: categorical variables (specc.constraints.categorical)."""
        from .constraints.categorical import declare

        groups: dict[str, Any] = {}
        for line in lines:
            if isinstance(line, ast.CategoricalDecl) and line.name not in ("probabilities", "logits"):
                groups[line.name] = declare(line.name, line.categories, columns, list(groups.values()), line.span)
        return groups

    def _labels(self, lines: list[ast.Expr], columns: tuple[str, ...]) -> Any:
        """`probabilities = [a, b]` / `logits = [a, b]`: the block's label columns, or None."""
        from .constraints.propositional import BAD_LABELS, Labels

        found = None
        for line in lines:
            if isinstance(line, ast.CategoricalDecl) and line.name in ("probabilities", "logits"):
                if found is not None:
                    raise SpeccError(BAD_LABELS, "the labels are declared twice (one `probabilities` or `logits` "
                                     "line a block)", line.span)
                picked: list[int] = []
                for name, span in line.categories:
                    if name not in columns or columns.index(name) in picked:
                        raise SpeccError(BAD_LABELS, f"unknown column `{name}` in `{line.name}`" if name not in columns
                                         else f"label `{name}` appears twice", span,
                                         help=f"the columns: {', '.join(columns)}")
                    picked.append(columns.index(name))
                found = Labels(line.name, tuple(picked), line.span)
        return found

    def _proposition(self, line: ast.Expr, labels: Any, columns: tuple[str, ...]) -> Any:
        """A line of bare labels as clauses over propositional atoms."""
        from .constraints.disjunctive import Formula, clauses_of
        from .constraints.propositional import atom

        def leaf(node: ast.Expr) -> Any:
            return atom(columns.index(node.id), labels, node.id, node.span)

        return Formula(clauses_of(line, leaf, limits.value("constraints"), line.span), _source_text(line.span),
                       line.span)

    def _literal(self, leaf: ast.Expr, target: TensorRef, groups: dict[str, Any], columns: tuple[str, ...]) -> Any:
        """A literal of a formula: an inequality, or a categorical one (`heating in {gas}`, `heating == gas`,
        `heating != gas`)."""
        from .constraints import categorical
        from .constraints.disjunctive import negated

        text = _source_text(leaf.span)
        if isinstance(leaf, ast.Member):
            if leaf.name not in groups:
                what = "a column" if leaf.name in columns else "not declared"
                raise SpeccError(categorical.NOT_CATEGORICAL, f"`{leaf.name}` is no categorical variable ({what}), so "
                                 "it takes no `in`", leaf.name_span or leaf.span,
                                 help="declare one on a line of the block first: `color = [red, green, blue]` "
                                      "(its categories are columns)")
            return categorical.membership(groups[leaf.name], leaf.categories, columns, text, leaf.span)
        if isinstance(leaf, ast.Compare):
            if isinstance(leaf.left, ast.Name) and leaf.left.id in groups and leaf.op in ("==", "!="):
                if not isinstance(leaf.right, ast.Name):
                    raise SpeccError("E0702", f"compare `{leaf.left.id}` with one of its categories (a name)",
                                     leaf.right.span)
                literal = categorical.membership(groups[leaf.left.id], [(leaf.right.id, leaf.right.span)],
                                                 columns, text, leaf.span)
                return negated(literal) if leaf.op == "!=" else literal
            for side in (leaf.left, leaf.right):
                for node in _names_in(side):
                    if node.id in groups:
                        raise SpeccError(categorical.CATEGORICAL_AS_NUMBER, f"`{node.id}` is a categorical "
                                         "variable, not a number", node.span,
                                         help=f"compare it with its categories: `{node.id} in {{...}}`, "
                                              f"`{node.id} == ...`, `{node.id} != ...`")
        return self._linear_constraint(leaf, target)

    def _linear_constraint(self, cmp: ast.Compare, target: TensorRef) -> Any:
        from fractions import Fraction

        from .constraints import LinearConstraint

        if not isinstance(cmp, ast.Compare):
            from .constraints.disjunctive import NOT_INEQUALITY

            raise SpeccError(NOT_INEQUALITY, "expected an inequality (<=, <, >=, >) here", cmp.span,
                             help="`or`, `and`, `not` and `->` join inequalities between linear expressions of "
                                  "the columns")
        if cmp.op not in ("<=", "<", ">=", ">"):
            raise SpeccError("E0702", f"constraints are inequalities (<=, <, >=, >), not `{cmp.op}`", cmp.span)
        left, right = self._linear(cmp.left, target), self._linear(cmp.right, target)
        sign = 1 if cmp.op in ("<=", "<") else -1  # a <= b  is  a - b <= 0;  a >= b  is  b - a <= 0
        coeffs: dict[int, Fraction] = {}
        for i, c in left[0].items():
            coeffs[i] = coeffs.get(i, Fraction(0)) + sign * c
        for i, c in right[0].items():
            coeffs[i] = coeffs.get(i, Fraction(0)) - sign * c
        coeffs = {i: c for i, c in coeffs.items() if c != 0}
        rhs = sign * (right[1] - left[1])
        text = _source_text(cmp.span)
        if not coeffs:
            raise SpeccError("E0702", f"constraint `{text}` mentions no column", cmp.span)
        return LinearConstraint(tuple(sorted(coeffs.items())), rhs, cmp.op in ("<", ">"), text, cmp.span)

    def _linear(self, expr: ast.Expr, target: TensorRef) -> tuple[dict[int, Any], Any]:
        """A linear expression over columns as ({column: coefficient}, constant), exact rationals."""
        from fractions import Fraction

        if isinstance(expr, ast.Name) and isinstance(self.env.get(expr.id), ColumnRef):
            col = self.env[expr.id]
            if col.tensor != target:
                raise SpeccError("E0703", f"column `{expr.id}` belongs to another tensor", expr.span)
            return {col.index: Fraction(1)}, Fraction(0)
        if isinstance(expr, ast.Neg):
            coeffs, const = self._linear(expr.operand, target)
            return {i: -c for i, c in coeffs.items()}, -const
        if isinstance(expr, ast.BinOp) and expr.op in "+-":
            (a, ca), (b, cb) = self._linear(expr.left, target), self._linear(expr.right, target)
            sign = 1 if expr.op == "+" else -1
            out = dict(a)
            for i, c in b.items():
                out[i] = out.get(i, Fraction(0)) + sign * c
            return out, ca + sign * cb
        if isinstance(expr, ast.BinOp) and expr.op in "*/":
            (a, ca), (b, cb) = self._linear(expr.left, target), self._linear(expr.right, target)
            if expr.op == "*" and (not a or not b):
                scale, (terms, const) = (ca, (b, cb)) if not a else (cb, (a, ca))
                return {i: c * scale for i, c in terms.items()}, const * scale
            if expr.op == "/" and not b and cb != 0:
                return {i: c / cb for i, c in a.items()}, ca / cb
            raise SpeccError("E0702", "constraints must be linear: multiply or divide columns only by numbers",
                             expr.span)
        value = self._const(expr)
        if not _is_number(value):
            raise SpeccError("E0703", f"expected a column or a number in a constraint, got {_kind(value)}", expr.span)
        return {}, Fraction(str(value)) if isinstance(value, float) else Fraction(value)

    def _infer(self, name: str) -> Any:
        """The type of a value while lowering (for builtins like split that depend on shapes). Its untyped
        operands are typed first, depth first with an explicit stack: a chain of layers is as deep as it is long."""
        stack = [name]
        while stack:
            node = self.graph.node(stack[-1])
            pending = [o for o in self.graph.operands(node.name) if self.graph.node(o).type is None]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if node.type is None:
                node.type = node_type(self.graph, node)
        return self.graph.node(name).type

    def _add(self, op: str, operands: list[str], attrs: Any, span: Span | None, hint: str,
             arg_spans: list[Span | None] | None = None, call_sites: tuple[tuple[str, Span], ...] = ()) -> str:
        """A node in the current scope, named after `hint` there (see `_child_hint`)."""
        return self.graph.add_node(op, operands, attrs, span, hint, arg_spans, call_sites, scope=self.scope)

    def _call_block(self, call: ast.Call, hint: str, path: tuple[str, ...] | None = None) -> Any:
        """Inline a block: bind its parameters, lower its body in a fresh scope, return its results.

        Its values live in a child scope of the current one, named after `hint` (or at `path`, for an
        iteration of `repeat`): generated code makes the call an instance of the block's module class."""
        block = self.program.definitions[call.func]
        if block.kind != "block":
            raise SpeccError("E0227", f"`{call.func}` is a model; only blocks can be called", call.func_span)
        if call.func in self.active:
            active = [name for name, _ in self.call_sites]
            chain = " -> ".join(active[active.index(call.func):] + [call.func])
            raise SpeccError("E0228", f"block `{call.func}` calls itself ({chain}); recursion is not allowed",
                             call.func_span)
        if call.constraints is not None:
            raise SpeccError("E0901", "a constraint block after a block call is not supported", call.span)
        names = [p.name for p in block.params]
        given: dict[str, tuple[Any, Span | None]] = {}
        if len(call.args) > len(names):
            raise SpeccError("E0301", f"block `{block.name}` takes {len(names)} arguments, got {len(call.args)}",
                             call.args[len(names)].span)
        kinds = {p.name: p.type for p in block.params if p.type in ("op", "block")}
        for name, arg in zip(names, call.args):
            given[name] = (self._callee_arg(kinds[name], arg) if name in kinds else
                           self._expr(arg, _child_hint(hint, arg)), arg.span)
        for kw in call.kwargs:
            if kw.name not in names:
                raise SpeccError("E0301", f"block `{block.name}` has no parameter `{kw.name}`", kw.span,
                                 help=did_you_mean(kw.name, names))
            if kw.name in given:
                raise SpeccError("E0301", f"block `{block.name}` got parameter `{kw.name}` twice", kw.span)
            given[kw.name] = (self._callee_arg(kinds[kw.name], kw.value) if kw.name in kinds else
                              self._expr(kw.value, _child_hint(hint, kw.value)), kw.span)

        saved = (self.env, self.scope, self.placeholder)
        arg_names = tuple((v.node, name) for name, (v, _) in given.items() if isinstance(v, TensorRef))
        scope = Scope("block", block.name, call.span, arg_names)
        if path is None:
            path = self.graph.add_scope(self.scope, hint, scope)
        else:
            self.graph.scopes[path] = scope
        for _, name in arg_names:  # its tensor parameters are its forward's arguments: no value inside takes their names
            self.graph.names_in(path).taken.add(name)
        self.env, self.scope, self.placeholder = {}, path, None
        self.call_sites += ((block.name, call.span),)
        self.active.add(block.name)
        try:
            self._bind_params(block, given)
            sizes: dict[str, Any] = {}  # number parameters and typed tensors' dims, in declaration order
            for p in block.params:
                names = [d.id for d in p.dims if isinstance(d, ast.Name)] if p.dims is not None else [p.name]
                sizes.update((name, self.env[name]) for name in names if _is_number(self.env.get(name)))
            dims = tuple(d.id for p in block.params for d in (p.dims or []) if isinstance(d, ast.Name))
            self.graph.scopes[path] = replace(self.graph.scopes[path], sizes=tuple(sizes.items()),
                                              size_dims=tuple(n for n in sizes if n in dims))
            return self._block_body(block, hint)
        except SpeccError as err:
            raise err.with_note(Note(f"in block `{block.name}`, called here", call.span)) from None
        finally:
            self.env, self.scope, self.placeholder = saved
            self.call_sites = self.call_sites[:-1]
            self.active.discard(block.name)

    def _block_body(self, block: ast.Definition, hint: str) -> Any:
        *body, last = block.body or [None]
        if not isinstance(last, ast.Return):
            raise SpeccError("E0222", f"block `{block.name}` must end with `return`", block.name_span)
        for stmt in body:
            if isinstance(stmt, (ast.Input, ast.Output, ast.Return)):
                what = {ast.Input: "`input`", ast.Output: "`output`", ast.Return: "an early `return`"}[type(stmt)]
                raise SpeccError("E0211", f"{what} is not allowed in a block (blocks take parameters and `return`)",
                                 stmt.span)
            self._statement(stmt)
        values = [self._expr(v, "out" if len(last.values) == 1 else f"out_{i}") for i, v in enumerate(last.values)]
        if len(values) == 1:
            return values[0]
        names = tuple(v.id if isinstance(v, ast.Name) else None for v in last.values)
        return Results(tuple(values), names)

    def _list_item(self, item: ast.Expr) -> Any:
        """List items may be symbolic dims (e.g. reshape targets like [B, -1])."""
        if isinstance(item, ast.Name) and item.id not in self.env and item.id not in _BUILTINS:
            return Sym.of(item.id)
        return self._expr(item, "item")

    def _binop(self, expr: ast.BinOp, hint: str) -> Any:
        left = self._expr(expr.left, _child_hint(hint, expr.left))
        right = self._expr(expr.right, _child_hint(hint, expr.right))
        if isinstance(left, TensorRef) or isinstance(right, TensorRef):
            if expr.op not in _TENSOR_OPS:
                raise SpeccError("E0216", f"`{expr.op}` is not defined on tensors", expr.span)
            return self._tensor_binop(expr.op, left, right, expr, hint)
        if not (_is_number(left) and _is_number(right)):
            raise SpeccError("E0216", f"cannot apply `{expr.op}` to {_kind(left)} and {_kind(right)}", expr.span)
        if expr.op in "/%" and right == 0:
            raise SpeccError("E0218", "division by zero", expr.right.span)
        if expr.op == "**":
            return _power(left, right, expr.span)
        return _in_range(_divide(left, right) if expr.op == "/" else _ARITH[expr.op](left, right), expr.span)

    def _tensor_binop(self, op: str, left: Any, right: Any, expr: ast.Expr, hint: str) -> TensorRef:
        spans = [getattr(expr, "left", expr).span, getattr(expr, "right", expr).span]
        operands, arg_spans, scalar, scalar_first = [], [], None, False
        for i, value in enumerate((left, right)):
            if isinstance(value, TensorRef):
                operands.append(value.node)
                arg_spans.append(spans[i])
            elif _is_number(value):
                scalar, scalar_first = float(value), i == 0
            else:
                raise SpeccError("E0216", f"cannot apply `{op}` to a tensor and {_kind(value)}", spans[i])
        opname = _TENSOR_OPS[op]
        attrs = ops.get(opname).attrs(scalar=scalar, scalar_first=scalar_first)
        return TensorRef(self._add(opname, operands, attrs, expr.span, hint, arg_spans,
                                             self.call_sites))

    def _call(self, call: ast.Call, hint: str, extra: dict[str, Any] | None = None) -> TensorRef:
        """Bind a call to its op: tensors to operands, the rest to attributes (plus `extra` ones)."""
        opdef = ops.get(call.func)
        if opdef is None or opdef.name == "input":
            raise SpeccError("E0201", f"unknown op `{call.func}`", call.func_span,
                             help=ops.suggest(call.func, self.program.definitions))
        if (call.constraints is not None) != ("constraints" in opdef.attrs.model_fields):
            raise SpeccError("E0704", f"{call.func}() " + ("takes no constraint block" if call.constraints is not None
                                                          else "needs a constraint block `{ ... }`"), call.span)
        fields = list(opdef.attrs.model_fields)
        bound: dict[str, tuple[Any, Span]] = {}
        slots = opdef.slots()
        for i, arg in enumerate(call.args):
            if i >= len(slots):
                raise SpeccError("E0301", f"{call.func}() takes at most {len(slots)} positional arguments "
                                          f"({opdef.signature()})", arg.span)
            bound[slots[i]] = (arg, arg.span)
        for kw in call.kwargs:
            if kw.name not in slots or kw.name == "scalar":
                raise SpeccError("E0301", f"{call.func}() has no argument `{kw.name}`", kw.span,
                                 help=did_you_mean(kw.name, slots) or f"signature: {opdef.signature()}")
            if kw.name in bound:
                raise SpeccError("E0301", f"{call.func}() got argument `{kw.name}` twice", kw.span)
            bound[kw.name] = (kw.value, kw.span)

        operands, arg_spans, attrs = [], [], {}
        for slot in opdef.operands:
            if slot not in bound and slot in opdef.optional:
                continue
            if slot not in bound:
                raise SpeccError("E0303", f"{call.func}() is missing its `{slot}` argument ({opdef.signature()})",
                                 call.span)
            arg, span = bound[slot]
            if opdef.variadic and slot == opdef.operands[-1]:
                items = arg.items if isinstance(arg, ast.ListExpr) else [arg]
                if not items:
                    raise SpeccError("E0304", f"`{slot}` of {call.func}() needs at least one tensor, got an empty list",
                                     span)
                for item in items:
                    value = self._expr(item, _child_hint(hint, item))
                    if not isinstance(value, TensorRef):
                        raise SpeccError("E0304", f"`{slot}` of {call.func}() must be a list of tensors, "
                                                  f"but this is {_kind(value)}", item.span)
                    operands.append(value.node)
                    arg_spans.append(item.span)
                continue
            value = self._expr(arg, _child_hint(hint, arg))
            if isinstance(value, TensorRef):
                operands.append(value.node)
                arg_spans.append(arg.span)
            elif opdef.scalar_operand and _is_number(value) and "scalar" not in attrs:
                attrs["scalar"], attrs["scalar_first"] = float(value), not operands
            else:
                raise SpeccError("E0304", f"argument `{slot}` of {call.func}() must be a tensor, got {_kind(value)}",
                                 span)
        for slot in fields:
            if slot in bound:
                arg, span = bound[slot]
                value = self._attr_value(arg, hint)
                if isinstance(value, TensorRef):
                    raise SpeccError("E0305", f"argument `{slot}` of {call.func}() must be a compile-time value, "
                                              "got a tensor", span)
                attrs[slot] = _column_names(value)
        attrs.update(opdef.given_operands(bound), **(extra or {}))
        try:
            validated = ops.build_attrs(opdef.attrs, attrs)
        except ValidationError as exc:
            raise _attr_error(call, opdef, exc, bound) from None
        result = TensorRef(self._add(opdef.name, operands, validated, call.span, hint, arg_spans,
                                               self.call_sites))
        if opdef.results:
            return self._op_results(opdef, result.node, call, hint)
        return self._parts(opdef, validated, result, bound, call, hint) if opdef.parts else result

    def _op_results(self, opdef: ops.OpDef, node: str, call: ast.Call, hint: str) -> OpResults:
        """A `result` node per result of an op that has several (see `OpDef.results`)."""
        result_attrs = ops.get("result").attrs
        refs = tuple(TensorRef(self._add("result", [node], result_attrs(index=i, name=name), call.span,
                                                   f"{hint}_{name}", [call.span], self.call_sites))
                     for i, name in enumerate(opdef.results))
        self.multi_result_nodes.append(node)
        return OpResults(refs[0].node, Results(refs, opdef.results))

    def _settle_results(self) -> None:
        """After lowering, each node of an op with several results becomes the first result, where no other
        result is used (generated code as before such ops had several), or else computes all its results,
        its `result` nodes picking them. Unused `result` nodes are left to dead-code elimination."""
        outputs = set(self.graph.outputs.values())
        for node in self.multi_result_nodes:
            picks = self.graph.users(node)
            used = [p for p in picks if p in outputs or self.graph.users(p)]
            if any(self.graph.node(p).attrs.index != 0 for p in used):  # type: ignore[attr-defined]
                record = self.graph.node(node)
                record.attrs = record.attrs.model_copy(update={"all_results": True})
                continue
            for pick in used:  # the first result: its users read the op's node instead
                self._replace_uses(pick, node)
            for pick in picks:
                self.graph.remove_node(pick)

    def _replace_uses(self, old: str, new: str) -> None:
        """Every use of value `old` (as an operand or an output) reads `new` instead."""
        g = self.graph.nx
        for user in self.graph.users(old):
            operands = tuple(new if o == old else o for o in g.nodes[user]["operands"])
            g.nodes[user]["operands"] = operands
            for index, o in enumerate(operands):
                if o == new:
                    g.add_edge(new, user, key=index)
        self.graph.outputs = {k: new if v == old else v for k, v in self.graph.outputs.items()}

    def _attr_value(self, arg: ast.Expr, hint: str) -> Any:
        """An attribute value; a call to a name that is no op or block is a configuration,
        `monotone(m=0.05)` -> {"kind": "monotone", "m": 0.05}, which the op's pydantic model validates.
        A call of an op without tensors, `activation=relu()`, is a configuration too."""
        if isinstance(arg, ast.Call) and (ops.get(arg.func) is None or not arg.args) \
                and arg.func not in self.program.definitions and arg.func != "split":
            if arg.args or arg.constraints is not None:
                raise SpeccError("E0306", f"configuration `{arg.func}(...)` takes keyword arguments only",
                                 (arg.args[0] if arg.args else arg).span)
            config: dict[str, Any] = {"kind": arg.func}
            for kw in arg.kwargs:
                if kw.name in config:
                    raise SpeccError("E0301", f"`{arg.func}` got `{kw.name}` twice", kw.span)
                config[kw.name] = self._attr_value(kw.value, hint)
            return config
        if isinstance(arg, ast.ListExpr):
            return [self._attr_value(item, hint) if isinstance(item, (ast.Call, ast.ListExpr))
                    else self._list_item(item) for item in arg.items]
        if isinstance(arg, ast.Name) and arg.id not in self.env and self._input_dim(arg.id):
            return Sym.of(arg.id)  # a model input's symbolic dim, `arange(T)`: read at run time
        return self._expr(arg, _child_hint(hint, arg))

    def _input_dim(self, name: str) -> bool:
        """Whether `name` is a symbolic dim of a declared model input."""
        symbol = Sym.of(name)
        return any(symbol in self.graph.node(i).attrs.shape for i in self.graph.inputs)

    def _parts(self, opdef: ops.OpDef, attrs: Any, result: TensorRef, bound: dict, call: ast.Call,
               hint: str) -> Results:
        """Ops whose output's last dim concatenates named parts (`fixed_point(state=[hidden, classes])`):
        one slice per part, named after the part's source expression, so `q.classes` works."""
        sizes = list(getattr(attrs, opdef.parts))
        source = bound[opdef.parts][0]
        items = source.items if isinstance(source, ast.ListExpr) else []
        names = [item.id if isinstance(item, ast.Name) else f"part{i}" for i, item in enumerate(items)]
        slices, start = [], 0
        slice_attrs = ops.get("slice").attrs
        for name, size in zip(names, sizes):
            node = self._add("slice", [result.node], slice_attrs(dim=-1, start=start, end=start + size),
                                       call.span, f"{hint}_{name}", [call.span], self.call_sites)
            slices.append(TensorRef(node))
            start += size
        return Results(tuple(slices), tuple(names))


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}


def _column_names(value: Any) -> Any:
    """Columns given as op attributes (e.g. `order=[age, income]`) reach the op as their names."""
    if isinstance(value, ColumnRef):
        return value.name
    if isinstance(value, list):
        return [_column_names(v) for v in value]
    return value


def _child_hint(hint: str, expr: ast.Expr) -> str:
    """Names for values nested in an assignment: the target and the op, so they stay short however deep:
    `h = relu(batchnorm(conv2d(x)))` gives `h`, `h_batchnorm` and `h_conv2d` (then `h_conv2d_1`, ...).
    A hint is `target.op`; `Graph.add_node` spells the dot `_`."""
    root = hint.split(".", 1)[0]
    if isinstance(expr, ast.Call):
        return f"{root}.{expr.func}"
    if isinstance(expr, ast.BinOp) and expr.op in _TENSOR_OPS:
        return f"{root}.{_TENSOR_OPS[expr.op]}"
    if isinstance(expr, ast.Compare):
        return f"{root}.{COMPARISONS[expr.op]}"
    if isinstance(expr, ast.Index):
        return f"{root}.index"
    return f"{root}.neg" if isinstance(expr, ast.Neg) else hint


def _attr_error(call: ast.Call, opdef: ops.OpDef, exc: ValidationError, bound: dict) -> SpeccError:
    """The first validation error at its argument. An op's validator may raise a
    `PydanticCustomError` whose type is an error code (`E0850`) and whose context names the
    offending setting (`{"at": "solver.alpha"}`); the error then points at that setting."""
    err = exc.errors()[0]
    path = [str(p) for p in err["loc"]]
    at = (err.get("ctx") or {}).get("at")
    if isinstance(at, str):
        path = at.split(".")
    field = path[0] if path else ""
    span = _setting_span(bound[field][0], path[1:]) or bound[field][1] if field in bound else call.span
    if err["type"] == "missing":
        return SpeccError("E0303", f"{call.func}() is missing its `{field}` argument ({opdef.signature()})", call.span)
    code = err["type"] if re.fullmatch(r"E\d{4}", str(err["type"])) else "E0302"
    what = f"`{field}`" if field else "arguments"  # a check across several arguments names no one field
    return SpeccError(code, f"invalid {what} for {call.func}(): {validation_message(err)}", span)


def _setting_span(arg: ast.Expr, path: list[str]) -> Span | None:
    """The span of a keyword inside a configuration, `m=1.5` in `weight=monotone(m=1.5)`, following
    `path` (the tags of pydantic's discriminated unions, which name the configuration, are skipped)."""
    span = None
    for name in path:
        if not isinstance(arg, ast.Call) or name == arg.func:
            continue
        kw = next((k for k in arg.kwargs if k.name == name), None)
        if kw is None:
            break
        arg, span = kw.value, kw.span
    return span


def validation_message(err: dict) -> str:
    """pydantic's message in the language's words: `2.5 should be a valid integer`."""
    message = str(err["msg"])
    for prefix in ("Input should", "Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):].lstrip()
            if prefix == "Input should":
                value = err.get("input")
                message = f"{'it' if value is None else _spec_text(value)} should {message}"
    return message


def _spec_text(value: Any) -> str:
    """A compile-time value as a spec writes it: `true`, `[1, 2]`, `monotone(m=0.5)`. Any value may
    reach a message, unhashable ones too: `layernorm(x, [1])` gives a list where a float belongs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_spec_text(v) for v in value) + "]"
    if isinstance(value, dict) and isinstance(value.get("kind"), str):  # a configuration, from `_attr_value`
        settings = ", ".join(f"{k}={_spec_text(v)}" for k, v in value.items() if k != "kind")
        return f"{value['kind']}({settings})"
    return repr(value)


def lower(program: Program, model: ast.Definition, overrides: dict[str, Any] | None = None) -> Graph:
    """Build the IR graph of one model, with its parameters bound and its blocks inlined."""
    if model.kind != "model":
        raise SpeccError("E0219", f"`{model.name}` is a block; compile a model", model.name_span)
    return _Lowerer(program, model).run(overrides or {})


def evaluate(expr: ast.Expr, env: dict[str, Any], context: ast.Definition) -> Any:
    """A compile-time expression over `env` (e.g. a compression `where` predicate over a layer's facts)."""
    lowerer = _Lowerer(Program({}), context)
    lowerer.env = dict(env)
    return lowerer._const(expr)


class ParamBinder:
    """Binds a model's parameters one at a time, by the lowering's own rules (types, defaults, `op` and
    `block` values, a choice's domain and `where`): `specc.space` walks a search space with it, so a point
    it counts as feasible binds exactly as `specc compile -p ...` binds it."""

    def __init__(self, program: Program, model: ast.Definition) -> None:
        self._lowerer = _Lowerer(program, model)

    def bind(self, env: dict[str, Any], p: ast.Param, value: Any = ...) -> Any:
        """Bind `p` in `env` (changed in place): `value`, or its default when `value` is `...`."""
        self._lowerer.env = env
        given = {} if value is ... else {p.name: (value, None)}
        return self._lowerer._bind_param(self._lowerer.defn, p, given)

    def evaluator(self, env: dict[str, Any]) -> Any:
        """A function that evaluates a compile-time expression over `env` (a located SpeccError if it cannot)."""
        self._lowerer.env = env
        return self._lowerer._const

    def callee(self, kind: str, name: str, span: Span) -> OpRef:
        """The op (`kind` "op") or block (`kind` "block") called `name`; E0201 if there is none."""
        return self._lowerer._callee_name(kind, name, span)
