"""Editor features computed from an `Analysis`: hover, completion, definition,
rename, document symbols and semantic tokens.

Functions take 0-based lines and code-point columns and return lsprotocol
values whose positions a `Positions` converted to the client's units (UTF-16
by default). None of them raises for a broken document: they answer from the
chunks that parse and from the last successful compile of each model.
"""

from __future__ import annotations

import re
import sys
import weakref
from dataclasses import dataclass
from functools import lru_cache
from math import prod
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from lsprotocol import types as lsp

from .. import ast, ops
from ..diagnostics import SourceFile, Span
from ..fmt import Lexeme, keywords, lex
from ..ir import Node
from ..lower import PARAM_TYPES  # the parameter types the lowering accepts
from ..parser import lark_parser, parse
from ..types import DTYPES
from . import analysis as analysis_module
from .analysis import Analysis, Chunk
from .index import BUILTINS, Occurrence, occurrences

TOKEN_TYPES = ["keyword", "type", "class", "function", "parameter", "variable", "property", "typeParameter",
               "number", "string", "comment", "operator"]
TOKEN_MODIFIERS = ["declaration", "defaultLibrary", "readonly"]
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "COMPARE", "EQUAL"})
_HIDDEN_ATTRS = frozenset({"scalar", "scalar_first"})  # set by the lowering from `a * 2`, never written


# ------------------------------------------------------------------ positions
class Positions:
    """Converts between code points (what Python indexes) and the client's position units."""

    def __init__(self, analysis: Analysis, uri: str, units: Callable[[str], int]) -> None:
        self.analysis = analysis
        self.uri = uri
        self.units = units
        self._lines: dict[str, list[str]] = {}
        self._prefix: dict[tuple[str, int], list[int]] = {}  # (path, line): units before each column

    def lines(self, path: str) -> list[str]:
        if path not in self._lines:
            parsed = self.analysis.files.get(path)
            self._lines[path] = parsed.text.split("\n") if parsed is not None else []
        return self._lines[path]

    def position(self, path: str, line: int, col: int) -> lsp.Position:
        return lsp.Position(line=max(line, 0), character=self.column(path, line, col))

    def column(self, path: str, line: int, col: int) -> int:
        """The client's column of code-point column `col` of a line. Counting the units of the text before
        it on every call made a line of n tokens cost n times its length (seconds for one 12 KB line);
        an ASCII line needs no counting (one unit per character in UTF-8, -16 and -32), and any other
        line is counted once, into a table of its prefixes' units."""
        lines = self.lines(path)
        text = lines[line] if 0 <= line < len(lines) else ""
        col = min(max(col, 0), len(text))
        if text.isascii():
            return col
        key = (path, line)
        prefix = self._prefix.get(key)
        if prefix is None:
            prefix = [0]
            for ch in text:
                prefix.append(prefix[-1] + self.units(ch))
            self._prefix[key] = prefix
        return prefix[col]

    def from_client(self, position: lsp.Position) -> tuple[int, int]:
        """(line, code-point column) of a client position in the document."""
        lines = self.lines(str(self.analysis.path))
        text = lines[position.line] if 0 <= position.line < len(lines) else ""
        used = col = 0
        while col < len(text) and used < position.character:
            used += self.units(text[col])
            col += 1
        return position.line, col

    def range(self, span: Span) -> tuple[str, lsp.Range] | None:
        """(uri, range) of a span, wherever its file is; None if it is in no file of the analysis."""
        where = self.analysis.locate(span)
        if where is None:
            return None
        path, line, col, end_line, end_col = where
        uri = self.uri if path == str(self.analysis.path) else Path(path).resolve().as_uri()
        return uri, lsp.Range(start=self.position(path, line, col), end=self.position(path, end_line, end_col))

    def local(self, span: Span) -> lsp.Range | None:
        """The range of a span in the document itself (None for spans elsewhere)."""
        hit = self.range(span)
        return hit[1] if hit is not None and hit[0] == self.uri else None

    def location(self, span: Span) -> lsp.Location | None:
        hit = self.range(span)
        return lsp.Location(uri=hit[0], range=hit[1]) if hit is not None else None


# ------------------------------------------------------------------ lookup
def _occurrence_at(analysis: Analysis, line: int, col: int) -> Occurrence | None:
    chunk, start = analysis.chunk_at(line)
    rel = line - start + 1
    for occ in occurrences(chunk):
        s = occ.span
        if s.line == rel and s.col - 1 <= col <= s.end_col - 1:
            return occ
    return None


def _all_occurrences(analysis: Analysis, imports: bool = False) -> Iterator[Occurrence]:
    """The document's occurrences (and with `imports`, those of every file it reads)."""
    for parsed in analysis.files.values() if imports else [analysis.root]:
        for chunk in parsed.chunks:
            yield from occurrences(chunk)


def _is_block_call(analysis: Analysis, name: str) -> bool:
    return name in analysis.definitions and ops.get(name) is None


def _declaration(analysis: Analysis, occ: Occurrence) -> tuple[Span, Any] | None:
    """Where the thing an occurrence names is declared: (span, syntax node)."""
    if occ.decl:
        return occ.span, occ.node
    if occ.target is not None:
        return occ.target.span, occ.target.node
    if occ.kind in ("call", "base") and _is_block_call(analysis, occ.name):
        d = analysis.definitions[occ.name]
        return d.name_span, d
    if occ.kind == "kwarg" and occ.symbol is not None and _is_block_call(analysis, occ.symbol[1]):
        block = analysis.definitions[occ.symbol[1]]
        for p in block.params:
            if p.name == occ.name:
                return Span(p.span.source, p.span.line, p.span.col, p.span.line, p.span.col + len(p.name)), p
    if occ.kind == "dim" and occ.symbol is not None:  # a symbolic dim: its first use
        first = next((o for o in _all_occurrences(analysis) if o.symbol == occ.symbol), None)
        return (first.span, None) if first is not None else None
    return None


# ------------------------------------------------------------------ definition
def definition(analysis: Analysis, pos: Positions, line: int, col: int) -> list[lsp.Location]:
    occ = _occurrence_at(analysis, line, col)
    if occ is None:
        return []
    if occ.kind == "import":
        target = (analysis.path.parent / occ.name).resolve()
        if not target.is_file():
            return []
        return [lsp.Location(uri=target.as_uri(), range=lsp.Range(start=lsp.Position(line=0, character=0),
                                                                  end=lsp.Position(line=0, character=0)))]
    decl = _declaration(analysis, occ)
    location = pos.location(decl[0]) if decl is not None else None
    return [location] if location is not None else []


# ------------------------------------------------------------------ rename
@lru_cache(maxsize=1)
def _name_pattern() -> re.Pattern[str]:
    return re.compile(lark_parser().get_terminal("NAME").pattern.to_regexp())


def _renamable(analysis: Analysis, line: int, col: int) -> Occurrence | None:
    """The occurrence at a place if it names something the spec declares (not an op or its attribute)."""
    occ = _occurrence_at(analysis, line, col)
    if occ is None or occ.symbol is None or occ.kind in ("builtin", "type", "import"):
        return None
    if occ.symbol[0] == "def" and occ.name not in analysis.definitions:
        return None
    if occ.kind == "kwarg" and not _is_block_call(analysis, occ.symbol[1]):
        return None
    return occ


