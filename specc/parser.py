"""Text -> syntax tree, with Lark (LALR) and positions on every node."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .diagnostics import Note, SourceFile, Span, SpeccError
from .resources import data_dir

_OPEN, _CLOSE = {"LPAR", "LSQB"}, {"RPAR", "RSQB"}


class _NewlinePostLex:
    """Python-style newline handling for an LALR grammar.

    Newlines end statements, but not inside (...) or [...], not after `{`, and
    runs of blank or comment-only lines count once. That keeps the grammar free of
    optional-newline noise.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        previous: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0 or previous is None or previous.type in ("_NL", "LBRACE"):
                    continue
            elif tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(0, depth - 1)
            previous = tok
            yield tok


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    grammar = (data_dir("grammar") / "nnspec.lark").read_text(encoding="utf-8")
    # Built once per process (about 0.3 s), never cached on disk: Lark's cache is a pickle in the shared
    # temp directory, and unpickling a file another local user could plant runs their code.
    return Lark(grammar, parser="lalr", lexer="contextual", postlex=_NewlinePostLex(),
                propagate_positions=True, maybe_placeholders=True)


def _span(source: SourceFile, meta) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(source: SourceFile, tok: Token) -> Span:
    return Span(source, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


@v_args(meta=True, inline=True)
class _Builder(Transformer):
    """Lark tree -> `specc.ast` nodes."""

    def __init__(self, source: SourceFile) -> None:
        super().__init__()
        self.src = source

    def sp(self, meta) -> Span:
        return _span(self.src, meta)

    # --- top level
    @v_args(meta=True, inline=False)
    def start(self, meta, items):
        module = ast.Module(self.src.path)
        for item in items:
            if isinstance(item, ast.Import):
                module.imports.append(item)
            elif isinstance(item, ast.Definition):
                module.definitions.append(item)
            else:
                module.compressions.append(item)
        return module

    def import_stmt(self, meta, path):
        return ast.Import(path[1:-1], self.sp(meta))

    def _definition(self, kind, meta, name, params, body):
        return ast.Definition(kind, str(name), params or [], body, self.sp(meta), _tok_span(self.src, name))

    def model_def(self, meta, name, params, body):
        return self._definition("model", meta, name, params, body)

    def block_def(self, meta, name, params, body):
        return self._definition("block", meta, name, params, body)

    @v_args(meta=True, inline=False)
    def params(self, meta, items):
        return list(items)

    def param(self, meta, name, type_, default):
        return ast.Param(str(name), str(type_) if type_ is not None else None, default, self.sp(meta))

    @v_args(meta=True, inline=False)
    def body(self, meta, stmts):
        return list(stmts)

    # --- statements
    def input_stmt(self, meta, name, ttype):
        dtype, dtype_span, dims = ttype
        return ast.Input(self.sp(meta), str(name), dtype, dtype_span, dims)

    def tensor_type(self, meta, dtype, dims):
        return (str(dtype), _tok_span(self.src, dtype), dims or [])

    @v_args(meta=True, inline=False)
    def dims(self, meta, items):
        return list(items)

    def assign_stmt(self, meta, targets, value):
        return ast.Assign(self.sp(meta), targets, value)

    @v_args(meta=True, inline=False)
    def targets(self, meta, names):
        return [str(n) for n in names]

    def output_stmt(self, meta, names, value):
        return ast.Output(self.sp(meta), names, value)

    def return_stmt(self, meta, values):
        return ast.Return(self.sp(meta), values)

    @v_args(meta=True, inline=False)
    def columns_stmt(self, meta, items):
        *names, value = items
        return ast.Columns(self.sp(meta), [str(n) for n in names], value)

    # --- compression
    @v_args(meta=True, inline=False)
    def compress_def(self, meta, items):
        name, base, *stages = items
        return ast.CompressDef(str(name), str(base), stages, self.sp(meta), _tok_span(self.src, name))

    @v_args(meta=True, inline=False)
    def stage(self, meta, items):
        transform, *rest = items
        where = rest.pop() if rest and not isinstance(rest[-1], tuple) else None
        selectors = [sel for kind, sel in rest if kind == "on"]
        return ast.Stage(transform, selectors[:1], selectors[1:], where, self.sp(meta))

    def selector(self, meta, tok):
        expr = ast.String(self.sp(meta), tok[1:-1]) if tok.type == "STRING" else ast.Name(self.sp(meta), str(tok))
        return ("on", expr)

    # --- expressions
    @v_args(meta=True, inline=False)
    def exprs(self, meta, items):
        return list(items)

    def conditional(self, meta, then, cond, otherwise):
        return ast.Conditional(self.sp(meta), then, cond, otherwise)

    def compare(self, meta, left, op, right):
        return ast.Compare(self.sp(meta), str(op), left, right)

    def _bin(op):  # noqa: N805 - a small factory for the five arithmetic rules
        def rule(self, meta, left, right):
            return ast.BinOp(self.sp(meta), op, left, right)
        return rule

    add, sub, mul, div, mod = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("%")

    def neg(self, meta, operand):
        return ast.Neg(self.sp(meta), operand)

    def attribute(self, meta, value, name):
        return ast.Attribute(self.sp(meta), value, str(name))

    def call(self, meta, name, arguments, constraints):
        args, kwargs = arguments or ([], [])
        return ast.Call(self.sp(meta), str(name), _tok_span(self.src, name), args, kwargs, constraints)

    def repeat(self, meta, count, body, arguments):
        args, kwargs = arguments or ([], [])
        return ast.Repeat(self.sp(meta), count, body, args, kwargs)

    @v_args(meta=True, inline=False)
    def arguments(self, meta, items):
        args = [a for a in items if not isinstance(a, ast.Keyword)]
        kwargs = [a for a in items if isinstance(a, ast.Keyword)]
        first_kw = next((i for i, a in enumerate(items) if isinstance(a, ast.Keyword)), len(items))
        if any(not isinstance(a, ast.Keyword) for a in items[first_kw:]):
            bad = next(a for a in items[first_kw:] if not isinstance(a, ast.Keyword))
            raise SpeccError("E0102", "positional argument follows keyword argument", bad.span)
        return args, kwargs

    def keyword(self, meta, name, value):
        return ast.Keyword(str(name), value, self.sp(meta))

    @v_args(meta=True, inline=False)
    def constraint_body(self, meta, items):
        return list(items)

    def number(self, meta, tok):
        text = str(tok)
        is_int = all(c.isdigit() for c in text)
        return ast.Number(self.sp(meta), int(text) if is_int else float(text))

    def ratio(self, meta, tok):
        n, m = str(tok).split(":")
        return ast.Ratio(self.sp(meta), int(n), int(m))

    def string(self, meta, tok):
        return ast.String(self.sp(meta), str(tok)[1:-1])

    def name(self, meta, tok):
        return ast.Name(self.sp(meta), str(tok))

    def placeholder(self, meta):
        return ast.Placeholder(self.sp(meta))

    def ellipsis(self, meta):
        return ast.EllipsisLit(self.sp(meta))

    def list(self, meta, items):
        return ast.ListExpr(self.sp(meta), items or [])


_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "RATIO": "a ratio like 2:4",
    "_NL": "a new line", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "EQUAL": "`=`", "COLON": "`:`",
    "COMPARE": "a comparison", "DOT": "`.`", "$END": "the end of the file",
}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    known = {t.name for t in lark_parser().terminals}
    pattern = lark_parser().get_terminal(token_type).pattern.value if token_type in known else token_type
    return f"`{pattern}`" if isinstance(pattern, str) else token_type


