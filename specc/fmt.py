"""`specc fmt`: the canonical layout of a .nnspec file, comments kept.

The formatter works on the grammar's own tokens (Lark's lexer, comments
included), so it never needs a second parser and cannot change what a file
means: it keeps every token and every line break between tokens, and only
rewrites the whitespace around them:

- indentation: 4 spaces per `{ ... }` body; a line continuing an open `(` or
  `[` is indented one more level than the line that opened it, and a line that
  starts with closers lines up with the line that opened them;
- spaces: one around binary operators (`**` too), `=` (except keyword arguments,
  `p=0.1`) and words; none inside brackets, before `,` `:` `)` `]`, around
  `.`, after a unary `-`, between a name and its `(` / `[`, or around the `:`
  of a slice (`x[:, 1:-1]`);
- blank lines: at most one in a row, none at the start or end of the file,
  after `{` or before `}`; exactly one before a top-level `model`, `block`,
  `compress` (and an `import` after other items), above its leading comments;
- comments: text kept (trailing blanks dropped); a comment after code is set
  off by exactly two spaces (as black does for `#`), so the output never depends
  on how the input happened to align it;
- long lines: a line whose code (indent included, a trailing comment not
  counted: it cannot be shortened) is wider than `line_width` is broken after a
  comma inside `( )` or `[ ]`, where a line break means nothing to the parser;
  the rest continues one level deeper, by the indentation rule above. The
  outermost comma that keeps the line within the width is chosen (the last of
  them), or the first comma if none does; this repeats until every line fits or
  has no comma left to break at. Lines are never joined;
- line endings: a file whose first line ends in CRLF is written with CRLF
  throughout, any other with LF.

`format_text` checks its own output: the same tokens in the same order, or it
raises. It is idempotent: `format_text(format_text(x)) == format_text(x)`: the
layout keeps line breaks and only re-derives blanks, and wrapping stops at a
fixed point, so formatted output offers nothing further to break.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import os
import sys
import threading
from copy import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from lark.exceptions import UnexpectedCharacters
from lark.lexer import BasicLexer, LexerThread

from . import ast
from .diagnostics import SourceFile, Span, SpeccError, load_source
from .escape import printable
from .parser import lark_parser, parse

INDENT = "    "
# Wider than 100 because the shipped specs were written to this width (model headers and calls with
# many size parameters run to ~115 columns) and every shipped spec is a fixed point of `specc fmt`.
LINE_WIDTH = 120


class Lexeme(NamedTuple):
    """One token of a spec, with 1-based line and column like `Span`s."""

    type: str  # a grammar terminal (NAME, MODEL, LPAR, COMMENT, _NL, ...), WS for blanks, ERROR for junk
    text: str
    offset: int
    line: int
    col: int

    @property
    def end_offset(self) -> int:
        return self.offset + len(self.text)


LAYOUT = frozenset({"_NL", "WS", "COMMENT"})


@lru_cache(maxsize=1)
def _lexer() -> BasicLexer:
    conf = copy(lark_parser().lexer_conf)
    conf.ignore = ()  # keep comments and blanks
    return BasicLexer(conf)


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Terminal names of the language's keywords (`MODEL`, `INPUT`, `ON`, ...), read from the grammar."""
    return frozenset(t.name for t in lark_parser().terminals
                     if t.pattern.type == "str" and t.pattern.value.isalpha())


def lex(text: str) -> list[Lexeme]:
    """Every token of `text`, layout included, by the grammar's lexer.

    Never fails: a character no terminal matches becomes an `ERROR` lexeme and
    lexing goes on after it, so editors can highlight half-typed files. Keywords
    are recognised everywhere (the parser's contextual lexer may read a keyword
    as a name where a keyword cannot stand, e.g. a parameter called `on`).
    """
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    out: list[Lexeme] = []

    def add(kind: str, value: str, offset: int) -> None:
        line = bisect.bisect_right(starts, offset)
        out.append(Lexeme(kind, value, offset, line, offset - starts[line - 1] + 1))

    base = 0
    while base < len(text):
        try:
            for tok in LexerThread.from_text(_lexer(), text[base:]).lex(None):
                kind = "WS" if tok.type.startswith("__IGNORE") else tok.type
                add(kind, str(tok), base + tok.start_pos)
            break
        except UnexpectedCharacters as exc:
            bad = base + exc.pos_in_stream
            add("ERROR", text[bad], bad)
            base = bad + 1
    return out