def rename(analysis: Analysis, pos: Positions, line: int, col: int, new_name: str,
           others: Mapping[str, Analysis] | None = None) -> lsp.WorkspaceEdit | None:
    """Rename a value, parameter, dim, block or model in the document, the files it imports and the
    open documents (`others`, by uri) that read the file declaring it. Raises ValueError, with the
    reason, for a name the language cannot use or one that would change what the spec means."""
    occ = _renamable(analysis, line, col)
    if occ is None:
        return None
    if new_name == occ.name:
        return None
    if not _name_pattern().fullmatch(new_name) or new_name.upper() in keywords():
        raise ValueError(f"`{new_name}` cannot be a name in a spec: it is not an identifier"
                         if not _name_pattern().fullmatch(new_name) else
                         f"`{new_name}` cannot be a name in a spec: it is a keyword")
    if new_name in BUILTINS:
        raise ValueError(f"`{new_name}` cannot be a name in a spec: it is a built-in constant")
    readers = _readers(analysis, pos, occ, others or {})
    _check_free(readers, occ, new_name)
    changes: dict[str, list[lsp.TextEdit]] = {}
    for reader, rpos in readers:
        for other in _all_occurrences(reader, imports=True):
            if other.symbol != occ.symbol:
                continue
            hit = _edit_range(reader, rpos, other.span, readers)
            if hit is not None and all(e.range != hit[1] for e in changes.get(hit[0], [])):
                changes.setdefault(hit[0], []).append(lsp.TextEdit(range=hit[1], new_text=new_name))
    return lsp.WorkspaceEdit(changes=changes) if changes else None


def _readers(analysis: Analysis, pos: Positions, occ: Occurrence,
             others: Mapping[str, Analysis]) -> list[tuple[Analysis, Positions]]:
    """The document and the other open documents that read the file declaring what `occ` names
    (a document importing a block sees its calls and keyword arguments change with it)."""
    decl = _declaration(analysis, occ)
    where = analysis.locate(decl[0]) if decl is not None else None
    readers = [(analysis, pos)]
    if where is None:
        return readers
    home = str(Path(where[0]).resolve())
    for uri, other in others.items():
        if uri == pos.uri or other is analysis:
            continue
        if any(str(Path(p).resolve()) == home for p in other.files):
            readers.append((other, Positions(other, uri, pos.units)))
    return readers


def _edit_range(reader: Analysis, rpos: Positions, span: Span,
                readers: list[tuple[Analysis, Positions]]) -> tuple[str, lsp.Range] | None:
    """(uri, range) of a span, the uri being the open document's own for a file the editor has open
    (so two documents that read one file edit it under one uri, once)."""
    hit = rpos.range(span)
    where = reader.locate(span)
    if hit is None or where is None:
        return None
    path = str(Path(where[0]).resolve())
    for other, opos in readers:
        if str(Path(other.path).resolve()) == path:
            return opos.uri, hit[1]
    return hit


def _check_free(readers: list[tuple[Analysis, Positions]], occ: Occurrence, new_name: str) -> None:
    """Raise ValueError if `new_name` is taken where `occ`'s symbol lives: by a name of the same
    definition (a parameter, value, input, output, column, repeat index or dim), or, for a model or
    block, by an op or another definition (the call would silently mean the other thing)."""
    assert occ.symbol is not None
    if occ.symbol[0] == "def":
        if ops.get(new_name) is not None:
            raise ValueError(f"`{new_name}` is an op: calls to `{occ.name}` would call the op instead")
        for reader, _ in readers:
            if new_name in reader.definitions:
                d = reader.definitions[new_name]
                raise ValueError(f"`{new_name}` is already the name of {d.kind} `{new_name}`")
            for parsed in reader.files.values():
                module = parsed.module or parsed.partial
                if module is not None and any(c.name == new_name for c in module.compressions):
                    raise ValueError(f"`{new_name}` is already the name of a compression")
            called = next((o for o in _all_occurrences(reader, imports=True)
                           if o.kind == "call" and o.name == new_name), None)
            if called is not None:  # a configuration (`weight=mdbm(m=0.1)`) would become a call of the block
                raise ValueError(f"`{new_name}(...)` is already called in the spec: those calls would call "
                                 f"`{occ.name}` instead")
        return
    taken = ("local", occ.symbol[1], new_name)
    for reader, _ in readers:
        for other in _all_occurrences(reader, imports=True):
            if other.symbol == taken and other.kind != "kwarg":
                what = {"param": "a parameter", "dim": "a dimension"}.get(other.kind, "a value")
                raise ValueError(f"`{new_name}` is already {what} in {occ.symbol[1]}: "
                                 f"renaming `{occ.name}` to it would change what the spec computes")


def prepare_rename(analysis: Analysis, pos: Positions, line: int, col: int) -> lsp.Range | None:
    occ = _renamable(analysis, line, col)
    return pos.local(occ.span) if occ is not None else None


# ------------------------------------------------------------------ hover
def _node_key(span: Span | None) -> tuple | None:
    return None if span is None else (id(span.source), span.line, span.col, span.end_line, span.end_col)


@dataclass
class _Found:
    model: str
    node: Node


class _Values:
    """Typed values of the analysis's models, found by the source they came from."""

    def __init__(self, analysis: Analysis, like: "_Values | None" = None) -> None:
        self.analysis = analysis
        if like is not None:  # the same tables, read another way (a subclass's): built once per analysis
            self.by_span, self.models_by_source = like.by_span, like.models_by_source
            return
        self.by_span: dict[tuple, list[_Found]] = {}
        self.models_by_source: dict[int, list[Any]] = {}  # id(a chunk's source) -> the models with values in it
        for model in analysis.models.values():
            entries = _entries(model)
            for key, found in entries[0]:
                self.by_span.setdefault(key, []).append(found)
            for source in entries[1]:
                self.models_by_source.setdefault(source, []).append(model)

    def of(self, expr: Any, definition: Any, sites: tuple[Span, ...] = (), depth: int = 0) -> list[_Found]:
        """The values an expression computed (one per model and inlining of its definition)."""
        if depth > 16 or expr is None:
            return []
        if isinstance(expr, ast.Name):
            binding = _binding(definition, expr.id, expr.span)
            return self.of(binding, definition, sites, depth + 1) if binding is not None else []
        if isinstance(expr, ast.Conditional):
            return self.of(expr.then, definition, sites, depth + 1) + self.of(expr.otherwise, definition, sites,
                                                                               depth + 1)
        if isinstance(expr, ast.Repeat):
            return _last_per_site(self.of(expr.body, definition, sites, depth + 1))
        if isinstance(expr, ast.Call) and _is_block_call(self.analysis, expr.func):
            block = self.analysis.definitions[expr.func]
            last = block.body[-1] if block.body else None
            if isinstance(last, ast.Return) and len(last.values) == 1:
                return _last_per_site(self.of(last.values[0], block, sites + (expr.span,), depth + 1))
            return []
        if isinstance(expr, ast.Attribute):  # `q.pixels`: the part of q's value with that name
            base = _resolve(definition, expr.value)
            names = _part_names(self.analysis, base)
            found = _part_values(self.analysis, self, base, definition, names).get(expr.name, []) \
                if expr.name in names and isinstance(base, ast.Call) else []
        else:
            found = self.by_span.get(_node_key(getattr(expr, "span", None)) or (), [])
        return [f for f in found if all(any(_same(s, site) for _, s in f.node.call_sites) for site in sites)]

    def part(self, expr: Any, definition: Any, k: int, n: int) -> list[_Found]:
        """The k-th of the n values an unpacking assignment (`a, b = split(x, 2)`) takes from `expr`."""
        if n == 1:
            return self.of(expr, definition)
        if isinstance(expr, ast.Call) and _is_block_call(self.analysis, expr.func):
            block = self.analysis.definitions[expr.func]
            last = block.body[-1] if block.body else None
            if isinstance(last, ast.Return) and len(last.values) == n:
                return _last_per_site(self.of(last.values[k], block, (expr.span,)))
            return []
        groups: dict[tuple, list[_Found]] = {}  # the n parts, in creation order, per model and inlining
        for f in self.of(expr, definition):
            groups.setdefault((f.model, tuple(_node_key(s) for _, s in f.node.call_sites)), []).append(f)
        return [g[k] for g in groups.values() if len(g) == n]