def _expected(exc: UnexpectedInput) -> str:
    """What could come next, in words. The interactive parser knows exactly which
    tokens the parser accepts here (LALR's `expected` set can include tokens from
    merged states that would fail a step later); operators are summarized."""
    try:
        accepted = set(exc.interactive_parser.accepts())
    except Exception:  # an older state without an interactive parser: fall back to Lark's own set
        accepted = set(exc.expected)
    accepted.discard("$END")
    words = {_describe(t) for t in accepted if t not in _OPERATORS}
    if accepted & _OPERATORS:
        words.add("an operator")
    return ", ".join(sorted(words)) or "nothing more"


def _syntax_error(source: SourceFile, exc: UnexpectedInput) -> SpeccError:
    line, col = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, UnexpectedCharacters):
        char = source.line(line)[col - 1:col] or "?"
        if char == '"':
            return SpeccError("E0104", "unterminated string (strings end on the same line)",
                              Span(source, line, col, line, len(source.line(line)) + 1))
        return SpeccError("E0101", f"unexpected character `{char}`", Span(source, line, col, line, col + 1))
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        last = source.text.rstrip().splitlines() or [""]
        line = len(last)
        col = len(last[-1]) + 1
        error = SpeccError("E0103", f"unexpected end of file; expected {_expected(exc)}", Span(source, line, col,
                                                                                                line, col + 1))
        start = len(source.text)
    else:
        assert isinstance(exc, UnexpectedToken)
        tok = exc.token
        what = "end of line" if tok.type == "_NL" else f"`{tok}`"
        end_col = col + 1 if tok.type == "_NL" else (tok.end_column or col + len(tok))
        error = SpeccError("E0100", f"unexpected {what}; expected {_expected(exc)}",
                           Span(source, line, col, line, end_col))
        start = tok.start_pos
    opener = _unclosed_bracket(source, start)
    if opener is not None:
        error.with_note(Note("this bracket is not closed", opener))
    return error


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "COMPARE", "DOT", "IF"}


def _unclosed_bracket(source: SourceFile, upto: int) -> Span | None:
    """The innermost `(` or `[` still open at offset `upto`, for a helpful note."""
    stack: list[int] = []
    text = source.text[:upto]
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if ch == '"':
            end = text.find('"', i + 1)
            i = len(text) if end < 0 else end + 1
            continue
        if ch in "([":
            stack.append(i)
        elif ch in ")]" and stack:
            stack.pop()
        i += 1
    if not stack:
        return None
    offset = stack[-1]
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(source, line, col, line, col + 1)


def parse(source: SourceFile) -> ast.Module:
    """Parse one file; syntax errors become `SpeccError`s with a caret."""
    try:
        tree = lark_parser().parse(source.text + "\n")
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None
    try:
        return _Builder(source).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpeccError):
            raise exc.orig_exc from None
        raise
