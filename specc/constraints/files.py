"""Constraint files: large sets kept next to the spec, and pishield's requirements format.

`constrain(raw, file="rules.txt") { ... }` adds a file's constraints to the block's.
Two formats are read, told apart by their content:

specc's own, one constraint per line, in the syntax of a `constrain` block, with
an optional `order` line (the same as `order=` in the spec, which wins if both
are given); `#` and `//` start comments:

    order age income debt loan
    age >= 18
    loan - 0.5 * income - debt <= 0      // coefficients may be fractions: income / 3
    debt <= 0.5 * income or loan <= 10   // `or`, `and`, `not`, `->` as in a block (one formula a line)

pishield's requirements format, recognized by its mandatory `ordering` line
(see specc.constraints.pishield_format):

    ordering y_0 y_1 y_2 y_3
    y_0 >= 18
    -y_3 + 0.5y_1 + y_2 >= 0

Errors point at the line of the file.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from .. import limits
from ..diagnostics import SourceFile, Span, SpeccError, read_text
from ..escape import printable
from . import LinearConstraint, exact_number
from .categorical import CATEGORICAL_AS_NUMBER, NOT_CATEGORICAL, Categorical, declare, membership
from .disjunctive import Formula, clauses_of, negated
from .propositional import BAD_LABELS, MIXED, Labels, atom

FILE_ERROR = "E0706"
READ_ERROR = "E0708"  # the file cannot be read, or is outside the spec's directory (CLI exit status 2)


@dataclass(frozen=True)
class ConstraintFile:
    constraints: tuple[LinearConstraint, ...]
    order: tuple[str, ...] | None  # column names, from an `order` / `ordering` line
    format: str  # "specc" or "pishield"
    # lines with `or` / `not` / `->` whose normal form is no conjunction of inequalities (specc's format)
    formulas: tuple[Formula, ...] = ()
    # categorical variables: those given (declared in the block) and the file's `name = [a, b]` lines
    categoricals: tuple[Categorical, ...] = ()
    # `probabilities a, b` / `logits a, b`: label columns; lines over them alone are propositional
    # (specc.constraints.propositional), kept apart: their clauses depend on the repair order
    labels: Labels | None = None
    propositions: tuple[Formula, ...] = ()


def load_constraints(path: str | Path, columns: Sequence[str], within: str | Path | None = None,
                     groups: Sequence[Categorical] = ()) -> ConstraintFile:
    """Read and parse a constraints file over `columns` (names in declaration order).

    The file is read like a spec (`read_text`: a regular UTF-8 file under the `file_bytes` limit) and,
    with `within` (the directory of the spec that names it), must lie in that directory or below
    after resolving symlinks and `..`: a spec cannot make specc read `/etc/passwd`. Any extension is
    allowed. A parse error quotes the offending line only if the lines before it hold a constraint
    or an order (a rules file with a mistake); otherwise the file may be anything (a `.env`, a key)
    and the error gives the line's number but none of its content.
    """
    shown = printable(str(path))
    if within is not None:
        root = Path(within).resolve()
        if not Path(path).resolve().is_relative_to(root):
            raise SpeccError(READ_ERROR, f"cannot read constraints file {shown}: it is outside the spec's "
                                         f"directory {printable(str(root))}", None,
                             help="a rules file must be in the directory of the spec that names it, or below")
    source = SourceFile(str(path), read_text(path, READ_ERROR, what="constraints file"))
    try:
        return parse_constraints(source, columns, groups)
    except SpeccError as err:
        span = err.span
        if span is None or span.source is not source or _has_rules_before(source, span.line, columns):
            raise
        hidden = Span(SourceFile(source.path, "", quotable=False), span.line, span.col, span.line, span.col + 1)
        raise SpeccError(err.code, f"line {span.line} of {shown} is not a constraint, and no line before it is "
                                   "one, so this may not be a rules file (its content is not shown)", hidden,
                         help="a rules file holds one linear inequality per line, and optionally an `order` "
                              "(or pishield's `ordering`) line") from None


def _has_rules_before(source: SourceFile, line: int, columns: Sequence[str]) -> bool:
    """Whether the lines before `line` parse as rules and hold at least one constraint or order."""
    prefix = SourceFile(source.path, "\n".join(source.text.splitlines()[:line - 1]))
    try:
        parsed = parse_constraints(prefix, columns)
    except SpeccError:
        return False
    return bool(parsed.constraints) or bool(parsed.formulas) or parsed.order is not None or bool(parsed.categoricals)


def parse_constraints(source: SourceFile, columns: Sequence[str], groups: Sequence[Categorical] = ()) -> ConstraintFile:
    if any(_strip(line).split()[:1] == ["ordering"] for line in source.text.splitlines()):
        from .pishield_format import parse_pishield

        return parse_pishield(source, columns)
    return parse_specc(source, columns, groups)


# ------------------------------------------------------------------ specc's format
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op><=|>=|==|!=|->|[<>+\-*/(){},\[\]=]))")
# `heating = [gas, electric, heat_pump]`: a categorical variable over one-hot columns
_DECLARATION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\[")
_LOGIC = frozenset({"or", "and", "not", "->"})


def parse_specc(source: SourceFile, columns: Sequence[str], groups: Sequence[Categorical] = ()) -> ConstraintFile:
    categoricals: list[Categorical] = list(groups)
    constraints: list[LinearConstraint] = []
    formulas: list[Formula] = []
    order: tuple[str, ...] | None = None
    order_line = (0, "")
    labels: Labels | None = None
    propositions: list[Formula] = []
    index = {name: i for i, name in enumerate(columns)}
    for number, raw in enumerate(source.text.splitlines(), start=1):
        line = _strip(raw)
        if not line.strip():
            continue
        words = line.split()
        if words[0] == "order" and not any(ch in line for ch in "<>=+-*/"):
            order = tuple(w for w in line.replace(",", " ").split()[1:])
            order_line = (number, raw)  # its names are checked at the end (a categorical variable may follow)
            continue
        if words[0] in ("probabilities", "logits") and not any(ch in line for ch in "<>=+-*/"):
            labels = _labels(source, number, raw, words[0], columns, labels)
            continue
        if _DECLARATION.match(line):
            categoricals.append(_declaration(source, number, raw, columns, categoricals))
            continue
        check_count([*constraints, *formulas], source, number, raw)
        parser = _LineParser(source, number, raw, columns, index, categoricals, labels)
        if not any(text in _LOGIC for _, text, _ in parser.tokens):
            single = parser.constraint()
            if parser.saw_label:
                propositions.append(Formula(((single,),), single.text, single.span))
            else:
                constraints.append(single)
            continue
        formula = parser.formula()
        if parser.saw_label:
            propositions.append(formula)
            continue
        if formulas or any(len(clause) > 1 for clause in formula.clauses):
            formulas.append(formula)
        else:  # a conjunction of inequalities, so far: linear constraints
            constraints.extend(clause[0] for clause in formula.clauses)
    for name in order or ():
        if name not in columns and all(g.name != name for g in categoricals):
            number, raw = order_line
            raise _error(source, number, raw.index(name), len(name), f"unknown column `{name}` in `order`",
                         f"the columns: {', '.join(columns)}"
                         + "".join(f"; categorical variable: {g.name}" for g in categoricals))
    if formulas:  # one formula a line, the linear lines as one-literal ones (the order of lines kept)
        return ConstraintFile((), order, "specc", _in_line_order(constraints, formulas), tuple(categoricals),
                              labels, tuple(propositions))
    return ConstraintFile(tuple(constraints), order, "specc", (), tuple(categoricals), labels, tuple(propositions))


def _labels(source: SourceFile, number: int, raw: str, kind: str, columns: Sequence[str],
            before: Labels | None) -> Labels:
    """`probabilities a, b, c` / `logits a, b, c`: the label columns of propositional lines."""
    if before is not None:
        at = len(raw) - len(raw.lstrip())
        raise _error(source, number, at, len(kind), "the labels are declared twice (one `probabilities` or "
                                                    "`logits` line a file)", code=BAD_LABELS)
    names = line_names = _strip(raw).replace(",", " ").split()[1:]
    if not names:
        raise _error(source, number, raw.index(kind), len(kind), f"`{kind}` names no columns", code=BAD_LABELS)
    picked: list[int] = []
    for name in line_names:
        if name not in columns:
            raise _error(source, number, raw.index(name), len(name), f"unknown column `{name}` in `{kind}`",
                         f"the columns: {', '.join(columns)}", code=BAD_LABELS)
        if columns.index(name) in picked:
            raise _error(source, number, raw.rindex(name), len(name), f"label `{name}` appears twice",
                         code=BAD_LABELS)
        picked.append(columns.index(name))
    first = len(raw) - len(raw.lstrip())
    text = _strip(raw).strip()
    return Labels(kind, tuple(picked), Span(source, number, first + 1, number, first + 1 + len(text)))


def _declaration(source: SourceFile, number: int, raw: str, columns: Sequence[str],
                 groups: Sequence[Categorical]) -> Categorical:
    """`name = [a, b, c]`: a categorical variable whose categories are the one-hot columns a, b, c."""
    parser = _LineParser(source, number, raw, columns)
    kind, name, at = parser.tokens[0]
    parser.i = 2  # past `name =`
    if parser.peek()[1] != "[":
        raise parser.unexpected("`[`")
    parser.i += 1
    categories = parser.names("]")
    if parser.i < len(parser.tokens):
        raise parser.unexpected("the end of the line")
    first = len(raw) - len(raw.lstrip())
    text = _strip(raw).strip()
    return declare(name, categories, columns, groups, Span(source, number, first + 1, number, first + 1 + len(text)))


def _in_line_order(constraints: list[LinearConstraint], formulas: list[Formula]) -> tuple[Formula, ...]:
    units = [Formula(((c,),), c.text, c.span) for c in constraints]
    return tuple(sorted(units + formulas, key=lambda f: (f.span.line, f.span.col) if f.span is not None else (0, 0)))


def check_count(constraints: list[LinearConstraint], source: SourceFile, number: int, raw: str) -> None:
    """Stop at the first constraint line over the `constraints` limit, before parsing it (every given
    constraint counts toward the limit, as every generated one does): a huge rules file is an error
    at once, not after a long parse and elimination."""
    if len(constraints) >= limits.value("constraints"):
        first = len(raw) - len(raw.lstrip())
        span = Span(source, number, first + 1, number, max(first + 2, len(raw.rstrip()) + 1))
        raise limits.exceeded("constraints", f"more than {len(constraints):,}", span,
                              f"rules file {printable(source.path)}")


class _LineParser:
    """One line: comparison := expr (<=|<|>=|>) expr, each expr linear in the columns (see `expr`)."""

    def __init__(self, source: SourceFile, number: int, raw: str, columns: Sequence[str],
                 index: dict[str, int] | None = None, groups: Sequence[Categorical] = (),
                 labels: Labels | None = None) -> None:
        self.source, self.number, self.raw, self.columns = source, number, raw, columns
        self.groups = {g.name: g for g in groups}
        self.labels = labels
        self.saw_label = self.saw_inequality = False  # a line is propositional (labels only) or not
        self.index = index if index is not None else {name: i for i, name in enumerate(columns)}
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column offset)
        text, pos = _strip(raw).rstrip(), 0
        self.end = len(text)
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                start = len(text) - len(text[pos:].lstrip())
                raise _error(source, number, start, 1, f"unexpected character `{text[start]}` in a constraint")
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def constraint(self) -> LinearConstraint:
        constraint = self.comparison()
        if self.i < len(self.tokens):
            raise self.unexpected("the end of the line")
        return constraint

    def formula(self) -> Formula:
        """The line as a formula: `->` (right-associative) binds loosest, then `or`, `and`, `not`; parentheses
        group formulas as well as expressions (a group is tried as a formula first, and once per position)."""
        from .. import ast

        depth = max(itertools.accumulate(1 if t == "(" else -1 if t == ")" else 0 for _, t, _ in self.tokens))
        if depth > limits.value("nesting"):
            raise limits.exceeded("nesting", depth, self.span(0, len(self.raw.rstrip())), "this constraint")
        failed: set[int] = set()

        def span_from(start: int) -> Span:
            at = self.tokens[start][2]
            kind, text, end = self.tokens[self.i - 1]
            return self.span(at, end + len(text) - at)

        def implication() -> Any:
            start, left = self.i, disjunction()
            if self.peek()[1] != "->":
                return left
            self.i += 1
            return ast.Logic(span_from(start), "->", [left, implication()])

        def disjunction() -> Any:
            start, left = self.i, conjunction()
            while self.peek()[1] == "or":
                self.i += 1
                left = ast.Logic(span_from(start), "or", [left, conjunction()])
            return left

        def conjunction() -> Any:
            start, left = self.i, negation()
            while self.peek()[1] == "and":
                self.i += 1
                left = ast.Logic(span_from(start), "and", [left, negation()])
            return left

        def negation() -> Any:
            start = self.i
            if self.peek()[1] == "not":
                self.i += 1
                return ast.Logic(span_from(start), "not", [negation()])
            if self.peek()[1] == "(" and start not in failed:
                self.i += 1
                try:
                    inner = implication()
                    if self.peek()[1] != ")":
                        raise self.unexpected("`)`")
                    self.i += 1
                    return inner
                except SpeccError as err:  # an expression in parentheses, `(a + b) <= 3`?
                    failed.add(start)
                    self.i = start
                    try:
                        return self.comparison()
                    except SpeccError as other:  # neither: the error that got further along the line
                        raise (err if err.span is not None and other.span is not None
                               and err.span.col > other.span.col else other) from None
            return self.comparison()

        tree = implication()
        if self.i < len(self.tokens):
            raise self.unexpected("`or`, `and`, `->` or the end of the line")
        first = len(self.raw) - len(self.raw.lstrip())
        text = _strip(self.raw).strip()
        span = Span(self.source, self.number, first + 1, self.number, first + 1 + len(text))
        return Formula(clauses_of(tree, lambda literal: literal, limits.value("constraints"), span), text, span)

    def comparison(self) -> LinearConstraint:
        """One inequality of a formula (up to the first token that cannot continue it), or a categorical
        literal: `heating in {gas, oil}`, `heating == gas`, `heating != gas`."""
        start = self.i
        kind, name, at = self.peek()
        following = self.tokens[self.i + 1][1] if self.i + 1 < len(self.tokens) else ""
        if kind == "name" and (following == "in" or (following in ("==", "!=") and name in self.groups)):
            self.mixed(False, at, name)
            return self.categorical_literal()
        if (kind == "name" and self.labels is not None and name in self.index
                and self.index[name] in self.labels.columns and following in ("", "and", "or", "->", ")")):
            self.mixed(True, at, name)
            self.i += 1
            return atom(self.index[name], self.labels, name, self.span(at, len(name)))
        self.mixed(False, at, name)
        left = self.expr()
        kind, op, at = self.peek()
        if op not in ("<=", "<", ">=", ">"):
            if op in ("==", "!="):
                raise _error(self.source, self.number, at, len(op),
                             f"constraints are inequalities (<=, <, >=, >), not `{op}`")
            raise self.unexpected("a comparison (<=, <, >=, >)")
        self.i += 1
        right = self.expr()
        sign = 1 if op in ("<=", "<") else -1
        coeffs: dict[int, Fraction] = {}
        for j, c in left[0].items():
            coeffs[j] = coeffs.get(j, Fraction(0)) + sign * c
        for j, c in right[0].items():
            coeffs[j] = coeffs.get(j, Fraction(0)) - sign * c
        kept = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
        begin = self.tokens[start][2]
        _, last, end = self.tokens[self.i - 1]
        text = self.raw[begin:end + len(last)]
        if not kept:
            raise _error(self.source, self.number, begin, len(text), f"constraint `{text}` mentions no column")
        return LinearConstraint(kept, sign * (right[1] - left[1]), op in ("<", ">"), text, self.span(begin, len(text)))

    def mixed(self, label: bool, at: int, text: str) -> None:
        """Note a label atom or an inequality; a line with both is E0717 at the one that mixes them."""
        if (self.saw_inequality if label else self.saw_label):
            raise _error(self.source, self.number, at, max(1, len(text)),
                         "a line is either propositional (labels joined by `and`, `or`, `not`, `->`) or made of "
                         "inequalities, not both", "compare a label as a number on a line of its own (`a >= 0.5`)"
                         " or use it bare with other labels", code=MIXED)
        if label:
            self.saw_label = True
        else:
            self.saw_inequality = True

    def categorical_literal(self) -> LinearConstraint:
        """`name in {a, b}` / `name == a` / `name != a` (see specc.constraints.categorical.membership)."""
        kind, name, begin = self.peek()
        op = self.tokens[self.i + 1][1]
        group = self.groups.get(name)
        if group is None:
            known = f"the categorical variables: {', '.join(self.groups)}" if self.groups else \
                "declare one first, on a line of its own: `color = [red, green, blue]` (its categories are columns)"
            what = "a column" if name in self.index else "unknown"
            raise _error(self.source, self.number, begin, len(name),
                         f"`{name}` is no categorical variable ({what}), so it takes no `{op}`", known,
                         code=NOT_CATEGORICAL if op == "in" or name in self.index else "E0703")
        self.i += 2
        if op == "in":
            if self.peek()[1] != "{":
                raise self.unexpected("`{` (a set of categories)")
            self.i += 1
            names = self.names("}")
        else:
            kind, category, at = self.peek()
            if kind != "name":
                raise self.unexpected("a category")
            self.i += 1
            names = [(category, self.span(at, len(category)))]
        _, last, end = self.tokens[self.i - 1]
        text = self.raw[begin:end + len(last)]
        literal = membership(group, names, self.columns, text, self.span(begin, len(text)))
        return negated(literal) if op == "!=" else literal

    def names(self, close: str) -> list[tuple[str, Span]]:
        """Comma-separated names up to `close` (consumed), each with its span."""
        out: list[tuple[str, Span]] = []
        while self.peek()[1] != close or not out:
            kind, text, at = self.peek()
            if kind != "name":
                raise self.unexpected("a category name" if not out or self.tokens[self.i - 1][1] == "," else
                                      f"`,` or `{close}`")
            out.append((text, self.span(at, len(text))))
            self.i += 1
            if self.peek()[1] == ",":
                self.i += 1
            elif self.peek()[1] != close:
                raise self.unexpected(f"`,` or `{close}`")
        self.i += 1
        return out

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", self.end)

    def unexpected(self, wanted: str) -> SpeccError:
        kind, text, at = self.peek()
        got = f"`{text}`" if text else "the end of the line"
        return _error(self.source, self.number, at, max(1, len(text)), f"expected {wanted}, got {got}")

    def expr(self) -> tuple[dict[int, Fraction], Fraction]:
        """One linear expression, up to the first token that cannot continue it.

        Operator precedence (shunting-yard) with explicit stacks rather than recursive descent, so
        that no depth of parentheses or unary signs can exhaust Python's stack: the grammar is
        expr := term (('+'|'-') term)*, term := factor (('*'|'/') factor)*,
        factor := ('+'|'-') factor | '(' expr ')' | number | column.
        """
        values: list[_Value] = []
        ops: list[tuple[str, int]] = []  # (operator, offset); unary signs are "u+" / "u-", parentheses "("
        while True:
            kind, text, at = self.peek()  # an operand is expected
            if text == "(":
                ops.append(("(", at))
                self.i += 1
                continue
            if text in ("-", "+"):
                if ops and ops[-1][0] in ("u-", "u+"):  # a run of signs is one sign (linear in the run)
                    ops[-1] = ("u+" if (ops[-1][0] == "u-") == (text == "-") else "u-", ops[-1][1])
                else:
                    ops.append(("u" + text, at))
                self.i += 1
                continue
            if kind == "num":
                values.append(_Value({}, exact_number(text, self.span(at, len(text))), at))
            elif kind == "name":
                if text in self.groups:
                    raise _error(self.source, self.number, at, len(text),
                                 f"`{text}` is a categorical variable, not a number", "compare it with its "
                                 f"categories: `{text} in {{...}}`, `{text} == ...`, `{text} != ...`",
                                 code=CATEGORICAL_AS_NUMBER)
                if text not in self.index:
                    raise _error(self.source, self.number, at, len(text), f"unknown column `{text}`",
                                 f"the columns: {', '.join(self.columns)}", code="E0703")
                values.append(_Value({self.index[text]: Fraction(1)}, Fraction(0), at))
            else:
                raise self.unexpected("a column or a number")
            self.i += 1
            while True:  # an operator is expected: a binary one, `)` or the end of the expression
                text = self.peek()[1]
                if text in ("+", "-", "*", "/"):
                    while ops and ops[-1][0] != "(" and _PRECEDENCE[ops[-1][0]] >= _PRECEDENCE[text]:
                        self.reduce(values, ops.pop())
                    ops.append((text, self.peek()[2]))
                    self.i += 1
                    break
                while ops and ops[-1][0] != "(":
                    self.reduce(values, ops.pop())
                if text == ")" and ops:
                    inner = values.pop()
                    values.append(_Value(inner.coeffs, inner.const, ops.pop()[1]))  # starts at its `(`
                    self.i += 1
                    continue
                if ops:
                    raise self.unexpected("`)`")
                value = values.pop()
                return value.coeffs, value.const

    def reduce(self, values: list[_Value], op: tuple[str, int]) -> None:
        """Apply one operator to the values on top of the stack (a column times a column is an error:
        the constraint must stay linear)."""
        name, at = op
        if name in ("u-", "u+"):
            v = values[-1]
            if name == "u-":
                values[-1] = _Value({j: -c for j, c in v.coeffs.items()}, -v.const, at)
            else:
                values[-1] = _Value(v.coeffs, v.const, at)
            return
        right, left = values.pop(), values.pop()
        coeffs, const = left.coeffs, left.const
        if name in ("+", "-"):
            sign = 1 if name == "+" else -1
            for j, c in right.coeffs.items():
                coeffs[j] = coeffs.get(j, Fraction(0)) + sign * c
            values.append(_Value(coeffs, const + sign * right.const, left.start))
        elif name == "*" and (not coeffs or not right.coeffs):
            if not coeffs:  # number * expression
                scale, coeffs, const = const, right.coeffs, right.const
            else:
                scale = right.const
            values.append(_Value({j: c * scale for j, c in coeffs.items()}, const * scale, left.start))
        elif name == "/" and not right.coeffs and right.const != 0:
            values.append(_Value({j: c / right.const for j, c in coeffs.items()}, const / right.const, left.start))
        else:
            end = self.peek()[2]
            why = "division by zero" if name == "/" and not right.coeffs else \
                "constraints must be linear: multiply or divide columns only by numbers"
            raise _error(self.source, self.number, left.start, max(1, end - left.start), why, code="E0702")

    def span(self, offset: int, width: int) -> Span:
        return Span(self.source, self.number, offset + 1, self.number, offset + 1 + width)


@dataclass
class _Value:
    """A linear expression being parsed: {column: coefficient} + constant, and where it starts (for errors)."""

    coeffs: dict[int, Fraction]
    const: Fraction
    start: int


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "u-": 3, "u+": 3}


def _strip(line: str, pishield: bool = False) -> str:
    """The line without its comment (`#`, and `//` in specc's format)."""
    cut = [i for i in (line.find("#"), -1 if pishield else line.find("//")) if i >= 0]
    return line[:min(cut)] if cut else line


def _error(source: SourceFile, line: int, offset: int, width: int, message: str, help: str | None = None,
           code: str = FILE_ERROR) -> SpeccError:
    return SpeccError(code, message, Span(source, line, offset + 1, line, offset + 1 + width), help=help)