_VALUES: "weakref.WeakKeyDictionary[Analysis, _Values]" = weakref.WeakKeyDictionary()
# a compiled model's values by where they came from, and the chunks (ids of sources) they came from
_ENTRIES: "weakref.WeakKeyDictionary[Any, tuple[list[tuple[tuple, _Found]], list[int]]]" = weakref.WeakKeyDictionary()


def _entries(model: Any) -> tuple[list[tuple[tuple, _Found]], list[int]]:
    """A model's part of the value table, built once per compile (`ModelInfo`): an edit recompiles a
    model or two, and the table of the next analysis reuses every other model's part."""
    hit = _ENTRIES.get(model)
    if hit is None:
        found = [(key, _Found(model.name, node)) for node in model.nodes
                 if (key := _node_key(node.span)) is not None]
        hit = _ENTRIES[model] = (found, list(dict.fromkeys(key[0] for key, _ in found)))
    return hit


def _values(analysis: Analysis) -> _Values:
    """The value table of an analysis, built once: it indexes every node of every model, so building it
    per definition (document symbols) or per request made the cost grow with the square of the file
    (an analysis never changes; the server replaces it)."""
    values = _VALUES.get(analysis)
    if values is None:
        values = _VALUES[analysis] = _Values(analysis)
    return values


def _same(a: Span, b: Span) -> bool:
    return a.source is b.source and (a.line, a.col, a.end_line, a.end_col) == (b.line, b.col, b.end_line, b.end_col)


def _last_per_site(found: list[_Found]) -> list[_Found]:
    """Of the values one expression made in a model (e.g. each turn of a `repeat`), the last."""
    out: dict[tuple, _Found] = {}
    for f in found:
        out[(f.model, tuple(_node_key(s) for _, s in f.node.call_sites[:-1]))] = f
    return list(out.values())


def _binding(definition: Any, name: str, at: Span) -> Any:
    """The expression a name refers to at a place: its latest assignment before it (None for params)."""
    if not isinstance(definition, ast.Definition):
        return None
    value = None
    for stmt in definition.body:
        if (stmt.span.end_line, stmt.span.end_col) > (at.line, at.col):
            break  # the statement holding the name, or a later one
        if isinstance(stmt, ast.Assign) and stmt.targets == [name]:
            value = stmt.value
        elif isinstance(stmt, ast.Output) and stmt.value is not None and stmt.names == [name]:
            value = stmt.value
        elif isinstance(stmt, ast.Input) and stmt.name == name:
            value = _InputRef(stmt.span)
    return value


@dataclass
class _InputRef:
    span: Span


def _types(found: list[_Found]) -> dict[str, set[str]]:
    """The distinct types of some values, each with the models it occurs in."""
    seen: dict[str, set[str]] = {}
    for f in found:
        if f.node.type is not None:
            seen.setdefault(str(f.node.type), set()).add(f.model)
    return seen


def _param_count(nodes: list[Node]) -> int:
    return sum(prod(p.shape) for n in nodes for p in n.params.values() if p.trainable)


def _statement_nodes(analysis: Analysis, definition: Any, stmt: Any) -> list[Node]:
    """The values a model's statement creates, blocks it calls included (for parameter counts)."""
    if not isinstance(definition, ast.Definition) or definition.kind != "model" or stmt is None:
        return []
    model = analysis.models.get(definition.name)
    if model is None:
        return []
    s = stmt.span

    def inside(span: Span | None) -> bool:
        return span is not None and span.source is s.source and (s.line, s.col) <= (span.line, span.col) \
            and (span.end_line, span.end_col) <= (s.end_line, s.end_col)

    return [n for n in model.nodes if inside(n.span) or any(inside(site) for _, site in n.call_sites[:1])]


def hover(analysis: Analysis, pos: Positions, line: int, col: int) -> lsp.Hover | None:
    occ = _occurrence_at(analysis, line, col)
    if occ is None:
        return None
    text = _hover_text(analysis, occ)
    if not text:
        return None
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text), range=pos.local(occ.span))


def _code(text: str) -> str:
    return f"```nnspec\n{text}\n```"


def _hover_text(analysis: Analysis, occ: Occurrence) -> str:
    values = _values(analysis)
    if occ.kind == "call":
        return _hover_call(analysis, values, occ)
    if occ.kind in ("value", "param"):
        decl = _declaration(analysis, occ)
        node = decl[1] if decl is not None else None
        if isinstance(node, ast.Param):
            return _hover_param(analysis, occ.definition, node)
        if isinstance(node, ast.Repeat):
            return _code(f"{occ.name}: int") + "\n\nthe iteration of `repeat` (0, 1, ...), inside its body"
        expr: Any = None
        found: list[_Found] = []
        if isinstance(node, ast.Input):
            expr = _InputRef(node.span)
        elif isinstance(node, (ast.Assign, ast.Output)) and node.value is not None:
            names = node.targets if isinstance(node, ast.Assign) else node.names
            found = values.part(node.value, occ.definition, names.index(occ.name), len(names)) \
                if occ.name in names else []
        elif isinstance(node, ast.Columns):
            return _code(f"{occ.name}: column {node.names.index(occ.name)} of the value on the right")
        elif occ.definition is not None and isinstance(occ.definition, ast.Definition):
            expr = _binding(occ.definition, occ.name, occ.span)
        source = _resolve(occ.definition, node.value) if isinstance(node, (ast.Assign, ast.Output)) \
            and node.value is not None and len(_targets(node)) == 1 else _resolve(occ.definition, expr)
        names = _part_names(analysis, source)
        if expr is not None:
            found = values.of(expr, occ.definition)
        types = _types(_one_per_site(found, names))
        lines = [_code(f"{occ.name}: {' | '.join(types)}" if types else occ.name)]
        if len(types) > 1:  # a value of a block called in several places
            lines.append("\n".join(f"- `{t}` in {', '.join(sorted(models))}" for t, models in types.items()))
        if names:
            parts = {n: " | ".join(_types(found)) for n, found in
                     _part_values(analysis, values, source, occ.definition, names).items()}
            lines.append("parts:\n" + "\n".join(f"- `{occ.name}.{n}`" + (f": `{parts[n]}`" if parts.get(n) else "")
                                                 for n in names if n))
        count = _param_count(_statement_nodes(analysis, occ.definition, node))
        if count:
            lines.append(f"{count:,} parameters")
        return "\n\n".join(lines)
    if occ.kind == "dim":
        return _code(f"{occ.name}: symbolic dim") + "\n\nA dimension known only at run time."
    if occ.kind == "part":
        return _hover_part(analysis, values, occ)
    if occ.kind == "kwarg":
        if occ.config or (isinstance(occ.node, ast.Call) and _is_config(analysis, occ.node)):
            return _hover_config_kwarg(occ)
        return _hover_kwarg(analysis, occ)
    if occ.kind in ("definition", "base"):
        return _hover_definition(analysis, occ)
    if occ.kind == "type" and occ.name in DTYPES:
        torch_name, _, size = DTYPES[occ.name]
        return _code(occ.name) + f"\n\ndtype: torch.{torch_name}, {size} byte{'s' if size > 1 else ''}"
    if occ.kind == "import":
        return _code(f'import "{occ.name}"') + f"\n\n{(analysis.path.parent / occ.name).resolve()}"
    return ""


