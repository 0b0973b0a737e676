"""Text -> syntax tree, with Lark (LALR) and positions on every node."""

from __future__ import annotations

import functools
import json
import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from lark import Lark, Token, Tree, v_args
from lark.exceptions import GrammarError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from . import ast, limits
from .diagnostics import Note, SourceFile, Span, SpeccError
from .resources import data_dir
from .types import MAX_INT

_OPEN, _CLOSE = {"LPAR", "LSQB"}, {"RPAR", "RSQB"}


class _TooDeep(Exception):
    """The post-lexer met a bracket nested deeper than the `nesting` limit (it has no source to make a span)."""

    def __init__(self, token: Token, depth: int) -> None:
        super().__init__(depth)
        self.token = token
        self.depth = depth


class _NewlinePostLex:
    """Python-style newline handling for an LALR grammar.

    Newlines end statements, but not inside (...) or [...], not after `{`, and
    runs of blank or comment-only lines count once. That keeps the grammar free of
    optional-newline noise.

    It also stops at the first bracket nested deeper than the `nesting` limit, before
    the parser builds a tree too deep for the recursive passes after it.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        limit = limits.value("nesting")
        previous: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0 or previous is None or previous.type in ("_NL", "LBRACE"):
                    continue
            elif tok.type in _OPEN:
                depth += 1
                if depth > limit:
                    raise _TooDeep(tok, depth)
            elif tok.type in _CLOSE:
                depth = max(0, depth - 1)
            previous = tok
            yield tok


_LARK_OPTIONS: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "propagate_positions": True,
                                  "maybe_placeholders": True}
_TABLES = Path(__file__).with_name("parser_tables.json")  # generated from the grammar by `write_tables`


@lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The parser, loaded from its tables (`specc/parser_tables.json`) when they were generated from this
    grammar by this Lark: building it from the grammar takes 0.1-0.3 s, which every `specc` command and
    the language server's first diagnostics would wait for; loading the tables takes about 10 ms. The
    tables are JSON in the package (no pickle: Lark's own cache is a pickle in the shared temp directory,
    and unpickling a file another local user could plant runs their code). With the grammar edited, or
    another Lark installed, the parser is built from the grammar instead, and tests/test_parser.py fails
    until the tables are regenerated with `write_tables()`."""
    grammar = _grammar()
    tables = json.loads(_TABLES.read_text(encoding="utf-8"), object_pairs_hook=_int_keys) if _TABLES.is_file() else {}
    if tables.get("key") == list(_tables_key(grammar)):
        parser = Lark._load_from_dict(tables["data"], tables["memo"], postlex=_NewlinePostLex())
    else:
        parser = Lark(grammar, postlex=_NewlinePostLex(), **_LARK_OPTIONS)
    _pass_through(parser)
    return parser


def _grammar() -> str:
    return (data_dir("grammar") / "nnspec.lark").read_text(encoding="utf-8")


