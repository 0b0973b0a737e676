"""Constraint files: large sets kept next to the spec, and pishield's requirements format.

`constrain(raw, file="rules.txt") { ... }` adds a file's constraints to the block's.
Two formats are read, told apart by their content:

specc's own, one constraint per line, in the syntax of a `constrain` block, with
an optional `order` line (the same as `order=` in the spec, which wins if both
are given); `#` and `//` start comments:

    order age income debt loan
    age >= 18
    loan - 0.5 * income - debt <= 0      // coefficients may be fractions: income / 3

pishield's requirements format, recognized by its mandatory `ordering` line
(see specc.constraints.pishield_format):

    ordering y_0 y_1 y_2 y_3
    y_0 >= 18
    -y_3 + 0.5y_1 + y_2 >= 0

Errors point at the line of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from ..diagnostics import SourceFile, Span, SpeccError
from . import LinearConstraint

FILE_ERROR = "E0706"


@dataclass(frozen=True)
class ConstraintFile:
    constraints: tuple[LinearConstraint, ...]
    order: tuple[str, ...] | None  # column names, from an `order` / `ordering` line
    format: str  # "specc" or "pishield"


def load_constraints(path: str | Path, columns: Sequence[str]) -> ConstraintFile:
    """Read and parse a constraints file over `columns` (names in declaration order)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeccError(FILE_ERROR, f"cannot read constraints file {path}: {exc.strerror or exc}", None) from None
    return parse_constraints(SourceFile(str(path), text), columns)


def parse_constraints(source: SourceFile, columns: Sequence[str]) -> ConstraintFile:
    if any(_strip(line).split()[:1] == ["ordering"] for line in source.text.splitlines()):
        from .pishield_format import parse_pishield

        return parse_pishield(source, columns)
    return parse_specc(source, columns)


# ------------------------------------------------------------------ specc's format
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op><=|>=|==|!=|[<>+\-*/()]))")


def parse_specc(source: SourceFile, columns: Sequence[str]) -> ConstraintFile:
    constraints: list[LinearConstraint] = []
    order: tuple[str, ...] | None = None
    for number, raw in enumerate(source.text.splitlines(), start=1):
        line = _strip(raw)
        if not line.strip():
            continue
        words = line.split()
        if words[0] == "order" and not any(ch in line for ch in "<>=+-*/"):
            names = tuple(w for w in line.replace(",", " ").split()[1:])
            for name in names:
                if name not in columns:
                    raise _error(source, number, raw.index(name), len(name), f"unknown column `{name}` in `order`",
                                 f"the columns: {', '.join(columns)}")
            order = names
            continue
        constraints.append(_LineParser(source, number, raw, columns).constraint())
    return ConstraintFile(tuple(constraints), order, "specc")


class _LineParser:
    """Recursive descent over one line: comparison := expr (<=|<|>=|>) expr; expr is linear in the columns."""

    def __init__(self, source: SourceFile, number: int, raw: str, columns: Sequence[str]) -> None:
        self.source, self.number, self.raw, self.columns = source, number, raw, columns
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column offset)
        text, pos = _strip(raw).rstrip(), 0
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
        left = self.expr()
        kind, op, at = self.peek()
        if op not in ("<=", "<", ">=", ">"):
            if op in ("==", "!="):
                raise _error(self.source, self.number, at, len(op),
                             f"constraints are inequalities (<=, <, >=, >), not `{op}`")
            raise self.unexpected("a comparison (<=, <, >=, >)")
        self.i += 1
        right = self.expr()
        if self.i < len(self.tokens):
            raise self.unexpected("the end of the line")
        sign = 1 if op in ("<=", "<") else -1
        coeffs: dict[int, Fraction] = {}
        for j, c in left[0].items():
            coeffs[j] = coeffs.get(j, Fraction(0)) + sign * c
        for j, c in right[0].items():
            coeffs[j] = coeffs.get(j, Fraction(0)) - sign * c
        kept = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
        first = len(self.raw) - len(self.raw.lstrip())
        text = _strip(self.raw).strip()
        if not kept:
            raise _error(self.source, self.number, first, len(text), f"constraint `{text}` mentions no column")
        span = Span(self.source, self.number, first + 1, self.number, first + 1 + len(text))
        return LinearConstraint(kept, sign * (right[1] - left[1]), op in ("<", ">"), text, span)

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(_strip(self.raw).rstrip()))

    def unexpected(self, wanted: str) -> SpeccError:
        kind, text, at = self.peek()
        got = f"`{text}`" if text else "the end of the line"
        return _error(self.source, self.number, at, max(1, len(text)), f"expected {wanted}, got {got}")

    def expr(self) -> tuple[dict[int, Fraction], Fraction]:
        coeffs, const = self.term()
        while self.peek()[1] in ("+", "-"):
            sign = 1 if self.tokens[self.i][1] == "+" else -1
            self.i += 1
            c2, k2 = self.term()
            for j, c in c2.items():
                coeffs[j] = coeffs.get(j, Fraction(0)) + sign * c
            const += sign * k2
        return coeffs, const

    def term(self) -> tuple[dict[int, Fraction], Fraction]:
        start = self.peek()[2]
        coeffs, const = self.factor()
        while self.peek()[1] in ("*", "/"):
            op = self.tokens[self.i][1]
            self.i += 1
            c2, k2 = self.factor()
            if op == "*" and (not coeffs or not c2):
                scale, (coeffs, const) = (const, (c2, k2)) if not coeffs else (k2, (coeffs, const))
                coeffs, const = {j: c * scale for j, c in coeffs.items()}, const * scale
            elif op == "/" and not c2 and k2 != 0:
                coeffs, const = {j: c / k2 for j, c in coeffs.items()}, const / k2
            else:
                end = self.peek()[2]
                why = "division by zero" if op == "/" and not c2 else \
                    "constraints must be linear: multiply or divide columns only by numbers"
                raise _error(self.source, self.number, start, max(1, end - start), why, code="E0702")
        return coeffs, const

    def factor(self) -> tuple[dict[int, Fraction], Fraction]:
        kind, text, at = self.peek()
        if text in ("-", "+"):
            self.i += 1
            coeffs, const = self.factor()
            return ({j: -c for j, c in coeffs.items()}, -const) if text == "-" else (coeffs, const)
        if text == "(":
            self.i += 1
            value = self.expr()
            if self.peek()[1] != ")":
                raise self.unexpected("`)`")
            self.i += 1
            return value
        if kind == "num":
            self.i += 1
            return {}, Fraction(Decimal(text))
        if kind == "name":
            if text not in self.columns:
                raise _error(self.source, self.number, at, len(text), f"unknown column `{text}`",
                             f"the columns: {', '.join(self.columns)}", code="E0703")
            self.i += 1
            return {self.columns.index(text): Fraction(1)}, Fraction(0)
        raise self.unexpected("a column or a number")


def _strip(line: str, pishield: bool = False) -> str:
    """The line without its comment (`#`, and `//` in specc's format)."""
    cut = [i for i in (line.find("#"), -1 if pishield else line.find("//")) if i >= 0]
    return line[:min(cut)] if cut else line


def _error(source: SourceFile, line: int, offset: int, width: int, message: str, help: str | None = None,
           code: str = FILE_ERROR) -> SpeccError:
    return SpeccError(code, message, Span(source, line, offset + 1, line, offset + 1 + width), help=help)
