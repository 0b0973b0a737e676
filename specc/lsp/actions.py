"""Code actions (quick fixes for specc's errors) and range formatting.

- Did you mean: an error whose help says "did you mean `relu`?" (an unknown op, name, argument or
  parameter) gets a quick fix that writes the suggestion in place of the misspelled name. The fix is
  offered only where the diagnostic's range starts with that one name (`relux`, or `dimm=1` for an
  argument), so it never rewrites more than the name it is about.
- Add a missing import: an unknown op (or compress base model) that a .nnspec file in the document's
  directory or below defines gets `import "that.nnspec"` after the document's imports.
- Fill in missing arguments: a call missing required arguments gets them as keyword arguments whose
  values are placeholders (each parameter's own name: `name=...` is no valid syntax).
- Range formatting: the whole document is formatted, and only the changed lines inside the range are
  edited.
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp
from pygls.workspace import TextDocument

from .. import ops
from ..fmt import Lexeme, lex
from .analysis import Analysis, split_chunks

_DID_YOU_MEAN = re.compile(r"help: did you mean `([A-Za-z_][A-Za-z0-9_]*)`\?")
_LEADING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?=\s*(=|$))")


def quick_fixes(document: TextDocument, diagnostics: list[lsp.Diagnostic]) -> list[lsp.CodeAction]:
    """One "replace with the suggestion" fix per diagnostic that suggests a name."""
    actions = []
    for diagnostic in diagnostics:
        suggested = _DID_YOU_MEAN.search(diagnostic.message or "")
        if suggested is None or diagnostic.source != "specc":
            continue
        start = document.offset_at_position(diagnostic.range.start)
        end = document.offset_at_position(diagnostic.range.end)
        name = _LEADING_NAME.match(document.source[start:end])
        if name is None or name.group(0) == suggested.group(1):
            continue
        at = diagnostic.range.start  # a name is ASCII: as long in UTF-16 units as in characters
        replace = lsp.Range(start=at, end=lsp.Position(line=at.line, character=at.character + len(name.group(0))))
        edit = lsp.WorkspaceEdit(changes={document.uri: [lsp.TextEdit(range=replace, new_text=suggested.group(1))]})
        actions.append(lsp.CodeAction(title=f"Change `{name.group(0)}` to `{suggested.group(1)}`",
                                      kind=lsp.CodeActionKind.QuickFix, diagnostics=[diagnostic], edit=edit,
                                      is_preferred=True))
    return actions


# ------------------------------------------------------------------ all quick fixes
def code_actions(document: TextDocument, diagnostics: list[lsp.Diagnostic], path: Path,
                 analysis: Analysis | None) -> list[lsp.CodeAction]:
    """Every quick fix for `diagnostics`: did-you-mean, add a missing import, fill in missing arguments.
    `analysis` (the document's newest finished one, possibly of an older version) supplies the
    parameters of blocks; every edit is computed on the document's current text."""
    out = quick_fixes(document, diagnostics)
    for diagnostic in diagnostics:
        if diagnostic.source != "specc":
            continue
        out.extend(import_fixes(document, diagnostic, path))
        out.extend(argument_fixes(document, diagnostic, analysis))
    return out


def _significant(tokens: list[Lexeme]) -> list[Lexeme]:
    return [t for t in tokens if t.type not in ("WS", "_NL", "COMMENT")]


class _Items:
    """The document cut into top-level items as the analysis cuts it, each lexed on first use: lexing a
    2,000-line file whole takes most of a second, and a quick fix needs the tokens of one or two items."""

    def __init__(self, text: str) -> None:
        self.items: list[tuple[int, int, str]] = []  # (offset, first line, text)
        offset = 0
        for line, chunk in split_chunks(text):
            self.items.append((offset, line, chunk))
            offset += len(chunk)
        self._tokens: dict[int, list[Lexeme]] = {}

    def tokens(self, k: int) -> list[Lexeme]:
        """Item k's significant tokens, at their places in the document (lines 1-based as `lex` gives them)."""
        if k not in self._tokens:
            offset, line, chunk = self.items[k]
            self._tokens[k] = [t._replace(offset=t.offset + offset, line=t.line + line)
                               for t in _significant(lex(chunk))]
        return self._tokens[k]

    def at(self, offset: int) -> int:
        """The item holding `offset`."""
        return max(0, bisect.bisect_right([start for start, _, _ in self.items], offset) - 1)


def _newline(text: str) -> str:
    """The document's line ending, for inserted lines (a CRLF file stays CRLF)."""
    return "\r\n" if "\r\n" in text else "\n"


# ------------------------------------------------------------------ add a missing import
_UNDEFINED = (
    (("E0201",), re.compile(r"unknown op `([A-Za-z_][A-Za-z0-9_]*)`"), "block"),
    (("E0806",), re.compile(r"but `([A-Za-z_][A-Za-z0-9_]*)` is not defined"), "model"),
)
_IMPORT = re.compile(r'^[ \t\f]*import[ \t\f]*"([^"\n]*)"', re.MULTILINE)
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "build", "dist"})
MAX_SCANNED_FILES = 2_000  # specs looked at below one directory (a home directory opened as a spec's folder)
MAX_SCANNED_DIRS = 5_000  # directories walked: the scan runs on the server's event loop and must stay short
MAX_SCANNED_BYTES = 4 * 1024 * 1024  # a bigger file is no hand-written spec; it is not read


