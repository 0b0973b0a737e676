"""Navigation features computed from an `Analysis`: inlay hints, references, document
highlights, code lenses, signature help, folding ranges and workspace symbols.

Like `features`, every function takes 0-based lines and code-point columns and answers
lsprotocol values in the client's units, never raises for a broken document, and never
compiles anything: it reads the analysis the server already has (the chunks' name
indexes, `specc.lsp.index.occurrences`, and the typed values of the last good compile of
each model). Each is linear in the document (and, for references and lenses, in the open
documents that read the same files), so it can be asked for on every keystroke.
"""

from __future__ import annotations

import re
import sys
import weakref
from pathlib import Path
from typing import Any, Iterable, Iterator

from lsprotocol import types as lsp

from .. import ast, ops
from ..fmt import Lexeme
from . import features
from .analysis import Analysis, Chunk
from .features import (_HIDDEN_ATTRS, Positions, _default, _all_occurrences, _declaration, _is_block_call, _occurrence_at,
                       _types, _Values)
from .index import Occurrence, occurrences

View = tuple[Analysis, Positions]  # an open document's analysis, with its position converter


# ------------------------------------------------------------------ inlay hints
def inlay_hints(analysis: Analysis, pos: Positions, first_line: int = 0, last_line: int | None = None,
                others: Iterable[View] = ()) -> list[lsp.InlayHint]:
    """The inferred type of each value a statement assigns (`h = relu(x)` shows `: f32[B, 256]` after `h`),
    on the lines `first_line`..`last_line` of the document.

    The types are hover's: every value the statement's expression made in the compiled models. A value
    made several times (a block called twice, a `repeat`, a block used by two models) gets one hint when
    all of them have the same type, and *none* when they differ: a hint is read as a fact about the line,
    and a list of types would be noise there; hover lists them with the models they come from. Inputs
    (whose type is written) and statements of models that never compiled get no hint.

    The models of `others` (open documents) that read this document count too, so a file of blocks
    shows the types its importers' models give them (as long as they read the same text).
    """
    last = last_line if last_line is not None else len(analysis.text)
    readers = [analysis] + [v[0] for v in _reading(others, _resolved(str(analysis.path))) if v[0] is not analysis]
    out: list[lsp.InlayHint] = []
    for chunk, start in zip(analysis.root.chunks, analysis.root.starts):
        if start > last or start + chunk.source.text.count("\n") < first_line or chunk.module is None:
            continue
        if len(readers) > 1:  # read by other open documents: their models count too (not cached)
            out += _chunk_hints(readers, pos, chunk, start, first_line, last)
            continue
        values = _values_of(analysis)
        key = features._chunk_key(analysis, pos, values, chunk)
        hit = _HINTS_CACHE.get(chunk)
        if hit is None or hit[0] != key:
            hit = _HINTS_CACHE[chunk] = (key, start, _chunk_hints(readers, pos, chunk, start, 0, sys.maxsize))
        hints = hit[2] if hit[1] == start else [
            lsp.InlayHint(position=lsp.Position(line=h.position.line + start - hit[1], character=h.position.character),
                          label=h.label, kind=h.kind, padding_left=h.padding_left, padding_right=h.padding_right)
            for h in hit[2]]
        out += [h for h in hints if first_line <= h.position.line <= last]
    return out


# a chunk's hints (all its lines): (what they were computed from, the chunk's first line then, the hints)
_HINTS_CACHE: "weakref.WeakKeyDictionary[Chunk, tuple[tuple, int, list[lsp.InlayHint]]]" = weakref.WeakKeyDictionary()