def _int_keys(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    """JSON keeps only string keys; Lark's tables are keyed by state and memo numbers (no name is all digits)."""
    return {int(k) if k.isdigit() else k: v for k, v in pairs}


def _tables_key(grammar: str) -> tuple[str, str]:
    """What the tables must have been generated from: the grammar's text (and the options), and Lark's version."""
    import hashlib

    import lark

    return hashlib.sha256((grammar + repr(sorted(_LARK_OPTIONS.items()))).encode()).hexdigest(), lark.__version__


def write_tables() -> Path:
    """Regenerate `specc/parser_tables.json` from grammar/nnspec.lark (run after editing the grammar):
    `python -c "import specc.parser as p; p.write_tables()"`."""
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    grammar = _grammar()
    built = Lark(grammar, postlex=_NewlinePostLex(), **_LARK_OPTIONS)
    data, memo = built.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}  # given again when loading
    _TABLES.write_text(json.dumps({"key": _tables_key(grammar), "data": data, "memo": memo},
                                  separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    return _TABLES


def _first(children: list) -> object:
    return children[0]


def _pass_through(parser: Lark) -> None:
    """Reduce each rule that only passes its one subtree on (`?sum: product`, and the other steps of the
    precedence ladder) by handing the subtree on, without Lark's wrappers. They would return that subtree
    too, after propagating positions from it to itself; but each name or number climbs eight such rules,
    three quarters of all reductions. The trees, positions included, are the same; a Lark whose internals
    are laid out otherwise is left as it is (this is only faster)."""
    callbacks = getattr(getattr(getattr(parser.parser, "parser", None), "parser", None), "callbacks", None)
    if not isinstance(callbacks, dict):
        return
    for rule in callbacks:
        if rule.options.expand1 and not rule.alias and len(rule.expansion) == 1 and not rule.expansion[0].is_term:
            callbacks[rule] = _first


def _span(source: SourceFile, meta) -> Span:
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(source: SourceFile, tok: Token) -> Span:
    return Span(source, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


# Rules that only group the parts of a statement or a call; they add no level of nesting
# (`f(a=g(x))` is two levels, like `f(g(x))`). Nodes without a subexpression (names, numbers, `f()`)
# add none either, so the depth of an expression is the number of calls, lists and operators
# around its innermost leaf.
_GROUPING = frozenset({
    "start", "import_stmt", "model_def", "block_def", "params", "param", "body", "input_stmt", "tensor_type",
    "dims", "assign_stmt", "targets", "output_stmt", "return_stmt", "columns_stmt", "compress_def", "stage",
    "selector", "exprs", "arguments", "keyword", "constraint_body", "subscripts", "choice_in", "choice_set",
    "choice_dist", "conditions",
})
_CHAINS = frozenset({"add", "sub", "mul", "div", "mod", "power"})


def _check_nesting(source: SourceFile, tree: Tree) -> None:
    """Stop at the first subexpression nested deeper than the `nesting` limit.

    Brackets are counted while lexing; this catches what needs none: `- - - x` and
    long sums `a + b + ...`, whose parse trees are as deep as they are long. It walks the
    tree with an explicit stack, so it cannot overflow however deep the tree is; after
    it, every recursive consumer (the lowering, the formatter, the language server) sees
    at most `nesting` levels.
    """
    limit = limits.value("nesting")
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        children = [child for child in node.children if isinstance(child, Tree)]
        if node.data not in _GROUPING and children:
            depth += 1
            if depth > limit:
                error = limits.exceeded("nesting", depth, _span(source, node.meta), "this subexpression")
                if node.data in _CHAINS:
                    error.with_note(Note("each operator of a chain like `a + b + c` nests one level deeper; "
                                         "split a long one into several statements"))
                raise error
        stack.extend((child, depth) for child in children)


@v_args(meta=True, inline=True)
class _Builder(Transformer_NonRecursive):
    """Lark tree -> `specc.ast` nodes. Lark's non-recursive transformer: it runs before any depth is known
    to be safe (`_check_nesting` runs first, but with a `--limit nesting` raised high it must still cope)."""

    def __init__(self, source: SourceFile) -> None:
        super().__init__(visit_tokens=False)  # no token callbacks: asking for one per token raised per token
        self.src = source
        self._methods: dict[str, Any] = {}
        # the class's `v_args` wraps `sp` too, anew on each access (once per node); this plain function
        # shadows it
        self.sp = functools.partial(_span, source)  # type: ignore[method-assign]

    def _call_userfunc(self, tree, new_children=None):
        """Lark's, with each rule's method looked up once per parse: `v_args` builds a new wrapper on
        every attribute access (a quarter of the time of building the tree of a big file)."""
        children = new_children if new_children is not None else tree.children
        f = self._methods.get(tree.data)
        if f is None:
            f = self._methods[tree.data] = getattr(self, tree.data, False)
        if f is False:
            return self.__default__(tree.data, children, tree.meta)
        try:
            wrapper = getattr(f, "visit_wrapper", None)
            return f(children) if wrapper is None else wrapper(f, tree.data, children, tree.meta)
        except GrammarError:
            raise
        except Exception as e:
            raise VisitError(tree.data, tree, e)

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
        for p in params or []:
            if p.choice is not None:  # a block's parameters are its call's arguments: the model chooses
                raise SpeccError("E0952", f"parameter `{p.name}` of block `{name}` is a choice; choices belong "
                                          "on a model's parameters", p.choice.span,
                                 help=f"make it a choice of the model and pass it to `{name}`")
        return self._definition("block", meta, name, params, body)

    @v_args(meta=True, inline=False)
    def params(self, meta, items):
        """The parameters, each name once: a second `hidden` would silently shadow the first (the
        lowering binds parameters by name), dropping an argument and changing the model's sizes."""
        seen: dict[str, ast.Param] = {}
        for p in items:
            first = seen.setdefault(p.name, p)
            if first is not p:
                raise SpeccError("E0203", f"parameter `{p.name}` is declared twice", self._param_name(p),
                                 help="give each parameter its own name").with_note(
                    Note("first declared here", self._param_name(first)))
        return list(items)

    def _param_name(self, p: ast.Param) -> Span:
        return Span(self.src, p.span.line, p.span.col, p.span.line, p.span.col + len(p.name))

    def param(self, meta, name, type_, choice, default, where):
        if isinstance(type_, tuple):  # a tensor type: (dtype, its span, dims)
            if choice is not None or where is not None:
                raise SpeccError("E0955", "a tensor parameter cannot be a choice", (choice or where).span)
            return ast.Param(str(name), type_[0], default, self.sp(meta), type_[2])
        if where is not None and choice is None:
            raise SpeccError("E0953", f"`where` constrains a choice, but `{name}` is not one", where.span,
                             help=f"give `{name}` a set, a range or a distribution: `{name}: int in [...]`")
        type_name = str(type_) if type_ is not None else None
        if choice is not None:
            from .space import check_choice_type  # the rules of choices live with spaces

            check_choice_type(str(name), type_name, choice)
        return ast.Param(str(name), type_name, default, self.sp(meta), choice=choice, where=where)

    @v_args(meta=True, inline=False)
    def conditions(self, meta, items):
        return items[0] if len(items) == 1 else ast.Logic(self.sp(meta), "and", list(items))

    def choice_in(self, meta, low, _dots, high):
        if high is not None:
            return ast.Choice("range", self.sp(meta), low=low, high=high)
        if not isinstance(low, ast.ListExpr):
            raise SpeccError("E0956", "a choice is a list `in [a, b]`, a set `in {a, b}` or a range `in a..b`",
                             low.span)
        return ast.Choice("list", self.sp(meta), items=low.items)

    def choice_set(self, meta, items):
        return ast.Choice("set", self.sp(meta), items=items or [])

    def choice_dist(self, meta, call):
        return ast.Choice("dist", self.sp(meta), dist=call)

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

    def tie_stmt(self, meta, target, source):
        return ast.Tie(self.sp(meta), target[0], target[1], source[0], source[1])

    @v_args(meta=True, inline=False)
    def shard_stmt(self, meta, items):
        *layers, style = items
        return ast.Shard(self.sp(meta), layers, str(style), _tok_span(self.src, style))

    @v_args(meta=True, inline=False)
    def tie_key(self, meta, items):
        if len(items) == 1 and items[0].type == "STRING":
            return items[0][1:-1], _tok_span(self.src, items[0])
        return ".".join(str(t) for t in items), self.sp(meta)

    @v_args(meta=True, inline=False)
    def columns_stmt(self, meta, items):
        *names, value = items
        return ast.Columns(self.sp(meta), [str(n) for n in names], value)

    # --- compression
    @v_args(meta=True, inline=False)
    def compress_def(self, meta, items):
        name, base, *stages = items
        return ast.CompressDef(str(name), str(base), stages, self.sp(meta), _tok_span(self.src, name),
                               _tok_span(self.src, base))

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

    def implies(self, meta, left, _arrow, right):
        return ast.Logic(self.sp(meta), "->", [left, right])

    def either(self, meta, left, right):
        return ast.Logic(self.sp(meta), "or", [left, right])

    def both(self, meta, left, right):
        return ast.Logic(self.sp(meta), "and", [left, right])

    def negate(self, meta, operand):
        return ast.Logic(self.sp(meta), "not", [operand])

    def member(self, meta, name, *categories):
        return ast.Member(self.sp(meta), str(name), [(str(c), _tok_span(self.src, c)) for c in categories],
                          _tok_span(self.src, name))

    def categorical(self, meta, name, *categories):
        return ast.CategoricalDecl(self.sp(meta), str(name), [(str(c), _tok_span(self.src, c)) for c in categories])

    def _bin(op):  # noqa: N805 - a small factory for the five arithmetic rules
        def rule(self, meta, left, right):
            return ast.BinOp(self.sp(meta), op, left, right)
        return rule

    add, sub, mul, div, mod, power = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("%"), _bin("**")

    def index(self, meta, value, items):
        return ast.Index(self.sp(meta), value, [_as_slice(item) for item in items])

    @v_args(meta=True, inline=False)
    def subscripts(self, meta, items):
        return list(items)

    def slice(self, meta, start, end, step):
        # `1:3:2` lexes as the ratio `1:3`, then `:2`, and `a:2:4` as `a`, then the ratio `2:4`: a ratio
        # is two bounds, and the parts are read in order (an omitted step after a ratio is dropped)
        parts: list[ast.Expr | None] = []
        for part in (start, end, step):
            parts.extend(_ratio_bounds(part) if isinstance(part, ast.Ratio) else [part])
        while len(parts) > 3 and parts[-1] is None:
            parts.pop()
        if len(parts) > 3:
            raise SpeccError("E0105", "a slice has at most two `:` (start:end:step)", self.sp(meta))
        return ast.Slice(self.sp(meta), *parts)

    def neg(self, meta, operand):
        return ast.Neg(self.sp(meta), operand)

    def attribute(self, meta, value, name):
        return ast.Attribute(self.sp(meta), value, str(name))

    def named(self, meta, value, name):
        text = name[1:-1] if name.type == "STRING" else str(name)
        return ast.Named(self.sp(meta), value, text, _tok_span(self.src, name))

    def call(self, meta, name, arguments, constraints):
        args, kwargs = arguments or ([], [])
        return ast.Call(self.sp(meta), str(name), _tok_span(self.src, name), args, kwargs, constraints)

    def repeat(self, meta, index, count, body, arguments):
        args, kwargs = arguments or ([], [])
        return ast.Repeat(self.sp(meta), count, body, args, kwargs, str(index) if index is not None else None)

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
        if all(c.isdigit() for c in text):
            return ast.Number(self.sp(meta), _int_literal(text, self.sp(meta)))
        value = float(text)
        if not math.isfinite(value):
            raise SpeccError("E0229", f"number out of range: {_clip(text)} is too large for a float (64-bit)",
                             self.sp(meta), help=f"floats must be finite, at most {MAX_FLOAT:.6g} in magnitude")
        return ast.Number(self.sp(meta), value)

    def ratio(self, meta, tok):
        n, m = str(tok).split(":")
        return ast.Ratio(self.sp(meta), _int_literal(n, self.sp(meta)), _int_literal(m, self.sp(meta)))

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


def _ratio_bounds(ratio: ast.Ratio) -> tuple[ast.Expr, ast.Expr]:
    """The two numbers of a ratio token read as slice bounds (`x[1:3]` lexes `1:3` as a ratio)."""
    return ast.Number(ratio.span, ratio.n), ast.Number(ratio.span, ratio.m)


def _as_slice(item: ast.Expr) -> ast.Expr:
    return ast.Slice(item.span, *_ratio_bounds(item), None) if isinstance(item, ast.Ratio) else item


MAX_FLOAT = sys.float_info.max  # numbers in a spec are what the targets can hold: int64 and float64


def _clip(text: str) -> str:
    """A literal as shown in a message: a 5,000-digit number is shown by its length."""
    return text if len(text) <= 24 else f"{text[:8]}...{text[-4:]} ({len(text):,} characters)"


def _int_literal(text: str, span: Span) -> int:
    """An integer literal, which must fit int64. Checked on the digits before converting: Python
    refuses to convert more than 4,300 digits, and no target can use more than 19."""
    digits = text.lstrip("0")
    if len(digits) > len(str(MAX_INT)) or int(digits or "0") > MAX_INT:
        raise SpeccError("E0229", f"number out of range: {_clip(text)} is too large for an int (64-bit)", span,
                         help=f"ints must be at most {MAX_INT:,}")
    return int(digits or "0")


_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "RATIO": "a ratio like 2:4",
    "_NL": "a new line", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "EQUAL": "`=`", "COLON": "`:`",
    "COMPARE": "a comparison", "DOT": "`.`", "POW": "`**`", "$END": "the end of the file",
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


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "POW", "COMPARE", "DOT", "IF"}


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


_FRAMES_PER_LEVEL = 10  # Python frames the deepest consumer, the lowering, may spend per level of nesting
_MAX_RECURSION = 20_000  # more could overflow the C stack where recursion runs through generators


def _make_room(nesting: int) -> None:
    """Raise Python's recursion limit (1,000 frames) to what a spec at the `nesting` limit needs.

    The lowering evaluates an expression recursively, a few frames per level (up to 5 for a
    block call, whose body nests on), so at 200 levels it needs more than Python allows by
    default. This is the one place that raises it; it never lowers it. Python-to-Python calls
    do not grow the C stack (3.11+), so the higher limit is safe; it is capped for the
    recursion that does (nested generators), which only a much raised `nesting` limit reaches."""
    wanted = min(1000 + _FRAMES_PER_LEVEL * nesting, _MAX_RECURSION)
    if sys.getrecursionlimit() < wanted:
        sys.setrecursionlimit(wanted)


def parse(source: SourceFile) -> ast.Module:
    """Parse one file; syntax errors become `SpeccError`s with a caret. Nesting deeper than the
    `nesting` limit is an error too, and Python's recursion limit is made room for the rest."""
    _make_room(limits.value("nesting"))
    try:
        tree = lark_parser().parse(source.text + "\n")
    except UnexpectedInput as exc:
        raise _syntax_error(source, exc) from None
    except _TooDeep as exc:
        raise limits.exceeded("nesting", exc.depth, _tok_span(source, exc.token), "this bracket") from None
    _check_nesting(source, tree)
    try:
        return _Builder(source).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpeccError):
            raise exc.orig_exc from None
        raise