# ------------------------------------------------------------------ formatting
_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = frozenset(_OPENERS.values())
_OPERAND_END = frozenset({"NAME", "NUMBER", "STRING", "RATIO", "RPAR", "RSQB", "RBRACE", "UNDERSCORE",
                          "__ANON_0"})  # __ANON_0 is `...`
_BINARY = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "POW", "COMPARE"})
_ITEM_STARTS = frozenset({"MODEL", "BLOCK", "COMPRESS", "IMPORT"})


@dataclasses.dataclass
class _Line:
    tokens: list[Lexeme]  # significant tokens
    comment: Lexeme | None = None
    blank_before: int = 0  # blank lines above it in the input
    indent: int = 0
    text: str = ""  # the formatted code, without indent and comment
    cols: list[int] = dataclasses.field(default_factory=list)  # each token's column in `text` (0-based)
    # tokens after which a line break is allowed: (nesting depth, index) of each comma inside ( ) or [ ]
    breaks: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    rendered: str = ""  # the whole formatted line: indent, code and comment
    braces: int = 0  # `{` less `}` on the line
    parens: int = 0  # `(` and `[` less `)` and `]` on the line


@dataclasses.dataclass
class _Open:
    kind: str  # "body" ({...}), "params" (a definition's parameters), "call" (arguments), "index" (`x[...]`),
    # "group" ((...) or [...])
    outer: int  # indent of the line that opened it
    inner: int  # indent of lines inside it


def _split_lines(tokens: list[Lexeme]) -> list[_Line]:
    lines = [_Line([])]
    for tok in tokens:
        if tok.type == "_NL":
            breaks = tok.text.count("\n")
            lines.append(_Line([], blank_before=breaks - 1))
        elif tok.type == "COMMENT":
            lines[-1].comment = tok
        elif tok.type != "WS":
            lines[-1].tokens.append(tok)
    return [ln for ln in lines if ln.tokens or ln.comment]


def _spaced(prev: Lexeme | None, before: Lexeme | None, tok: Lexeme, stack: list[_Open]) -> bool:
    """Whether a space goes between `prev` and `tok` on one line (`before` is the token before `prev`)."""
    a, b = (prev.type if prev else ""), tok.type
    if stack and stack[-1].kind == "index" and "COLON" in (a, b):
        return a == "COMMA"  # `x[:, 1:-1]`: a slice's colons bind their bounds
    if b in ("COMMA", "RPAR", "RSQB", "COLON") or a in ("LPAR", "LSQB"):
        return False
    if stack and stack[-1].kind == "set" and (a == "LBRACE" or b == "RBRACE"):
        return False  # a set of categories: `{gas, oil}`
    if a == "LBRACE" and b == "RBRACE":
        return False  # an empty block: `constrain(raw, file="x.rules") {}`
    if a == "DOT" or b == "DOT":
        return a == "NUMBER"  # `3 .x` must not become `3.x`
    if a == "DOTDOT" or b == "DOTDOT":  # a range, `2..12`; but `1. ..3` must not become `1...3`
        return b == "DOTDOT" and prev is not None and prev.text.endswith(".")
    if a == "EQUAL" or b == "EQUAL":
        return not (stack and stack[-1].kind == "call")
    if b in ("LPAR", "LSQB"):
        return a not in ("NAME", "RPAR", "RSQB") and not (b == "LPAR" and _called(prev, before))
    if a == "MINUS" and (before is None or before.type not in _OPERAND_END):
        return False  # unary minus
    return True


def _layout(text: str, tokens: list[Lexeme] | None = None) -> list[_Line]:
    """The lines of `text` (whose lexemes `tokens` are, if given), laid out."""
    lines = _split_lines(lex(text) if tokens is None else tokens)
    stack: list[_Open] = []
    prev: Lexeme | None = None
    before: Lexeme | None = None
    stmt_indent = 0
    parens = 0  # open ( and [, as the parser counts them: line breaks inside them are not statement ends
    for line in lines:
        # indent: a line starting with closers lines up with the line that opened the outermost of them
        leading = 0
        while leading < len(line.tokens) and line.tokens[leading].type in _CLOSERS and leading < len(stack):
            leading += 1
        if leading:
            line.indent = stack[-leading].outer
        else:
            line.indent = stack[-1].inner if stack else 0
        if not stack or stack[-1].kind == "body":
            stmt_indent = line.indent
        parts: list[str] = []
        column = 0
        for i, tok in enumerate(line.tokens):
            if i and _spaced(prev, before, tok, stack):
                parts.append(" ")
                column += 1
            line.cols.append(column)
            parts.append(tok.text)
            column += len(tok.text)
            if tok.type == "COMMA" and parens > 0:
                line.breaks.append((len(stack), i))
            parens = max(parens + (tok.type in ("LPAR", "LSQB")) - (tok.type in ("RPAR", "RSQB")), 0)
            line.braces += (tok.type == "LBRACE") - (tok.type == "RBRACE")
            line.parens += (tok.type in ("LPAR", "LSQB")) - (tok.type in ("RPAR", "RSQB"))
            if tok.type in _OPENERS:
                if tok.type == "LBRACE" and prev is not None and prev.type == "IN":  # `heating in {gas, oil}`
                    stack.append(_Open("set", line.indent, line.indent + 1))
                elif tok.type == "LBRACE":
                    stack.append(_Open("body", stmt_indent, stmt_indent + 1))
                else:
                    stack.append(_Open(_paren_kind(tok, prev, before), line.indent, line.indent + 1))
            elif tok.type in _CLOSERS and stack:
                stack.pop()
            before, prev = prev, tok
        line.text = "".join(parts)
    return lines