def _hover_call(analysis: Analysis, values: _Values, occ: Occurrence) -> str:
    call = occ.node
    if isinstance(occ.definition, ast.CompressDef):  # a stage's transform
        transform = _transforms().get(occ.name)
        if transform is None:
            return ""
        fields = ", ".join(k if v.is_required() else f"{k}={_default(v)}" for k, v in transform.args.model_fields.items())
        return _code(f"{occ.name}({fields})") + f"\n\n{transform.doc}\n\nrewrites: {', '.join(sorted(transform.ops))}"
    if isinstance(call, ast.Call) and occ.config and _is_config(analysis, call):
        return _hover_config(occ)
    if _is_block_call(analysis, occ.name):
        block = analysis.definitions[occ.name]
        parts = [_code(_signature(block))]
    else:
        opdef = ops.get(occ.name)
        if opdef is None:
            return ""
        parts = [_code(_op_signature(opdef)), opdef.doc]
    found = values.of(call, occ.definition) if isinstance(call, ast.Call) else []
    names = _part_names(analysis, call)
    types = _types(_one_per_site(found, names))
    if types:
        parts.append("→ " + ", ".join(f"`{t}`" for t in types))
    if names and isinstance(call, ast.Call):
        by_name = _part_values(analysis, values, call, occ.definition, names)
        parts.append("parts: " + ", ".join(f"`.{n}`" + (f" `{' | '.join(_types(by_name.get(n, [])))}`"
                                                          if _types(by_name.get(n, [])) else "")
                                           for n in names if n))
    if isinstance(call, ast.Call) and _is_block_call(analysis, occ.name):
        count = _param_count(_inlined(analysis, call))
    else:
        count = _param_count([f.node for f in found])
        shapes = {name or f.node.name: p.shape for f in found[:1] for name, p in f.node.params.items()}
        if shapes:
            parts.append("weights: " + ", ".join(f"`{k}` {list(v)}" for k, v in shapes.items()))
    if count:
        parts.append(f"{count:,} parameters")
    return "\n\n".join(parts)


def _targets(stmt: Any) -> list[str]:
    return stmt.targets if isinstance(stmt, ast.Assign) else stmt.names


def _resolve(definition: Any, expr: Any, depth: int = 0) -> Any:
    """The expression a value comes from, through names bound to names (`r = q`)."""
    while isinstance(expr, ast.Name) and depth < 16:
        expr, depth = _binding(definition, expr.id, expr.span), depth + 1
    return expr


def _part_names(analysis: Analysis, expr: Any) -> tuple[str, ...]:
    """The names `.name` picks from the value of an expression ("" for a part without one): an op's
    results (`lstm`), the items of an op's parts list (`fixed_point(state=[pixels, hidden])`), a
    block's returned values (`return a, b`)."""
    if not isinstance(expr, ast.Call):
        return ()
    if _is_block_call(analysis, expr.func):
        block = analysis.definitions[expr.func]
        last = block.body[-1] if block.body else None
        if isinstance(last, ast.Return) and len(last.values) > 1:
            return tuple(v.id if isinstance(v, ast.Name) else "" for v in last.values)
        return ()
    opdef = ops.get(expr.func)
    if opdef is None or _is_config(analysis, expr):
        return ()
    if opdef.results:
        return tuple(opdef.results)
    if opdef.parts:
        source = next((kw.value for kw in expr.kwargs if kw.name == opdef.parts), None)
        items = source.items if isinstance(source, ast.ListExpr) else []
        return tuple(item.id if isinstance(item, ast.Name) else f"part{i}" for i, item in enumerate(items))
    return ()


def _is_part(f: _Found, names: tuple[str, ...]) -> bool:
    """A value the lowering made beside an op's own to hold one of its named parts (a slice or result)."""
    return f.node.op in ("slice", "result") and any(n and f.node.name.endswith(f"_{n}") for n in names)


def _one_per_site(found: list[_Found], names: tuple[str, ...] = ()) -> list[_Found]:
    """The value an expression computes, once per model and inlining: the last of the values made
    from its source, not counting the ones holding its named parts (`q.pixels`), which hover lists apart."""
    out: dict[tuple, _Found] = {}
    for f in found:
        key = (f.model, tuple(_node_key(s) for _, s in f.node.call_sites))
        if key not in out or not _is_part(f, names):
            out[key] = f
    return list(out.values())


def _part_values(analysis: Analysis, values: _Values, expr: ast.Call, definition: Any,
                 names: tuple[str, ...]) -> dict[str, list[_Found]]:
    """The values of an expression's named parts, by name."""
    if _is_block_call(analysis, expr.func):
        return {n: values.part(expr, definition, k, len(names)) for k, n in enumerate(names) if n}
    out: dict[str, list[_Found]] = {}
    for f in values.of(expr, definition):
        for n in names:
            if n and f.node.op in ("slice", "result") and f.node.name.endswith(f"_{n}"):
                out.setdefault(n, []).append(f)
    return out


def _hover_part(analysis: Analysis, values: _Values, occ: Occurrence) -> str:
    """`q.pixels`: the part's type, and where the part comes from."""
    attr = occ.node
    if not isinstance(attr, ast.Attribute):
        return ""
    base = _resolve(occ.definition, attr.value)
    names = _part_names(analysis, base)
    if occ.name not in names or not isinstance(base, ast.Call):
        return ""
    types = _types(_part_values(analysis, values, base, occ.definition, names).get(occ.name, []))
    owner = _source_text(attr.value.span) if isinstance(attr.value, ast.Name) else base.func + "(...)"
    lines = [_code(f"{owner}.{occ.name}" + (f": {' | '.join(types)}" if types else ""))]
    if len(types) > 1:
        lines.append("\n".join(f"- `{t}` in {', '.join(sorted(models))}" for t, models in types.items()))
    listed = ", ".join(f"`{n}`" for n in names if n)
    lines.append(f"part {names.index(occ.name) + 1} of {len(names)} of `{owner}` ({listed}), from `{base.func}`")
    return "\n\n".join(lines)


def _is_config(analysis: Analysis, call: ast.Call) -> bool:
    """A call the lowering reads as a configuration (`mdbm(m=0.1)`, `relu()` as an argument): no block,
    and no op or an op given no tensors."""
    return call.func not in analysis.definitions and (ops.get(call.func) is None or not call.args)


def _config_class(config: tuple[tuple[str, str], ...], name: str) -> tuple[Any, str] | None:
    """(the pydantic class, `op(arg=`) a configuration call `name(...)` at `config` is validated by."""
    if not config:
        return None
    opdef = ops.get(config[0][0])
    if opdef is None:
        return None
    model: Any = opdef.attrs
    for i, (func, arg) in enumerate(config):
        if i > 0:
            model = _member(model, func)
        info = getattr(model, "model_fields", {}).get(arg) if model is not None else None
        if info is None:
            return None
        model = info.annotation
    found = _member(model, name)
    return (found, f"{config[-1][0]}({config[-1][1]}=") if found is not None else None


def _member(annotation: Any, kind: str) -> Any:
    """The pydantic class in a (possibly Annotated, Union or list) annotation whose `kind` is `kind`."""
    from typing import Literal, get_args, get_origin

    fields = getattr(annotation, "model_fields", None)
    if isinstance(fields, dict) and "kind" in fields:
        literal = fields["kind"].annotation
        return annotation if get_origin(literal) is Literal and kind in get_args(literal) else None
    for arg in get_args(annotation):
        hit = _member(arg, kind)
        if hit is not None:
            return hit
    return None