def _chunk_hints(readers: list[Analysis], pos: Positions, chunk: Chunk, start: int, first_line: int,
                 last: int) -> list[lsp.InlayHint]:
    """The hints of one chunk's statements on lines `first_line`..`last`, from the models of `readers`."""
    lookups: list[_Values] | None = None
    out: list[lsp.InlayHint] = []
    for occ in occurrences(chunk):
        stmt = occ.node
        if not (occ.decl and occ.kind == "value" and isinstance(stmt, (ast.Assign, ast.Output))
                and stmt.value is not None):
            continue
        line = occ.span.line - 1 + start
        if not first_line <= line <= last:
            continue
        names = stmt.targets if isinstance(stmt, ast.Assign) else stmt.names
        if occ.name not in names:
            continue
        lookups = lookups or [_values_of(a) for a in readers]  # built on the first statement in range
        types = _types([f for values in lookups
                        for f in _parts(values, stmt.value, occ.definition, names.index(occ.name), len(names))])
        if len(types) != 1:
            continue
        where = pos.range(occ.span)
        if where is None or where[0] != pos.uri:
            continue
        (type_text,) = types
        out.append(lsp.InlayHint(position=where[1].end, label=f": {type_text}", kind=lsp.InlayHintKind.Type,
                                 padding_left=False, padding_right=False))
    return out


class _NamedValues(_Values):
    """Hover's value lookup, reading `call as name` as its call (the lowering gives the call's values the
    call's span) wherever it occurs: on the right of an assignment or in a block's `return`."""

    def of(self, expr: Any, definition: Any, sites: tuple = (), depth: int = 0) -> list[Any]:
        while isinstance(expr, ast.Named):
            expr = expr.value
        return super().of(expr, definition, sites, depth)


_VALUES: "weakref.WeakKeyDictionary[Analysis, _NamedValues]" = weakref.WeakKeyDictionary()


def _values_of(analysis: Analysis) -> _NamedValues:
    """The value lookup of an analysis, built once (an analysis never changes; the server replaces it)."""
    values = _VALUES.get(analysis)
    if values is None:
        values = _VALUES[analysis] = _NamedValues(analysis, features._values(analysis))  # hover's tables
    return values


def _parts(values: _Values, expr: Any, definition: Any, k: int, n: int) -> list[Any]:
    """The values of `expr` (the k-th of the n it unpacks into). An op with several results
    (`v, i = topk(x, 2)`) made a `result` node per result, or, when only its first is used, none (the
    op's node is that result): the k-th is the `result` node with that index, or the op's node for k = 0."""
    while isinstance(expr, ast.Named):
        expr = expr.value
    found = values.part(expr, definition, k, n)
    if found or n == 1 or not isinstance(expr, ast.Call) or not ops.get(expr.func) or not ops.get(expr.func).results:
        return found
    groups: dict[tuple, list[Any]] = {}  # per model and inlining, as `_Values.part` groups them
    for f in values.of(expr, definition):
        groups.setdefault((f.model, tuple(id(site) for _, site in f.node.call_sites)), []).append(f)
    out = []
    for group in groups.values():
        results = [f for f in group if f.node.op == "result"]
        if results:
            out += [f for f in results if getattr(f.node.attrs, "index", None) == k]
        elif k == 0:
            out += group[:1]
    return out


# ------------------------------------------------------------------ references
def _target(analysis: Analysis, line: int, col: int) -> Occurrence | None:
    """The occurrence at a place if it names a value, parameter, dim, block, model or compression the
    specs declare (an op, a type or an op's keyword argument has no references)."""
    occ = _occurrence_at(analysis, line, col)
    if occ is None or occ.symbol is None or occ.kind in ("builtin", "type", "import", "part", "fact"):
        return None
    if occ.symbol[0] == "def" and occ.name not in analysis.definitions \
            and all(c.name != occ.name for c in analysis.module.compressions):
        return None
    if occ.kind == "kwarg" and not _is_block_call(analysis, occ.symbol[1]):
        return None
    return occ


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):
        return path


def _reading(views: Iterable[View], path: str) -> Iterator[View]:
    """The views whose analysis read the file at `path`."""
    for view in views:
        if any(_resolved(p) == path for p in view[0].files):
            yield view