def _called(word: Lexeme | None, before: Lexeme | None) -> bool:
    """Whether `word` before a `(` is the op `where(...)`, not a `where` clause: a compression stage's, which
    follows its selector (a name or a string), or a choice's, which follows its values or default."""
    return word is not None and word.type == "WHERE" and (before is None or before.type not in _OPERAND_END)


def _paren_kind(tok: Lexeme, prev: Lexeme | None, before: Lexeme | None) -> str:
    if tok.type != "LPAR":
        return "index" if prev is not None and prev.type in ("NAME", "RPAR", "RSQB") else "group"
    if _called(prev, before):
        return "call"
    if prev is not None and prev.type == "NAME":
        return "params" if before is not None and before.type in ("MODEL", "BLOCK") else "call"
    return "call" if prev is not None and prev.type == "RBRACE" else "group"  # `repeat n { ... } (x)`


def _blank_lines(lines: list[_Line], blank_before: list[int]) -> list[int]:
    """How many blank lines go above each line (`blank_before`: how many the input has)."""
    blanks = [min(b, 1) for b in blank_before]
    braces = parens = 0
    last_code: _Line | None = None
    for i, ln in enumerate(lines):
        first = ln.tokens[0].type if ln.tokens else None
        after_opener = i > 0 and bool(lines[i - 1].tokens) and lines[i - 1].tokens[-1].type in _OPENERS
        if i == 0 or parens > 0 or first in _CLOSERS or after_opener:
            blanks[i] = 0
        if braces == parens == 0 and first in _ITEM_STARTS and last_code is not None \
                and not (first == "IMPORT" and last_code.tokens[0].type == "IMPORT"):
            top = i  # the item's leading comments move with it
            while top > 0 and not lines[top - 1].tokens and blanks[top] == 0:
                top -= 1
            if top > 0:
                blanks[top] = 1
        braces, parens = max(braces + ln.braces, 0), max(parens + ln.parens, 0)
        if ln.tokens:
            last_code = ln
    return blanks


def format_text(text: str, path: str = "<text>", line_width: int = LINE_WIDTH,
                parts: Sequence[str | tuple[str, list[Lexeme] | None]] | None = None) -> str:
    """The canonical form of a spec. Raises `SpeccError` if it does not parse.

    `line_width` is the width long lines are wrapped to (see the module's docstring). The result
    keeps the text's line endings: CRLF if its first line ends in CRLF (editors on Windows send
    such buffers to the language server's formatting, which calls this), LF otherwise.

    `parts` (the language server's) is `text` cut where top-level items start, each part known to
    parse on its own (optionally with its lexemes): then nothing is parsed, and each part's layout
    is cached by its text, so formatting a 2,000-line file after an edit lays out one item (see
    `format_parts`).
    """
    if parts is None:
        parse(SourceFile(path, text))  # only well-formed specs are formatted
        parts = [text]
    elif "".join(p if isinstance(p, str) else p[0] for p in parts) != text:
        raise ValueError("the parts do not make up the text")
    return format_parts(parts, line_width, "\r\n" if _crlf(text) else "\n")