def _config_fields(cls: Any) -> list[tuple[str, str]]:
    """(name, `name: type = default`) of a configuration class's settable fields."""
    out = []
    for k, v in cls.model_fields.items():
        if k == "kind":
            continue
        annotation = getattr(v.annotation, "__name__", None) or str(v.annotation).replace("typing.", "")
        out.append((k, f"{k}: {annotation}" + ("" if v.is_required() else f" = {_default(v)}")))
    return out


def _default(field: Any) -> str:
    """A pydantic field's default as the spec spells it (a default factory's value, `...` for Ellipsis)."""
    value = field.get_default(call_default_factory=True)
    return "..." if value is Ellipsis else repr(value)


def _op_paragraph(op_name: str, name: str) -> str:
    """The paragraph of an op's documentation about one of its configurations, if it has one."""
    opdef = ops.get(op_name)
    if opdef is None:
        return ""
    module = sys.modules.get(opdef.attrs.__module__)  # an op's module documents its configurations
    for paragraph in (opdef.doc + "\n\n" + (getattr(module, "__doc__", None) or "")).split("\n\n"):
        if f"`{name}(" in paragraph:
            return paragraph.strip()
    return ""


def _hover_config(occ: Occurrence) -> str:
    """`prox_softmax` in `fixed_point(activation=prox_softmax(groups=...))`: the configuration's fields,
    the argument it sets and what the op's documentation says about it."""
    hit = _config_class(occ.config, occ.name)
    if hit is None:
        return ""
    cls, where = hit
    fields = ", ".join(k if v.is_required() else f"{k}={_default(v)}"
                       for k, v in cls.model_fields.items() if k != "kind")
    lines = [_code(f"{occ.name}({fields})"), f"configuration for `{where}`"]
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(cls.__name__ + "("):
        lines.append(doc)
    paragraph = _op_paragraph(occ.config[0][0], occ.name)
    if paragraph:
        lines.append(paragraph)
    return "\n\n".join(lines)


def _hover_config_kwarg(occ: Occurrence) -> str:
    """`m=` in `mdbm(m=0.1)`: the field's declaration in the configuration."""
    call = occ.node
    if not isinstance(call, ast.Call):
        return ""
    hit = _config_class(occ.config, call.func)
    if hit is None:
        return ""
    cls, where = hit
    text = dict(_config_fields(cls)).get(occ.name)
    return _code(text) + f"\n\nargument of configuration `{call.func}` (for `{where}`)" if text else ""


def _transforms() -> dict[str, Any]:
    """The compression transforms (`specc.transforms`), by name."""
    from ..transforms import all_transforms

    return all_transforms()


def _inlined(analysis: Analysis, call: ast.Call) -> list[Node]:
    """The values inlined from a block by one call (in the first model that has them)."""
    for model in analysis.models.values():
        nodes = [n for n in model.nodes if any(_same(site, call.span) for _, site in n.call_sites)]
        if nodes:
            return nodes
    return []


def _op_signature(opdef: ops.OpDef) -> str:
    """`OpDef.signature()` without the attributes the lowering sets itself."""
    return re.sub(rf", (?:{'|'.join(_HIDDEN_ATTRS)})=[^,)]*", "", opdef.signature())


def _signature(d: ast.Definition) -> str:
    return f"{d.kind} {d.name}({', '.join(_param_text(p) for p in d.params)})"


def _param_text(p: ast.Param) -> str:
    """`name: type = default`, as written (a choice's domain and `where` too)."""
    return (p.name + (f": {p.type}" if p.type else "") + (f" {_source_text(p.choice.span)}" if p.choice else "")
            + (f" = {_source_text(p.default.span)}" if p.default else "")
            + (f" where {_source_text(p.where.span)}" if p.where else ""))


def _choice_lines(analysis: Analysis, d: ast.Definition, param: ast.Param) -> list[str]:
    """A choice's set of values (its range or list evaluated, with the earlier parameters' defaults when it
    depends on them), or its distribution (see specc/space.py)."""
    from ..lower import ParamBinder, Program
    from ..space import domain, domain_text

    try:
        binder = ParamBinder(Program(dict(analysis.definitions)), d)
        env: dict[str, Any] = {}
        for p in d.params:
            if p is param:
                break
            binder.bind(env, p)
        values = domain(param, binder.evaluator(env), binder.callee)
    except Exception:  # an earlier parameter without a default, or an error shown as a diagnostic
        return [f"choice of a search space: `{_source_text(param.choice.span)}`"] if param.choice else []
    if not isinstance(values, tuple):
        return [f"choice of a search space: `{values}`"]
    shown = domain_text(values) if len(values) <= 12 else domain_text(values[:5])[:-1] + ", ..., " + \
        domain_text(values[-2:])[1:]
    read = [p.name for p in d.params if p is not param and re.search(rf"\b{p.name}\b", _source_text(param.choice.span))]
    given = f" (with {', '.join(f'{n}={env[n]!r}' for n in read if n in env)})" if read else ""
    return [f"choice of a search space: one of `{shown}`{given}, {len(values)} value{'s' * (len(values) != 1)}"]


def _source_text(span: Span) -> str:
    if span.line != span.end_line:
        return "..."
    return span.source.line(span.line)[span.col - 1:span.end_col - 1]


def _hover_param(analysis: Analysis, d: Any, param: ast.Param) -> str:
    """A parameter's declaration, its value in a model, and the definition it belongs to."""
    lines = [_code(_param_text(param))]
    if isinstance(d, ast.Definition) and param.choice is not None:
        lines += _choice_lines(analysis, d, param)
    if isinstance(d, ast.Definition):
        model = analysis.models.get(d.name) if d.kind == "model" else None
        if model is not None and param.name in model.constants:
            lines.append(f"value: `{model.constants[param.name]!r}`")
        lines.append(f"parameter of {d.kind} `{d.name}`")
    return "\n\n".join(lines)


def _hover_kwarg(analysis: Analysis, occ: Occurrence) -> str:
    func = occ.symbol[1] if occ.symbol else ""
    if _is_block_call(analysis, func):
        for p in analysis.definitions[func].params:
            if p.name == occ.name:
                return _hover_param(analysis, analysis.definitions[func], p)
        return ""
    opdef = ops.get(func)
    if opdef is None:
        return ""
    info = opdef.attrs.model_fields.get(occ.name)
    if info is None:
        return _code(f"{occ.name}: tensor") + f"\n\noperand of `{func}`" if occ.name in opdef.operands else ""
    annotation = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
    default = "" if info.is_required() else f" = {_default(info)}"
    return _code(f"{occ.name}: {annotation}{default}") + f"\n\nargument of `{_op_signature(opdef)}`"


def _hover_definition(analysis: Analysis, occ: Occurrence) -> str:
    d = analysis.definitions.get(occ.name)
    comp = next((c for c in analysis.module.compressions if c.name == occ.name), None)
    if d is not None:
        lines = [_code(_signature(d))]
    elif comp is not None:
        lines = [_code(f"compress {comp.name} = {comp.base}")]
    else:
        return ""
    model = analysis.models.get(occ.name)
    if model is not None:
        ins = ", ".join(f"{n.name}: {n.type}" for n in model.inputs)
        outs = ", ".join(f"{k}: {n.type}" for k, n in model.outputs.items())
        lines.append(f"`({ins}) -> ({outs})`")
        lines.append(f"{_param_count([n for n in model.nodes if n.name in model.live]):,} parameters")
    return "\n\n".join(lines)