class _Definitions:
    """The blocks and models each .nnspec file defines at its top level, cached by (mtime, size), so a
    quick-fix request re-reads only the files that changed. A definition is found the way the
    analysis cuts a file into items: `block NAME` or `model NAME` at the start of a line, which in a
    file that parses can only begin an item (a comment starts with `//`, a string cannot span lines)."""

    ITEM = re.compile(r"^(block|model)[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int], set[tuple[str, str]], list[str]]] = {}

    def of(self, file: Path) -> tuple[set[tuple[str, str]], list[str]]:
        """((kind, name) of each definition, import strings) of one file; nothing for an unreadable one."""
        try:
            stat = file.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            cached = self._files.get(file)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
            if stat.st_size > MAX_SCANNED_BYTES:
                return set(), []
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set(), []
        found = {(m[1], m[2]) for m in self.ITEM.finditer(text)}
        imports = _IMPORT.findall(text)
        self._files[file] = (key, found, imports)
        return found, imports


_DEFINITIONS = _Definitions()


def _specs_below(directory: Path) -> list[Path]:
    """The .nnspec files in `directory` and below (hidden and tool directories skipped), nearest first."""
    found: list[Path] = []
    for visited, (root, dirs, files) in enumerate(os.walk(directory)):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        found.extend(Path(root) / f for f in sorted(files) if f.endswith(".nnspec") and not f.startswith("."))
        if len(found) >= MAX_SCANNED_FILES or visited >= MAX_SCANNED_DIRS:
            break
    return sorted(found[:MAX_SCANNED_FILES], key=lambda p: (len(p.relative_to(directory).parts), str(p)))


def _import_position(document: TextDocument) -> tuple[lsp.Position, str, str]:
    """Where a new import goes, and the text before and after it: after the last import, else before
    the first item (below a leading comment), else at the end."""
    text = document.source
    items = _Items(text)
    first = last = None
    for k in range(len(items.items)):
        tokens = items.tokens(k)
        if not tokens:
            continue
        first = first or tokens[0]
        if tokens[0].type != "IMPORT":
            break  # an item: the imports are above it
        if len(tokens) > 1 and tokens[1].type == "STRING":
            last = tokens[1]
    nl = _newline(text)
    if last is not None:
        end = text.find("\n", last.offset)
        if end < 0:  # the import is the last line, with no line break after it
            return document.client_position_at_offset(len(text)), nl, ""
        return lsp.Position(line=last.line, character=0), "", nl
    if first is not None:
        return lsp.Position(line=first.line - 1, character=0), "", nl + nl
    if text and not text.endswith("\n"):
        return document.client_position_at_offset(len(text)), nl, nl
    return document.client_position_at_offset(len(text)), "", nl


def import_fixes(document: TextDocument, diagnostic: lsp.Diagnostic, path: Path) -> list[lsp.CodeAction]:
    """For an unknown op (a block not defined here) or an undefined compress base model: one action per
    .nnspec file in the document's directory or below that defines it, inserting `import "that"`."""
    if not document.uri.startswith("file:"):
        return []  # an unsaved document has no directory to look in
    for codes, pattern, kind in _UNDEFINED:
        match = pattern.search(diagnostic.message or "") if diagnostic.code in codes else None
        if match is not None:
            break
    else:
        return []
    name = match[1]
    here = path.resolve()
    directory = here.parent
    imported = {(directory / i).resolve() for i in _IMPORT.findall(document.source)} | {here}
    actions = []
    at, before, after = _import_position(document)
    for file in _specs_below(directory):
        resolved = file.resolve()
        if resolved in imported:
            continue
        defined, its_imports = _DEFINITIONS.of(file)
        if (kind, name) not in defined:
            continue
        if any((file.parent / i).resolve() == here for i in its_imports):
            continue  # it imports this document: importing it back would be a cycle
        relative = file.relative_to(directory).as_posix()
        if '"' in relative or "\\" in relative:
            continue  # not writable as an import string
        edit = lsp.TextEdit(range=lsp.Range(start=at, end=at), new_text=f'{before}import "{relative}"{after}')
        actions.append(lsp.CodeAction(title=f'Import "{relative}" (defines {kind} `{name}`)',
                                      kind=lsp.CodeActionKind.QuickFix, diagnostics=[diagnostic],
                                      edit=lsp.WorkspaceEdit(changes={document.uri: [edit]})))
    if len(actions) == 1:
        actions[0].is_preferred = True
    return actions


# ------------------------------------------------------------------ fill in missing arguments
_MISSING_OP_ARG = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\(\) is missing its `([A-Za-z_][A-Za-z0-9_]*)` argument")
_MISSING_BLOCK_ARG = re.compile(r"^(?:tensor )?parameter `([A-Za-z_][A-Za-z0-9_]*)` of block "
                                r"`([A-Za-z_][A-Za-z0-9_]*)` (?:has no default|needs a value)")
MAX_CALLS = 8  # call sites offered when the diagnostic does not say which one it is about


@dataclass
class _CallSite:
    """A call's text as the document has it now: where its arguments end, and what they give."""

    start: int  # offset of the callee's name
    after: Lexeme  # the last significant token before `)`: `(`, the last argument's end, or a comma
    positional: int
    keywords: set[str]


def _call_at(tokens: list[Lexeme], i: int) -> _CallSite | None:
    """The call whose callee is significant token `i` (followed by `(`), or None if it is not closed."""
    if i + 1 >= len(tokens) or tokens[i + 1].type != "LPAR":
        return None
    depth, positional, keywords, arg_start = 0, 0, set(), i + 2
    for j in range(i + 1, len(tokens)):
        kind = tokens[j].type
        if kind in ("LPAR", "LSQB", "LBRACE"):
            depth += 1
        elif kind in ("RPAR", "RSQB", "RBRACE"):
            depth -= 1
        if depth == 1 and kind == "COMMA" or depth == 0:
            arg = tokens[arg_start:j]
            if len(arg) >= 2 and arg[0].type == "NAME" and arg[1].type == "EQUAL":
                keywords.add(arg[0].text)
            elif arg:
                positional += 1
            arg_start = j + 1
        if depth == 0:
            return _CallSite(tokens[i].offset, tokens[j - 1], positional, keywords) if kind == "RPAR" else None
    return None


def _required(callee: str, is_block: bool, analysis: Analysis | None) -> tuple[list[str], list[str]] | None:
    """(every parameter name in order, the required ones) of a block or op; None for a block the
    analysis does not know (a fix that guessed its parameters could insert the wrong ones)."""
    if is_block:
        definition = analysis.definitions.get(callee) if analysis is not None else None
        if definition is None or definition.kind != "block":
            return None
        return [p.name for p in definition.params], [p.name for p in definition.params
                                                     if p.default is None or p.dims is not None]
    opdef = ops.get(callee)
    if opdef is None:
        return None
    fields = opdef.attrs.model_fields
    slots = opdef.slots()
    return slots, [s for s in slots if (s in opdef.operands and s not in opdef.optional)
                   or (s in fields and fields[s].is_required())]


def argument_fixes(document: TextDocument, diagnostic: lsp.Diagnostic,
                   analysis: Analysis | None) -> list[lsp.CodeAction]:
    """For a call missing required arguments (E0303 for an op, E0209 for a block): insert every missing
    one as a keyword argument whose value is the parameter's own name, a placeholder to replace (the
    title says so; an undefined name is then reported until it is)."""
    if diagnostic.code not in ("E0303", "E0209"):
        return []
    message = diagnostic.message or ""
    op, block = _MISSING_OP_ARG.match(message), _MISSING_BLOCK_ARG.match(message)
    if diagnostic.code == "E0303" and op is not None:
        callee, is_block = op[1], False
    elif diagnostic.code == "E0209" and block is not None:
        callee, is_block = block[2], True
    else:
        return []
    signature = _required(callee, is_block, analysis)
    if signature is None:
        return []
    names, required = signature

    text = document.source
    items = _Items(text)
    # the call sites the diagnostic points at: its range, and its related locations in this document
    ranges = [diagnostic.range] + [info.location.range for info in diagnostic.related_information or []
                                   if info.location.uri == document.uri]
    sites: list[tuple[list[Lexeme], int]] = []  # (an item's tokens, the callee's index there)
    for r in ranges:
        try:
            offset = document.offset_at_position(r.start)
        except Exception:  # a range past the end of a document edited since
            continue
        tokens = items.tokens(items.at(offset))
        i = next((i for i, tok in enumerate(tokens) if tok.offset == offset), None)
        if i is not None and tokens[i].type == "NAME" and tokens[i].text == callee and (tokens, i) not in sites:
            sites.append((tokens, i))
    if not sites and is_block:  # a client without related information: every call of the block here
        called = re.compile(rf"\b{callee}[ \t\f]*\(")
        for k, (_, _, chunk) in enumerate(items.items):
            if called.search(chunk) is None:
                continue  # no need to lex an item that cannot call it
            tokens = items.tokens(k)
            sites.extend((tokens, i) for i, tok in enumerate(tokens) if tok.type == "NAME" and tok.text == callee
                         and (i == 0 or tokens[i - 1].type != "BLOCK"))
        del sites[MAX_CALLS:]

    actions = []
    for tokens, i in sites:
        call = _call_at(tokens, i)
        if call is None:
            continue
        given = set(names[:call.positional]) | call.keywords
        missing = [name for name in required if name not in given]
        if not missing:
            continue
        filled = ", ".join(f"{name}={name}" for name in missing)
        if call.after.type == "LPAR":
            new_text = filled
        elif call.after.type == "COMMA":
            new_text = f" {filled},"
        else:
            new_text = f", {filled}"
        at = document.client_position_at_offset(call.after.offset + len(call.after.text))
        edit = lsp.TextEdit(range=lsp.Range(start=at, end=at), new_text=new_text)
        plural = "s" if len(missing) > 1 else ""
        title = (f"Fill in the missing argument{plural} of `{callee}`: {filled} "
                 f"(placeholder{plural}: each value is its parameter's name)")
        actions.append(lsp.CodeAction(title=title, kind=lsp.CodeActionKind.QuickFix, diagnostics=[diagnostic],
                                      edit=lsp.WorkspaceEdit(changes={document.uri: [edit]})))
    return actions


# ------------------------------------------------------------------ range formatting
def _lines(text: str) -> list[str]:
    """The text's lines, each with its line break (an LSP line ends at `\\n`; `\\r\\n` stays with it)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def range_edits(document: TextDocument, formatted: str, selection: lsp.Range) -> list[lsp.TextEdit]:
    """The edits that turn the document into `formatted` (the whole document formatted) on the lines of
    `selection` only: a change that reaches a line outside it is left out, so lines outside the range
    are never touched. A run of changed lines that keeps its line count is split line by line, so a
    change that straddles the range's edge still applies to the lines inside it."""
    old, new = _lines(document.source), _lines(formatted)
    first = selection.start.line
    last = selection.end.line if selection.end.character > 0 or selection.end.line == first \
        else selection.end.line - 1  # a selection ending at column 0 of a line does not hold that line
    changes: list[tuple[int, int, str]] = []  # (first old line, end old line, new text)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            changes.extend((i1 + k, i1 + k + 1, new[j1 + k]) for k in range(i2 - i1))
        else:
            changes.append((i1, i2, "".join(new[j1:j2])))
    edits = []
    for i1, i2, replacement in changes:
        inside = first <= i1 and i2 - 1 <= last if i2 > i1 else first <= i1 <= last + 1
        if not inside:
            continue
        edits.append(lsp.TextEdit(range=lsp.Range(start=_line_start(document, old, i1),
                                                  end=_line_start(document, old, i2)), new_text=replacement))
    return edits


def _line_start(document: TextDocument, lines: list[str], index: int) -> lsp.Position:
    """The start of line `index` (0-based), or the end of the text for the line after the last."""
    if index < len(lines) or (lines and lines[-1].endswith("\n")):
        return lsp.Position(line=index, character=0)
    return document.client_position_at_offset(len(document.source))