def format_parts(parts: Sequence[str | tuple[str, list[Lexeme] | None]], line_width: int = LINE_WIDTH,
                 newline: str = "\n") -> str:
    """The canonical form of the text the parts make up, which must parse; every part but the first
    starts a top-level item at the start of a line (as `specc.lsp.analysis.split_chunks` cuts).

    At such a cut no bracket is open, so the layout of a line (its indent, spaces and breaks) depends
    on its part alone and is computed per part, once per text (`_part_layout`). Only the blank lines
    look across parts (an item's leading comments are the end of the previous part): they are
    counted over the whole file, from each line's summary, in time linear in its lines.
    """
    lines: list[_Line] = []
    blank_before: list[int] = []
    trailing = 0  # newlines ending the previous part: the blank lines above the next part's first line
    for part in parts:
        text, tokens = (part, None) if isinstance(part, str) else part
        layout = _part_layout(text, line_width, tokens)
        for i, ln in enumerate(layout.lines):
            blank_before.append(trailing - 1 if i == 0 and layout.leading < 0 and trailing else ln.blank_before)
        lines.extend(layout.lines)
        trailing = layout.trailing
    blanks = _blank_lines(lines, blank_before)
    out: list[str] = []
    for ln, blank in zip(lines, blanks):
        out.extend([""] * blank)
        out.append(ln.rendered)
    return newline.join(out) + newline if out else ""


class _PartLayout(NamedTuple):
    lines: list[_Line]
    leading: int  # -1 if the part's first line has no line break before it (the next part's first line)
    trailing: int  # the newlines of the line break the part ends with (0 if none)


_LAYOUTS: dict[tuple[str, int], _PartLayout] = {}
_LAYOUTS_LOCK = threading.Lock()


def _part_layout(text: str, width: int, tokens: list[Lexeme] | None = None) -> _PartLayout:
    """The laid-out, wrapped lines of one part, checked to keep its tokens (cached by text and width;
    `tokens`, if given, are the part's lexemes, so that it need not be lexed again)."""
    key = (text, width)
    with _LAYOUTS_LOCK:
        hit = _LAYOUTS.get(key)
    if hit is not None:
        return hit
    original = lex(text) if tokens is None else tokens
    work, lexemes = text, original
    while True:
        lines = _layout(work, lexemes)
        cuts = _wrap_points(lines, width)
        if not cuts:
            break
        # a line break right after each chosen comma; the next layout indents what follows
        for offset in sorted(cuts, reverse=True):
            work = work[:offset] + "\n" + work[offset:]
        lexemes = lex(work)
    for ln in lines:
        code = INDENT * ln.indent + ln.text
        if ln.comment is not None:
            comment = ln.comment.text.rstrip()
            code = code + "  " + comment if ln.text else INDENT * ln.indent + comment
        ln.rendered = code.rstrip()
    if _significant(original) != _significant(lex("\n".join(ln.rendered for ln in lines))):
        raise RuntimeError("specc fmt would change the tokens of this file (a bug in specc.fmt)")
    significant = [t for t in original if t.type != "WS"]
    leading = 0 if significant and significant[0].type == "_NL" else -1
    trailing = original[-1].text.count("\n") if original and original[-1].type == "_NL" else 0
    layout = _PartLayout(lines, leading, trailing)
    with _LAYOUTS_LOCK:
        if len(_LAYOUTS) >= 2048:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def _crlf(text: str) -> bool:
    """Whether the text's first line ends in CRLF (its line-ending style, as black decides it)."""
    end = text.find("\n")
    return end > 0 and text[end - 1] == "\r"


def _wrap_points(lines: list[_Line], width: int) -> list[int]:
    """Where to break the lines wider than `width`: the offset (in the laid-out text) just after one
    comma of each such line that has a comma to break at, not its last token and not before a closer
    (a break there would shorten nothing). The outermost comma that keeps the line within the width
    (the last of them), else the first comma: breaking there leaves the least on the long line."""
    cuts: list[int] = []
    for ln in lines:
        base = len(INDENT) * ln.indent
        if not ln.text or base + len(ln.text) <= width:
            continue
        options = [(depth, i) for depth, i in ln.breaks
                   if i + 1 < len(ln.tokens) and ln.tokens[i + 1].type not in _CLOSERS]
        if not options:
            continue
        fitting = [(depth, i) for depth, i in options if base + ln.cols[i] + 1 <= width]
        if fitting:
            outer = min(depth for depth, _ in fitting)
            index = max(i for depth, i in fitting if depth == outer)
        else:
            index = options[0][1]
        cuts.append(ln.tokens[index].end_offset)
    return cuts