def _matches(analysis: Analysis, pos: Positions, occ: Occurrence, others: Iterable[View]) -> Iterator[
        tuple[Occurrence, lsp.Location]]:
    """Every occurrence of `occ`'s symbol in the document, the files it reads and, for a declaration in a
    file that other open documents read too, in those: each place once. Other documents are searched only
    through the declaring file, because names are unique within a program but not across unrelated ones."""
    decl = _declaration(analysis, occ)
    where = analysis.locate(decl[0]) if decl is not None else None
    views: list[View] = [(analysis, pos)]
    if where is not None:
        views += [v for v in _reading(others, _resolved(where[0])) if v[0] is not analysis]
    seen: set[tuple[str, int, int]] = set()
    for view_analysis, view_pos in views:
        for other in _all_occurrences(view_analysis, imports=True):
            if other.symbol != occ.symbol:
                continue
            location = view_pos.location(other.span)
            if location is None:
                continue
            key = (_uri_key(location.uri), location.range.start.line, location.range.start.character)
            if key not in seen:
                seen.add(key)
                yield other, location


def _uri_key(uri: str) -> str:
    from pygls.uris import to_fs_path

    path = to_fs_path(uri)
    return _resolved(path) if path else uri


def references(analysis: Analysis, pos: Positions, line: int, col: int, include_declaration: bool = True,
               others: Iterable[View] = ()) -> list[lsp.Location]:
    """The declaration and uses of the value, parameter, dim, block or model at a place (a keyword argument
    of a block call is a use of its parameter)."""
    occ = _target(analysis, line, col)
    if occ is None:
        return []
    return [loc for o, loc in _matches(analysis, pos, occ, others) if include_declaration or not o.decl]


def document_highlights(analysis: Analysis, pos: Positions, line: int, col: int) -> list[lsp.DocumentHighlight]:
    """The places in the document that name what the cursor names: declarations as writes, uses as reads."""
    occ = _target(analysis, line, col)
    if occ is None:
        return []
    out = []
    for chunk in analysis.root.chunks:
        for other in occurrences(chunk):
            if other.symbol == occ.symbol:
                r = pos.local(other.span)
                if r is not None:
                    kind = lsp.DocumentHighlightKind.Write if other.decl else lsp.DocumentHighlightKind.Read
                    out.append(lsp.DocumentHighlight(range=r, kind=kind))
    return out


SHOW_REFERENCES = "specc.showReferences"  # the client command a lens runs: (uri, position, locations)


def code_lenses(analysis: Analysis, pos: Positions, others: Iterable[View] = ()) -> list[lsp.CodeLens]:
    """A lens over each model, block and compression of the document with how many times it is called
    (or compressed), here, in the files it reads and in the other open documents that read it. Its
    command, `specc.showReferences`, carries the uri, position and locations for the client to show."""
    own = [(o, pos.local(o.span)) for chunk in analysis.root.chunks for o in occurrences(chunk)
           if o.kind == "definition" and o.decl]
    if not own:
        return []
    uses: dict[str, dict[tuple[str, int, int], lsp.Location]] = {o.name: {} for o, _ in own}
    views = [(analysis, pos)] + [v for v in _reading(others, _resolved(str(analysis.path))) if v[0] is not analysis]
    for view_analysis, view_pos in views:
        for other in _all_occurrences(view_analysis, imports=True):
            if other.kind in ("call", "base") and other.name in uses and other.symbol == ("def", other.name):
                location = view_pos.location(other.span)
                if location is not None:
                    key = (_uri_key(location.uri), location.range.start.line, location.range.start.character)
                    uses[other.name][key] = location
    out = []
    for occ, r in own:
        if r is None:
            continue
        found = list(uses[occ.name].values())
        title = f"{len(found)} reference{'' if len(found) == 1 else 's'}"
        out.append(lsp.CodeLens(range=r, command=lsp.Command(title=title, command=SHOW_REFERENCES if found else "",
                                                             arguments=[pos.uri, r.start, found] if found else None)))
    return out