# ------------------------------------------------------------------ completion
def completion(analysis: Analysis, pos: Positions, line: int, col: int) -> lsp.CompletionList:
    """Ops, keyword arguments of the call around the cursor, names in scope, blocks and keywords."""
    chunk, start = analysis.chunk_at(line)
    rel_line = line - start + 1
    tokens = [t for t in chunk.tokens if (t.line, t.col + len(t.text)) <= (rel_line, col + 1)
              and t.type not in ("WS", "COMMENT")]
    if tokens and tokens[-1].type == "NAME" and (tokens[-1].line, tokens[-1].col + len(tokens[-1].text)) \
            == (rel_line, col + 1):
        tokens = tokens[:-1]  # the word being typed
    last = tokens[-1] if tokens else None
    items: list[lsp.CompletionItem] = []
    if last is not None and last.type == "COLON":
        names = list(DTYPES) if _statement_head(tokens) == "INPUT" else list(PARAM_TYPES)
        return lsp.CompletionList(is_incomplete=False, items=[
            lsp.CompletionItem(label=n, kind=lsp.CompletionItemKind.TypeParameter) for n in names])
    chosen = _choice_set_type(tokens)
    if chosen in ("op", "block"):  # `act: op in {relu, |}`: the ops (or blocks) to choose from
        if chosen == "op":
            items = [lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Function, detail=_op_signature(op),
                                        documentation=op.doc) for name, op in ops.all_ops().items() if name != "input"]
        else:
            items = [lsp.CompletionItem(label=d.name, kind=lsp.CompletionItemKind.Class, detail=_signature(d))
                     for d in analysis.definitions.values() if d.kind == "block"]
        return lsp.CompletionList(is_incomplete=False, items=items)
    if sum((t.type == "LBRACE") - (t.type == "RBRACE") for t in tokens) <= 0:
        return lsp.CompletionList(is_incomplete=False, items=_keywords(("model", "block", "import", "compress")))
    call = _enclosing_call(tokens)
    if next((t.type for t in tokens if t.type != "_NL"), None) == "COMPRESS":
        return lsp.CompletionList(is_incomplete=False, items=_compress_items(call, last, tokens))
    if last is not None and last.type == "DOT":  # `q.`: only a part of q can follow
        return lsp.CompletionList(is_incomplete=False, items=_part_items(analysis, chunk, tokens, rel_line, col))
    if call is not None and last is not None and last.type in ("LPAR", "COMMA"):
        items += _keyword_arguments(analysis, call, _call_arguments(tokens))
    items += _scope_items(analysis, chunk, rel_line, col)
    items += [lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Function, detail=_op_signature(op),
                                 documentation=op.doc, insert_text=name)
              for name, op in ops.all_ops().items() if name != "input"]
    items += [lsp.CompletionItem(label=d.name, kind=lsp.CompletionItemKind.Class, detail=_signature(d))
              for d in analysis.definitions.values() if d.kind == "block"]
    items += [lsp.CompletionItem(label=b, kind=lsp.CompletionItemKind.Constant) for b in BUILTINS]
    if last is None or last.type in ("_NL", "LBRACE"):
        items += _keywords(("input", "output", "return", "columns", "tie", "shard"))
    elif last.type in ("NAME", "RPAR", "RSQB", "NUMBER", "RBRACE"):
        items += _keywords(("if", "else"))
    return lsp.CompletionList(is_incomplete=False, items=items)


def _choice_set_type(tokens: list[Lexeme]) -> str | None:
    """In `act: op in {relu, |`: the declared type of the choice whose `{...}` holds the cursor, if it does."""
    depth = 0
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i].type
        if t == "RBRACE":
            depth += 1
        elif t == "LBRACE":
            if depth:
                depth -= 1
                continue
            if i >= 3 and tokens[i - 1].type == "IN" and tokens[i - 2].type in ("NAME", "BLOCK") \
                    and tokens[i - 3].type == "COLON":  # `block` lexes as the keyword
                return tokens[i - 2].text
            return None
    return None


def _compress_items(call: str | None, last: Lexeme | None, tokens: list[Lexeme]) -> list[lsp.CompletionItem]:
    """In a `compress` section: transforms and their arguments, op types to select, and keywords."""
    transforms = _transforms()
    if call is not None and call in transforms:
        if last is None or last.type not in ("LPAR", "COMMA"):
            return []
        given = {tokens[i - 1].text for i in range(1, len(tokens)) if tokens[i].type == "EQUAL"}
        return [lsp.CompletionItem(label=f"{k}=", kind=lsp.CompletionItemKind.Property, insert_text=f"{k}=",
                                   detail="" if v.is_required() else f"= {_default(v)}")
                for k, v in transforms[call].args.model_fields.items() if k not in given]
    items = [lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Function, documentation=t.doc)
             for name, t in transforms.items()]
    items += [lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.EnumMember, detail="op type")
              for name in ops.all_ops() if name != "input"]
    return items + _keywords(("on", "except", "where"))


def _keywords(words: tuple[str, ...]) -> list[lsp.CompletionItem]:
    return [lsp.CompletionItem(label=w, kind=lsp.CompletionItemKind.Keyword) for w in words]


def _statement_head(tokens: list[Lexeme]) -> str | None:
    """The type of the first token of the statement the cursor is in."""
    head = None
    for t in reversed(tokens):
        if t.type in ("_NL", "LBRACE"):
            break
        head = t.type
    return head


def _enclosing_call(tokens: list[Lexeme]) -> str | None:
    """The name of the call whose parentheses hold the cursor, if any."""
    depth = 0
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i].type
        if t in ("RPAR", "RSQB"):
            depth += 1
        elif t == "LSQB":
            depth -= 1
        elif t == "LPAR":
            if depth == 0:
                return tokens[i - 1].text if i > 0 and tokens[i - 1].type == "NAME" else None
            depth -= 1
        elif t in ("LBRACE", "RBRACE") and depth == 0:
            return None
    return None


def _call_arguments(tokens: list[Lexeme]) -> list[list[Lexeme]]:
    """The arguments written so far in the call around the cursor (after its `(`, split at its
    top-level commas), the last one being the one under the cursor."""
    depth = 0
    start = 0
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i].type
        if t in ("RPAR", "RSQB"):
            depth += 1
        elif t in ("LPAR", "LSQB"):
            if depth == 0:
                start = i + 1
                break
            depth -= 1
    args: list[list[Lexeme]] = [[]]
    depth = 0
    for t in tokens[start:]:
        if t.type == "COMMA" and depth == 0:
            args.append([])
            continue
        depth += (t.type in ("LPAR", "LSQB", "LBRACE")) - (t.type in ("RPAR", "RSQB", "RBRACE"))
        if t.type != "_NL":
            args[-1].append(t)
    return args


def _keyword_arguments(analysis: Analysis, func: str, args: list[list[Lexeme]]) -> list[lsp.CompletionItem]:
    """`name=` for each argument of the call not given yet, by keyword or by position."""
    done = args[:-1]
    given = {a[0].text for a in done if len(a) > 1 and a[0].type == "NAME" and a[1].type == "EQUAL"}
    positional = sum(1 for a in done if a and not (len(a) > 1 and a[0].type == "NAME" and a[1].type == "EQUAL"))
    if _is_block_call(analysis, func):
        names = [(p.name, p.type or "") for p in analysis.definitions[func].params]
        order = [n for n, _ in names]
    else:
        opdef = ops.get(func)
        if opdef is None:
            return []
        fields = opdef.attrs.model_fields
        order = [n for n in opdef.slots() if n not in _HIDDEN_ATTRS]  # the order positional arguments fill
        names = [(n, "tensor" if n not in fields else "" if fields[n].is_required() else f"= {_default(fields[n])}")
                 for n in order]
    given |= set(order[:positional])
    return [lsp.CompletionItem(label=f"{n}=", kind=lsp.CompletionItemKind.Property, detail=detail,
                               insert_text=f"{n}=", sort_text=f"0{i:03d}")
            for i, (n, detail) in enumerate(names) if n not in given]