def _significant(lexemes: list[Lexeme]) -> list[tuple[str, str]]:
    """The tokens that carry meaning. A ratio counts as its parts: `x[1 : 3]` formats to `x[1:3]`, which
    lexes as the ratio `1:3` (and means the same slice)."""
    out: list[tuple[str, str]] = []
    for t in lexemes:
        if t.type == "RATIO":
            n, m = t.text.split(":")
            out += [("NUMBER", n), ("COLON", ":"), ("NUMBER", m)]
        elif t.type not in ("WS", "_NL"):
            out.append((t.type, t.text.rstrip() if t.type == "COMMENT" else t.text))
    return out


def syntax_shape(node: Any) -> Any:
    """A syntax tree without positions, to compare two parses of differently laid-out text."""
    if isinstance(node, list):
        return [syntax_shape(n) for n in node]
    if isinstance(node, tuple):  # e.g. a `shard` statement's (layer, span) pairs
        return tuple(syntax_shape(n) for n in node if not isinstance(n, Span))
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            syntax_shape(getattr(node, f.name)) for f in dataclasses.fields(node)
            if not f.name.endswith("span") and not (isinstance(node, ast.Module) and f.name == "path"))
    return node


def diff(old: str, new: str, path: str) -> str:
    """A unified diff from `old` to `new`, as `specc fmt --check` prints it."""
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (original)",
                                        f"{path} (formatted)"))


def format_file(path: Path, check: bool = False, line_width: int = LINE_WIDTH) -> bool:
    """Format one file in place (atomically), or with `check` only print the diff.

    Returns whether the file was already formatted. Syntax errors raise `SpeccError`.
    """
    from .output import write_atomic

    source = load_source(path)
    formatted = format_text(source.text, str(path), line_width)
    if formatted == source.text:
        return True
    if check:
        _print_diff(source.text, formatted, str(path))
        print(f"would reformat {printable(str(path))}", file=sys.stderr)
    else:
        # a symlinked spec stays a link: the file it points to is rewritten
        write_atomic(Path(path), formatted.encode("utf-8"), follow_symlink=True)
        print(f"reformatted {printable(str(path))}", file=sys.stderr)
    return False


def format_stdin(check: bool = False, line_width: int = LINE_WIDTH, name: str = "<stdin>") -> bool:
    """`specc fmt -`: format the spec on standard input to standard output (byte for byte, so CRLF
    stays CRLF), or with `check` print only the diff. `name` is the path shown in messages.

    Returns whether the input was already formatted. Syntax errors raise `SpeccError` and print nothing
    to standard output, so an editor piping a buffer through never receives half a file.
    """
    text = read_stdin(name)
    formatted = format_text(text, name, line_width)
    if check:
        if formatted != text:
            _print_diff(text, formatted, name)
            print(f"would reformat {printable(name)}", file=sys.stderr)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(formatted.encode("utf-8"))
        sys.stdout.buffer.flush()
    return formatted == text


def read_stdin(name: str = "<stdin>") -> str:
    """Standard input as a spec's text, under the same rules as a spec file (`read_text`): at most
    `file_bytes` bytes, UTF-8 (a byte-order mark dropped); anything else is `SpeccError("E0001")`."""
    from . import limits

    limit = limits.value("file_bytes")
    try:
        data = sys.stdin.buffer.read(limit + 1)
    except OSError as exc:
        raise SpeccError("E0001", f"cannot read spec file {printable(name)}: "
                                  f"{(exc.strerror or str(exc)).lower()}", None) from None
    if len(data) > limit:
        raise limits.exceeded("file_bytes", len(data), None, what=f"spec file {printable(name)}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpeccError("E0001", f"cannot read spec file {printable(name)}: not UTF-8 text "
                                  f"(invalid byte 0x{data[exc.start]:02x} at line {line})", None) from None


def _print_diff(old: str, new: str, path: str) -> None:
    sys.stdout.write("\n".join(printable(line) for line in diff(old, new, path).split("\n")))


SKIPPED_DIRECTORIES = frozenset({"node_modules", "__pycache__", "venv"})


def spec_files(paths: list[Path]) -> list[Path]:
    """The files `specc fmt PATH...` formats, in order, each once: a file as named (whatever its
    suffix), a directory's `*.nnspec` files recursively in sorted order, as black and ruff walk.
    A walk skips hidden directories (`.git`, `.venv`), `node_modules`, `__pycache__` and `venv`, and
    does not follow symbolic links to directories (a link back up would never end). A path that
    does not exist is kept: formatting it reports the error."""
    out: list[Path] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for path in paths:
        if not path.is_dir():
            add(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRECTORIES)
            for name in sorted(files):
                if name.endswith(".nnspec") and not name.startswith("."):
                    add(Path(root) / name)
    return out