# ------------------------------------------------------------------ signature help
def signature_help(analysis: Analysis, pos: Positions, line: int, col: int) -> lsp.SignatureHelp | None:
    """The signature of the op or block call around the cursor, with the argument being typed active:
    the keyword it names (`p=`), else its position among the call's arguments."""
    chunk, start = analysis.chunk_at(line)
    rel = line - start + 1
    tokens = [t for t in chunk.tokens if (t.line, t.col) < (rel, col + 1) and t.type not in ("WS", "COMMENT", "_NL")]
    found = _open_call(tokens)
    if found is None:
        return None
    name, args = found
    if _is_block_call(analysis, name):
        block = analysis.definitions[name]
        labels = [_param_label(p) for p in block.params]
        slots = [p.name for p in block.params]
        head, doc = f"{block.kind} {name}", None
    else:
        opdef = ops.get(name)
        if opdef is None or name == "input":
            return None
        slots = [s for s in opdef.slots() if s not in _HIDDEN_ATTRS]
        labels = [_slot_label(opdef, s) for s in slots]
        if opdef.variadic and len(opdef.operands) - 1 < len(slots):
            i = slots.index(opdef.operands[-1]) if opdef.operands[-1] in slots else -1
            if i >= 0:
                labels[i] = f"[{labels[i]}, ...]"
        head, doc = name, opdef.doc
    keyword = _keyword_being_typed(args[-1]) if args else None
    if keyword is not None:
        active = slots.index(keyword) if keyword in slots else len(slots)
    elif any(_keyword_being_typed(a) for a in args[:-1]):
        active = len(slots)  # a positional argument after a keyword one binds nothing
    else:
        active = len(args) - 1 if args else 0
    label, params = head + "(", []
    for i, text in enumerate(labels):
        if i:
            label += ", "
        params.append(lsp.ParameterInformation(label=(len(label), len(label) + len(text))))
        label += text
    label += ")"
    documentation = lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=doc) if doc else None
    signature = lsp.SignatureInformation(label=label, documentation=documentation, parameters=params,
                                         active_parameter=active)
    return lsp.SignatureHelp(signatures=[signature], active_signature=0, active_parameter=active)


def _open_call(tokens: list[Lexeme]) -> tuple[str, list[list[Lexeme]]] | None:
    """The innermost call left open before the cursor: its name and its arguments so far (the last
    one, possibly empty, being typed). None outside a call's parentheses or in a bracket of its own."""
    depth = 0
    for i in range(len(tokens) - 1, -1, -1):
        t = tokens[i].type
        if t in ("RPAR", "RSQB"):
            depth += 1
        elif t in ("LPAR", "LSQB") and depth > 0:
            depth -= 1
        elif t == "LSQB":
            return None  # inside a list or a shape: no call's argument
        elif t == "LPAR":
            if i == 0 or tokens[i - 1].type != "NAME":
                return None
            args: list[list[Lexeme]] = [[]]
            nested = 0
            for tok in tokens[i + 1:]:
                if tok.type in ("LPAR", "LSQB", "LBRACE"):
                    nested += 1
                elif tok.type in ("RPAR", "RSQB", "RBRACE"):
                    nested -= 1
                elif tok.type == "COMMA" and nested == 0:
                    args.append([])
                    continue
                args[-1].append(tok)
            return tokens[i - 1].text, args
        elif t in ("LBRACE", "RBRACE") and depth == 0:
            return None
    return None


def _keyword_being_typed(arg: list[Lexeme]) -> str | None:
    return arg[0].text if len(arg) >= 2 and arg[0].type == "NAME" and arg[1].type == "EQUAL" else None


def _slot_label(opdef: ops.OpDef, slot: str) -> str:
    """One argument as `OpDef.signature()` writes it."""
    fields = opdef.attrs.model_fields
    if slot not in fields:
        return f"{slot}=None" if slot in opdef.optional else slot
    return slot if fields[slot].is_required() else f"{slot}={_default(fields[slot])}"