def _part_items(analysis: Analysis, chunk: Chunk, tokens: list[Lexeme], line: int,
                col: int) -> list[lsp.CompletionItem]:
    """After `q.`: the names of q's parts (none if q has none, as nothing else can follow)."""
    if len(tokens) < 2 or tokens[-2].type != "NAME":
        return []
    name = tokens[-2].text
    source = chunk if chunk.module is not None else _repaired(chunk, line)
    if source is None or source.module is None:
        return []
    above = [d for d in source.module.definitions if (d.span.line, d.span.col) <= (line, col + 1)]
    definition = max(above, key=lambda d: (d.span.line, d.span.col), default=None)  # a repaired one ends early
    if definition is None:
        return []
    at = Span(source.source, line, col + 1, line, col + 1)
    names = _part_names(analysis, _resolve(definition, _binding(definition, name, at)))
    return [lsp.CompletionItem(label=n, kind=lsp.CompletionItemKind.Field, detail=f"part of `{name}`",
                               sort_text=f"{i:03d}")
            for i, n in enumerate(names) if n]


def _scope_items(analysis: Analysis, chunk: Chunk, line: int, col: int) -> list[lsp.CompletionItem]:
    """Parameters and values declared above the cursor in its definition."""
    source = chunk if chunk.module is not None else _repaired(chunk, line)
    if source is None:
        return []
    items: dict[str, lsp.CompletionItem] = {}
    for occ in occurrences(source):
        if occ.decl and occ.kind in ("param", "value") and (occ.span.line, occ.span.col) < (line, col + 1):
            kind = lsp.CompletionItemKind.Variable if occ.kind == "value" else lsp.CompletionItemKind.Field
            items[occ.name] = lsp.CompletionItem(label=occ.name, kind=kind, sort_text=f"1{occ.name}")
        if occ.kind == "definition" and (occ.span.line, occ.span.col) <= (line, col + 1):
            items.clear()  # only the definition around the cursor counts
    return list(items.values())


def _repaired(chunk: Chunk, line: int) -> Chunk | None:
    """A chunk that does not parse (it is being typed), cut to what parses for completion: the lines
    above the cursor with the brackets they leave open closed, or the chunk without the cursor's line."""
    lines = chunk.source.text.split("\n")
    above = "\n".join(lines[:max(line - 1, 0)])
    closers = {"LPAR": ")", "LSQB": "]", "LBRACE": "\n}"}
    stack: list[str] = []
    for t in lex(above):
        if t.type in closers:
            stack.append(closers[t.type])
        elif t.type in ("RPAR", "RSQB", "RBRACE") and stack:
            stack.pop()
    without = lines[:line - 1] + [""] + lines[line:] if 0 < line <= len(lines) else lines
    for text in (above + "".join(reversed(stack)), "\n".join(without)):
        source = SourceFile(chunk.source.path, text)
        try:
            return Chunk(source, parse(source), None)
        except Exception:  # a SpeccError, normally: try the next cut
            continue
    return None


# ------------------------------------------------------------------ symbols
def document_symbols(analysis: Analysis, pos: Positions) -> list[lsp.DocumentSymbol]:
    """The outline: imports, then each definition (with its parameters and values, and their types)
    and compression, in file order.

    Listed chunk by chunk, and each chunk's symbols are cached (`_chunk_symbols`), so that the outline
    an editor asks for after each edit lists the edited chunk again, not the whole file."""
    out: list[lsp.DocumentSymbol] = []
    module = analysis.module
    for imp in module.imports:
        r = pos.local(imp.span)
        if r is not None:
            out.append(lsp.DocumentSymbol(name=imp.path, kind=lsp.SymbolKind.File, range=r, selection_range=r,
                                          detail="import"))
    if module is not analysis.root.partial:  # parsed as a whole (a chunk alone does not parse): nothing cached
        return out + _item_symbols(analysis, pos, module.definitions + module.compressions)
    values = _values(analysis)
    for chunk, start in zip(analysis.root.chunks, analysis.root.starts):
        out += _chunk_symbols(analysis, pos, values, chunk, start)
    return out


# a chunk's symbols: (what they were computed from, the chunk's first line then, the symbols)
_SYMBOLS_CACHE: "weakref.WeakKeyDictionary[Chunk, tuple[tuple, int, list[lsp.DocumentSymbol]]]" = \
    weakref.WeakKeyDictionary()
_CALLED: "weakref.WeakKeyDictionary[Chunk, frozenset[str]]" = weakref.WeakKeyDictionary()


def _chunk_symbols(analysis: Analysis, pos: Positions, values: "_Values", chunk: Chunk,
                   start: int) -> list[lsp.DocumentSymbol]:
    """The symbols of one chunk's items, cached under all they are computed from besides the chunk
    (`_chunk_key`). A chunk that only moved gets its cached symbols moved."""
    if chunk.module is None:
        return []
    key = _chunk_key(analysis, pos, values, chunk)
    hit = _SYMBOLS_CACHE.get(chunk)
    if hit is not None and hit[0] == key:
        return hit[2] if hit[1] == start else _moved(hit[2], start - hit[1])
    symbols = _item_symbols(analysis, pos, chunk.module.definitions + chunk.module.compressions)
    _SYMBOLS_CACHE[chunk] = (key, start, symbols)
    return symbols


def _chunk_key(analysis: Analysis, pos: Positions, values: "_Values", chunk: Chunk) -> tuple:
    """All that what the editor shows of a chunk's values (outline details, inlay hints) is computed from
    besides the chunk: the chunks of the definitions it calls, transitively (a value's type may come from a
    block's return statement), the compiled models with values in any of those chunks, and the client's
    unit counter."""
    seen: dict[str, Any] = {}
    todo = [chunk]
    while todo:
        for name in _called_in(todo.pop()):
            if name in seen:
                continue
            d = analysis.definitions.get(name) if _is_block_call(analysis, name) else None
            seen[name] = d.span.source if d is not None else None
            hit = analysis.chunk_of(d.span) if d is not None else None
            if hit is not None:
                todo.append(hit[0].chunks[hit[1]])
    sources = {id(chunk.source)} | {id(source) for source in seen.values() if source is not None}
    models = sorted({(m.name, id(m)): m for i in sources for m in values.models_by_source.get(i, ())}.items())
    return pos.units, tuple(sorted(seen.items(), key=lambda kv: kv[0])), tuple(m for _, m in models)


def _called_in(chunk: Chunk) -> frozenset[str]:
    """The names a chunk's items call (and the base models of its compressions)."""
    names = _CALLED.get(chunk)
    if names is None:
        module = chunk.module
        names = frozenset(analysis_module._call_names(module.definitions + module.compressions)) | frozenset(
            c.base for c in module.compressions) if module is not None else frozenset()
        _CALLED[chunk] = names
    return names


