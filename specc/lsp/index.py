"""Names in a spec: where each is declared and used, found from the syntax tree.

The syntax tree says what every name is (a value, a parameter, a symbolic dim,
a called op or block, a keyword argument); the chunk's lexemes give the exact
position of the few names the tree keeps only as strings (assignment targets,
input names, column names, parameter types). Positions stay chunk-relative
(`Span`s into the chunk's `SourceFile`), so an index is built once per chunk
text and reused wherever the chunk moves.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterator

from .. import ast
from ..diagnostics import Span
from ..fmt import Lexeme
from .analysis import Chunk

BUILTINS = ("true", "false")  # the lowering's compile-time constants


@dataclass(eq=False)
class Occurrence:
    """One name at one place.

    `kind`: "param", "value", "dim" (a symbolic dimension), "builtin", "call" (of an op, a block or a
    configuration), "kwarg" (a keyword argument's name), "type" (a dtype or parameter type), "definition"
    (a model, block or compress name where it is declared), "base" (the model a `compress` compresses),
    "part" (`.name` after a value), "fact" (a layer fact in a `where`), "import".
    `symbol` identifies what the name means; every occurrence of one symbol is renamed together:
    ("local", definition, name) for values, parameters and dims of a definition (a keyword argument
    of a call to block B is ("local", B, name), the parameter it sets), ("def", name) for models and
    blocks where declared and where called. `target` is the declaration a use refers to.
    """

    span: Span
    name: str
    kind: str
    symbol: tuple | None = None
    decl: bool = False
    definition: ast.Definition | ast.CompressDef | None = None
    stmt: int = -1  # index of the statement in its definition's body; -1 for the header
    target: "Occurrence | None" = None
    node: Any = None  # the syntax node: the Call for calls and keyword args, the statement for declarations,
    # the Attribute for parts
    # for a configuration call (`activation=prox_softmax(groups=...)` in a call of op `fixed_point`) and its
    # keyword arguments: the (call, keyword) pairs from the op down to it, (("fixed_point", "activation"),)
    config: tuple[tuple[str, str], ...] = ()


def _name_span(anchor: Span, name: str) -> Span:
    return Span(anchor.source, anchor.line, anchor.col, anchor.line, anchor.col + len(name))


def _lexeme_span(chunk: Chunk, lexeme: Lexeme) -> Span:
    return Span(chunk.source, lexeme.line, lexeme.col, lexeme.line, lexeme.col + len(lexeme.text))


class _Builder:
    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.positions = [(t.line, t.col) for t in chunk.tokens]
        self.out: list[Occurrence] = []
        self.defn: ast.Definition | ast.CompressDef | None = None
        self.bindings: dict[str, list[Occurrence]] = {}
        self.indices: dict[str, Occurrence] = {}  # the indices of the repeats around the expression being walked
        self.stmt = -1

    def lexemes(self, span: Span) -> list[Lexeme]:
        """The significant lexemes inside a span."""
        tokens = self.chunk.tokens
        lo = bisect.bisect_left(self.positions, (span.line, span.col))
        hi = bisect.bisect_left(self.positions, (span.end_line, span.end_col))
        return [t for t in tokens[lo:hi] if t.type not in ("WS", "_NL", "COMMENT")]

    def add(self, span: Span, name: str, kind: str, symbol: tuple | None = None, decl: bool = False,
            node: Any = None) -> Occurrence:
        occ = Occurrence(span, name, kind, symbol, decl, self.defn, self.stmt, None, node)
        self.out.append(occ)
        return occ

    # ------------------------------------------------------------- definitions
    def definition(self, d: ast.Definition) -> None:
        self.defn, self.bindings, self.stmt = d, {}, -1
        self.add(d.name_span, d.name, "definition", ("def", d.name), True, d)
        for p in d.params:
            self.declare(_name_span(p.span, p.name), p.name, "param", p)
            if p.type is not None:
                lexemes = self.lexemes(p.span)
                for i, t in enumerate(lexemes[:-1]):
                    if t.type == "COLON":
                        self.add(_lexeme_span(self.chunk, lexemes[i + 1]), p.type, "type")
                        break
            for dim in p.dims or []:  # `x: f32[N, width]` binds its dims (a rename must see them taken)
                self.expr(dim)
            if p.default is not None:
                self.expr(p.default)
            self.choice(p)
        for self.stmt, s in enumerate(d.body):
            self.statement(s)

    def choice(self, p: ast.Param) -> None:
        """A choice's values (an op's or a block's name is a use of that op or block, `act: op in {relu}`),
        a distribution's bounds, and its `where` condition."""
        c = p.choice
        if c is not None:
            if c.dist is not None:
                for a in c.dist.args:
                    self.expr(a)
            for item in c.items:
                if p.type in ("op", "block") and isinstance(item, ast.Name):
                    self.add(item.span, item.id, "call", ("def", item.id))
                else:
                    self.expr(item)
            for bound in (c.low, c.high):
                if bound is not None:
                    self.expr(bound)
        if p.where is not None:
            self.expr(p.where)

    def declare(self, span: Span, name: str, kind: str, node: Any) -> None:
        assert self.defn is not None
        occ = self.add(span, name, kind, ("local", self.defn.name, name), True, node)
        self.bindings.setdefault(name, []).append(occ)

    def statement(self, s: ast.Stmt) -> None:
        if isinstance(s, ast.Input):
            head = self.lexemes(s.span)[1:2]  # after `input`
            if head:
                self.declare(_lexeme_span(self.chunk, head[0]), s.name, "value", s)
            self.add(s.dtype_span, s.dtype, "type")
            for d in s.dims:
                self.expr(d)
        elif isinstance(s, (ast.Assign, ast.Output, ast.Columns)):
            value = s.value
            if value is not None:
                self.expr(value)  # uses on the right refer to earlier bindings
            names = s.targets if isinstance(s, ast.Assign) else s.names
            head = self.lexemes(Span(s.span.source, s.span.line, s.span.col, *_end_of_head(s)))
            found = [t for t in head if t.type not in ("OUTPUT", "COLUMNS", "COMMA", "LPAR", "RPAR", "EQUAL")]
            for name, lexeme in zip(names, found):
                span = _lexeme_span(self.chunk, lexeme)
                if value is None:  # `output h`: names an existing value
                    self.use(span, name)
                else:
                    self.declare(span, name, "value", s)
        elif isinstance(s, ast.Return):
            for v in s.values:
                self.expr(v)
        else:
            self.walk(s)

    # ------------------------------------------------------------- expressions
    def use(self, span: Span, name: str) -> None:
        assert self.defn is not None
        if name in self.indices:  # a repeat's index, inside its body
            self.add(span, name, "value", ("local", self.defn.name, name)).target = self.indices[name]
            return
        earlier = [b for b in self.bindings.get(name, []) if b.stmt < self.stmt or b.kind == "param"]
        if name in BUILTINS and not earlier:
            self.add(span, name, "builtin")
            return
        target = earlier[-1] if earlier else None
        kind = target.kind if target is not None else ("value" if name in self.bindings else "dim")
        self.add(span, name, kind, ("local", self.defn.name, name)).target = target

    def expr(self, e: Any, config: tuple[tuple[str, str], ...] = ()) -> None:
        """Index an expression; `config` is set for a call in a keyword argument's value (see Occurrence)."""
        if isinstance(e, ast.Name):
            self.use(e.span, e.id)
        elif isinstance(e, ast.Call):
            bound = [b for b in self.bindings.get(e.func, []) if b.kind == "param"]
            if bound and getattr(bound[-1].node, "type", None) in ("op", "block"):
                self.use(e.func_span, e.func)  # `act(h)` with `act: op`: a use of the parameter
            else:
                self.add(e.func_span, e.func, "call", ("def", e.func), node=e).config = config
            for a in e.args:
                self.expr(a)
            for kw in e.kwargs:
                self.add(_name_span(kw.span, kw.name), kw.name, "kwarg", ("local", e.func, kw.name),
                         node=e).config = config
                self.expr(kw.value, config + ((e.func, kw.name),))
            for c in e.constraints or []:
                self.expr(c)
        elif isinstance(e, ast.ListExpr) and config:  # `state=[...]`, or a list of configurations
            for item in e.items:
                self.expr(item, config)
        elif isinstance(e, ast.Repeat) and e.index is not None:
            self.repeat(e)
        elif isinstance(e, ast.Attribute):
            self.expr(e.value)
            self.add(Span(e.span.source, e.span.end_line, e.span.end_col - len(e.name), e.span.end_line,
                          e.span.end_col), e.name, "part", self._part_symbol(e), node=e)
        else:
            self.walk(e)

    def _part_symbol(self, e: ast.Attribute) -> tuple | None:
        """The symbol of a part a name in the spec gives: `q.pixels` where `q = fixed_point(...,
        state=[pixels, ...])` names its part by the name `pixels` in that list, so renaming that name
        renames the part too (else `q.pixels` would name a part that no longer exists)."""
        if not isinstance(e.value, ast.Name) or self.defn is None:
            return None
        bound = [b for b in self.bindings.get(e.value.id, []) if b.stmt < self.stmt]
        stmt = bound[-1].node if bound else None
        call = getattr(stmt, "value", None)
        if not isinstance(call, ast.Call):
            return None
        state = next((kw.value for kw in call.kwargs if kw.name == "state"), None)
        if isinstance(state, ast.ListExpr) and any(isinstance(i, ast.Name) and i.id == e.name for i in state.items):
            return ("local", self.defn.name, e.name)
        return None

    def repeat(self, e: ast.Repeat) -> None:
        """`repeat i in N { body } (x)`: `i` is declared here and means the iteration inside the body
        only (so renaming it renames its uses there, and a rename to `i` elsewhere sees it taken)."""
        assert self.defn is not None
        self.expr(e.count)
        head = self.lexemes(e.span)[1:2]  # after `repeat`
        index = None
        if head and head[0].text == e.index:
            index = self.add(_lexeme_span(self.chunk, head[0]), e.index, "value", ("local", self.defn.name, e.index),
                             True, e)
        outer = self.indices.get(e.index)
        if index is not None:
            self.indices[e.index] = index
        try:
            self.expr(e.body)
        finally:
            if outer is None:
                self.indices.pop(e.index, None)
            else:
                self.indices[e.index] = outer
        for a in e.args:
            self.expr(a)
        for kw in e.kwargs:
            self.expr(kw.value)

    def walk(self, node: Any) -> None:
        for child in _children(node):
            self.expr(child)

    # ------------------------------------------------------------- the rest
    def compression(self, c: ast.CompressDef) -> None:
        self.defn, self.bindings, self.stmt = c, {}, -1
        self.add(c.name_span, c.name, "definition", ("def", c.name), True, c)
        head = self.lexemes(c.span)
        for i, t in enumerate(head[:-1]):
            if t.type == "EQUAL" and head[i + 1].type == "NAME":
                self.add(_lexeme_span(self.chunk, head[i + 1]), c.base, "base", ("def", c.base))
                break
        for self.stmt, stage in enumerate(c.stages):
            call = stage.transform
            self.add(call.func_span, call.func, "call", None, node=call)
            for kw in call.kwargs:
                self.add(_name_span(kw.span, kw.name), kw.name, "kwarg", None, node=call)
            if stage.where is not None:
                for n in _names(stage.where):
                    self.add(n.span, n.id, "fact")


def _end_of_head(s: ast.Stmt) -> tuple[int, int]:
    """Where the names of an assignment-like statement end: at its value (or the statement's end)."""
    value = getattr(s, "value", None)
    if value is None:
        return s.span.end_line, s.span.end_col
    return value.span.line, value.span.col


def _children(node: Any) -> Iterator[Any]:
    """The sub-expressions of a syntax node (of a keyword argument: its value)."""
    values = node if isinstance(node, list) else [getattr(node, f.name) for f in fields(node)] \
        if is_dataclass(node) else []
    for value in values:
        if isinstance(value, ast.Keyword):
            yield value.value
        elif isinstance(value, ast.Expr):
            yield value
        elif isinstance(value, list):
            yield from _children(value)


def _names(node: Any) -> Iterator[ast.Name]:
    if isinstance(node, ast.Name):
        yield node
    for child in _children(node):
        yield from _names(child)


def occurrences(chunk: Chunk) -> list[Occurrence]:
    """Every name occurrence of a chunk, in source order (cached on the chunk)."""
    if chunk.occurrences is not None:
        return chunk.occurrences
    builder = _Builder(chunk)
    module = chunk.module
    if module is not None:
        for imp in module.imports:
            builder.add(imp.span, imp.path, "import", node=imp)
        items: list[Any] = sorted(module.definitions + module.compressions, key=lambda d: (d.span.line, d.span.col))
        for item in items:
            if isinstance(item, ast.Definition):
                builder.definition(item)
            else:
                builder.compression(item)
    result = sorted(builder.out, key=lambda o: (o.span.line, o.span.col))
    chunk.occurrences = result
    return result