def _param_label(p: ast.Param) -> str:
    """A block parameter as written (`x: f32[B, T, D]`, `heads: int = 4`), on one line."""
    s = p.span
    if s.line == s.end_line:
        return s.source.line(s.line)[s.col - 1:s.end_col - 1]
    return p.name + (f": {p.type}" if p.type else "")


# ------------------------------------------------------------------ folding
def folding_ranges(analysis: Analysis) -> list[lsp.FoldingRange]:
    """A fold for each bracket pair spanning lines (model, block and compress bodies, `repeat` bodies,
    multi-line calls and lists) and for each run of two or more comment lines. A definition's body folds
    from its first line, so a header spread over lines folds with it. Found from the chunks' lexemes, so a
    document that does not parse still folds."""
    out: list[lsp.FoldingRange] = []
    closers = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
    for chunk, start in zip(analysis.root.chunks, analysis.root.starts):
        stack: list[tuple[str, int]] = []
        comments: list[int] = []
        item = -1  # the first line of the top-level item being read (its body folds from there)
        first_on_line = True
        for t in chunk.tokens:
            if t.type == "WS":
                continue
            if t.type == "_NL":
                first_on_line = True
                continue
            line = t.line - 1 + start
            if t.type == "COMMENT":
                if first_on_line and comments and comments[-1] == line - 1:
                    comments.append(line)
                else:
                    _comment_fold(out, comments)
                    comments = [line] if first_on_line else []
            if not stack and item < 0 and t.type != "COMMENT":
                item = line
            if t.type in closers:
                stack.append((closers[t.type], item if not stack and t.type == "LBRACE" else line))
            elif t.type in ("RPAR", "RSQB", "RBRACE") and any(closer == t.type for closer, _ in stack):
                while stack[-1][0] != t.type:  # brackets left open inside (a half-typed call) end here
                    stack.pop()
                _, opened = stack.pop()
                end = line - 1 if first_on_line else line
                if end > opened:
                    out.append(lsp.FoldingRange(start_line=opened, end_line=end,
                                                kind=lsp.FoldingRangeKind.Region))
                if not stack and t.type == "RBRACE":
                    item = -1
            first_on_line = False
        _comment_fold(out, comments)
    widest: dict[int, lsp.FoldingRange] = {}  # editors fold one range per line: the outermost
    for fold in out:
        if fold.start_line not in widest or fold.end_line > widest[fold.start_line].end_line:
            widest[fold.start_line] = fold
    return sorted(widest.values(), key=lambda f: (f.start_line, f.end_line))


def _comment_fold(out: list[lsp.FoldingRange], lines: list[int]) -> None:
    if len(lines) >= 2:
        out.append(lsp.FoldingRange(start_line=lines[0], end_line=lines[-1], kind=lsp.FoldingRangeKind.Comment))


# ------------------------------------------------------------------ workspace symbols
def workspace_symbols(views: Iterable[View], query: str) -> list[lsp.WorkspaceSymbol]:
    """The models, blocks and compressions of the open documents and the files they import whose names
    hold the query's characters in order (case-insensitively, as editors filter), each once."""
    pattern = re.compile(".*?".join(map(re.escape, query.lower())))
    seen: set[tuple[str, str]] = set()
    out: list[lsp.WorkspaceSymbol] = []
    for analysis, pos in views:
        for path, parsed in analysis.files.items():
            items: list[Any] = parsed.partial.definitions + parsed.partial.compressions
            for item in items:
                if not pattern.search(item.name.lower()):
                    continue
                key = (_resolved(path), item.name)
                if key in seen:
                    continue
                where = pos.range(item.name_span)
                if where is None:
                    continue
                seen.add(key)
                if isinstance(item, ast.CompressDef):
                    kind, container = lsp.SymbolKind.Module, f"compress {item.base}"
                else:
                    kind = lsp.SymbolKind.Class if item.kind == "model" else lsp.SymbolKind.Function
                    container = item.kind
                out.append(lsp.WorkspaceSymbol(name=item.name, kind=kind, container_name=container,
                                               location=lsp.Location(uri=where[0], range=where[1])))
    return out