def _moved(symbols: list[lsp.DocumentSymbol] | None, delta: int) -> Any:
    """Copies of symbols `delta` lines further down."""
    if symbols is None:
        return None

    def at(p: lsp.Position) -> lsp.Position:
        return lsp.Position(line=p.line + delta, character=p.character)

    return [lsp.DocumentSymbol(name=s.name, kind=s.kind, detail=s.detail, children=_moved(s.children, delta),
                               range=lsp.Range(start=at(s.range.start), end=at(s.range.end)),
                               selection_range=lsp.Range(start=at(s.selection_range.start),
                                                         end=at(s.selection_range.end)))
            for s in symbols]


def _item_symbols(analysis: Analysis, pos: Positions, items: list[Any]) -> list[lsp.DocumentSymbol]:
    """The symbols of some definitions and compressions, in file order."""
    out: list[lsp.DocumentSymbol] = []
    for item in sorted(items, key=lambda d: (analysis.locate(d.span) or ("", 0, 0, 0, 0))[1:3]):
        r, sel = pos.local(item.span), pos.local(item.name_span)
        if r is None or sel is None:
            continue
        if isinstance(item, ast.CompressDef):
            out.append(lsp.DocumentSymbol(name=item.name, kind=lsp.SymbolKind.Module, range=r, selection_range=sel,
                                          detail=f"compress {item.base}"))
            continue
        children = _children_symbols(analysis, pos, item)
        kind = lsp.SymbolKind.Class if item.kind == "model" else lsp.SymbolKind.Function
        out.append(lsp.DocumentSymbol(name=item.name, kind=kind, range=r, selection_range=sel,
                                      detail=_signature(item), children=children))
    return out


def _children_symbols(analysis: Analysis, pos: Positions, d: ast.Definition) -> list[lsp.DocumentSymbol]:
    values = _values(analysis)
    hit = analysis.chunk_of(d.span)
    decls = [o for o in occurrences(hit[0].chunks[hit[1]]) if o.definition is d and o.decl and o.kind != "definition"] \
        if hit else []
    out = []
    for o in decls:
        sel = pos.local(o.span)
        node = o.node
        r = pos.local(node.span) if node is not None else sel
        if sel is None or r is None:
            continue
        if o.kind == "param":
            kind, detail = lsp.SymbolKind.Property, (node.type or "")
        else:
            expr = _InputRef(node.span) if isinstance(node, ast.Input) else getattr(node, "value", None)
            names = _part_names(analysis, _resolve(d, expr))
            types = _types(_one_per_site(values.of(expr, d), names)) if expr is not None else {}
            kind = lsp.SymbolKind.Field if isinstance(node, (ast.Input, ast.Output)) else lsp.SymbolKind.Variable
            detail = " | ".join(types)
            if isinstance(node, (ast.Input, ast.Output)):
                detail = f"{type(node).__name__.lower()} {detail}".strip()
        if not (r.start.line <= sel.start.line and sel.end.line <= r.end.line):
            r = sel
        out.append(lsp.DocumentSymbol(name=o.name, kind=kind, range=r, selection_range=sel, detail=detail))
    return out


# ------------------------------------------------------------------ semantic tokens
_KIND_TOKEN = {"param": "parameter", "value": "variable", "dim": "typeParameter", "builtin": "keyword",
               "type": "type", "part": "property", "fact": "property", "base": "class"}


_TOKEN_INDEX = {kind: i for i, kind in enumerate(TOKEN_TYPES)}
_BLANK = frozenset({"WS", "_NL"})  # whitespace lexemes: never a token


def semantic_tokens(analysis: Analysis, pos: Positions) -> lsp.SemanticTokens:
    """Every token of the document, classified by what the syntax tree says it is.

    Tokens are encoded chunk by chunk, and each chunk's encoding is cached (`_chunk_tokens`): in the
    relative encoding only a chunk's first token depends on where the chunk is (its line delta from
    the previous chunk's last token; chunks never share a line), so after an edit only the edited
    chunk is classified again, and moving chunks up or down costs a copy of their numbers."""
    data: list[int] = []
    prev_line = 0
    for chunk, start in zip(analysis.root.chunks, analysis.root.starts):
        encoded, first, last = _chunk_tokens(analysis, pos, chunk, start)
        if not encoded:
            continue
        data.append(start + first - prev_line)
        data += encoded
        prev_line = start + last
    return lsp.SemanticTokens(data=data)


# a chunk's tokens: (what the classification read, the units counter) -> encoding, first and last line
_TOKENS_CACHE: "weakref.WeakKeyDictionary[Chunk, tuple[tuple, list[int], int, int]]" = weakref.WeakKeyDictionary()


def _chunk_tokens(analysis: Analysis, pos: Positions, chunk: Chunk, start: int) -> tuple[list[int], int, int]:
    """One chunk's tokens in the relative encoding, less the first number (the line delta from the
    previous chunk), and the chunk-relative lines of its first and last token. Cached per chunk under
    what its classification reads from the rest of the analysis: which names it mentions are blocks
    or models there (`_classify`), and the client's unit counter (columns)."""
    occurrences_of = occurrences(chunk)
    names = sorted({o.name for o in occurrences_of if o.kind in ("call", "definition")}
                   | {o.symbol[1] for o in occurrences_of if o.kind == "kwarg" and o.symbol})
    key = (pos.units, tuple((n, analysis.definitions[n].kind if _is_block_call(analysis, n) else None)
                            for n in names))
    hit = _TOKENS_CACHE.get(chunk)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2], hit[3]
    kw = keywords()
    by_place = {(o.span.line, o.span.col): o for o in occurrences_of}
    path = str(analysis.path)
    data: list[int] = []
    first = prev_line = prev_col = -1
    for t in chunk.tokens:
        if t.type in _BLANK:
            continue
        token = _classify(analysis, t, by_place.get((t.line, t.col)), kw)
        if token is None:
            continue
        kind, modifiers = token
        line = t.line - 1
        col = pos.column(path, line + start, t.col - 1)
        text = t.text.rstrip("\r")
        length = len(text) if text.isascii() else pos.units(text)
        if first < 0:
            first = line
            data += [col, length, _TOKEN_INDEX[kind], modifiers]
        else:
            data += [line - prev_line, col - prev_col if line == prev_line else col, length,
                     _TOKEN_INDEX[kind], modifiers]
        prev_line, prev_col = line, col
    _TOKENS_CACHE[chunk] = (key, data, first, prev_line)
    return data, first, prev_line


def _classify(analysis: Analysis, t: Lexeme, occ: Occurrence | None, kw: frozenset[str]) -> tuple[str, int] | None:
    declaration, library = 1, 2
    if t.type == "COMMENT":
        return "comment", 0
    if t.type == "STRING":
        return "string", 0
    if t.type in ("NUMBER", "RATIO"):
        return "number", 0
    if t.type in _OPERATORS:
        return "operator", 0
    if occ is not None and occ.name == t.text:
        mods = declaration if occ.decl else 0
        if occ.kind in ("call", "definition"):
            if _is_block_call(analysis, occ.name):
                d = analysis.definitions[occ.name]
                return ("class" if d.kind == "model" else "function"), mods
            if occ.kind == "definition":
                return "class", mods
            return "function", library if ops.get(occ.name) is not None else 0
        if occ.kind == "kwarg":
            func = occ.symbol[1] if occ.symbol else ""
            return ("parameter" if _is_block_call(analysis, func) else "property"), 0
        if occ.kind in _KIND_TOKEN:
            return _KIND_TOKEN[occ.kind], mods | (4 if occ.kind == "param" else 0)
    if t.type in kw or t.type in ("UNDERSCORE", "__ANON_0"):
        return "keyword", 0
    if t.type == "NAME":
        return "variable", 0
    return None
