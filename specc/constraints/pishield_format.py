"""pishield's linear requirements format (github.com/mihaela-stoian/PiShield), read and written.

    ordering y_0 y_1 y_2 y_3
    y_0 >= 18
    y_1 - y_2 >= 0
    -y_3 + 0.5y_1 + y_2 > 0

Variables are `y_<i>`, the i-th column in declaration order; a coefficient is
written before its variable without `*`; the constant is on the right of `>=` or
`>`; `neg` negates an inequality (logically: `neg s >= c` is `s < c`; pishield 1.0
keeps the constant unchanged, which agrees when it is 0). pishield reads one
disjunct of an `or` and ignores the rest; here a disjunction is an error, as it
is not a linear constraint. Blank lines and `#` comments are allowed (pishield
itself fails on blank lines; `to_pishield` writes none).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Sequence

from ..diagnostics import SourceFile, Span, SpeccError
from . import LinearConstraint, exact_number
from .files import FILE_ERROR, ConstraintFile, _error, _strip, check_count

# A term is a sign, a coefficient and a variable, matched one after the other: as one pattern with an
# optional coefficient, a long run of digits not followed by `y_` makes the regex engine backtrack
# through every split of the digits (quadratic: 8,000 digits took 20 s).
_SIGNED_NUMBER = re.compile(r"([+-]?)((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)?")
_VARIABLE = re.compile(r"\*?y_(\d+)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_pishield(source: SourceFile, columns: Sequence[str]) -> ConstraintFile:
    """pishield's requirements over `columns`: `ordering y_i ...` and `sum(coef y_i) >= c` (or `>`)."""
    constraints: list[LinearConstraint] = []
    order: tuple[str, ...] | None = None
    for number, raw in enumerate(source.text.splitlines(), start=1):
        line = _strip(raw, pishield=True).strip()
        if not line:
            continue
        first = raw.index(line)
        if line.split()[0] == "ordering":
            order = tuple(_variable(source, number, raw, w, columns) for w in line.split()[1:])
            continue
        if re.search(r"\bor\b", line):
            raise _error(source, number, first, len(line),
                         "disjunctions (`or`) are not linear constraints; the constraint layer takes conjunctions of "
                         "inequalities, one per line")
        check_count(constraints, source, number, raw)
        negate = line.startswith("neg ") or line.startswith("neg\t")
        body_text = line[3:].strip() if negate else line
        sign_at = body_text.find(">")
        if sign_at < 0:
            raise _error(source, number, first, len(line), "expected `>=` or `>` (pishield writes `sum >= constant`)")
        strict = body_text[sign_at:sign_at + 2] != ">="
        body, constant = body_text[:sign_at], body_text[sign_at + (1 if strict else 2):]
        body_at = first + len(line) - len(body_text)  # where body_text starts in `raw`
        value = constant.strip()
        if not _NUMBER.fullmatch(value):
            raise _error(source, number, first, len(line), f"expected a number after the comparison, got `{value}`")
        value_at = body_at + len(body_text) - len(constant) + constant.index(value)
        rhs = exact_number(value, Span(source, number, value_at + 1, number, value_at + 1 + len(value)))
        compact = body.replace(" ", "").replace("\t", "")
        where = [body_at + i for i, ch in enumerate(body) if ch not in " \t"]  # compact[k] is raw[where[k]]
        coeffs: dict[int, Fraction] = {}
        pos = 0
        while pos < len(compact):
            m = _SIGNED_NUMBER.match(compact, pos)
            v = _VARIABLE.match(compact, m.end()) if m is not None else None
            if m is None or v is None or (pos > 0 and not m.group(1)):
                raise _error(source, number, first, len(line),
                             f"cannot read `{compact[pos:]}`: expected terms like `y_1`, `-2y_3`, `+ 0.5y_2`")
            j = _index(v.group(1), columns)
            if j is None:
                raise _error(source, number, first, len(line), f"y_{_short(v.group(1))} is past the last column "
                                                               f"(y_{len(columns) - 1}, `{columns[-1]}`)", code="E0703")
            if m.group(2):
                at = where[m.start(2)]
                c = exact_number(m.group(2), Span(source, number, at + 1, number, where[m.end(2) - 1] + 2))
            else:
                c = Fraction(1)
            coeffs[j] = coeffs.get(j, Fraction(0)) + (-c if m.group(1) == "-" else c)
            pos = v.end()
        # pishield: sum >= rhs (or >); specc: -sum <= -rhs. `neg` flips it: sum < rhs (or <= for neg of >)
        if negate:
            kept = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
            strict = not strict
            result_rhs = rhs
        else:
            kept = tuple(sorted((j, -c) for j, c in coeffs.items() if c != 0))
            result_rhs = -rhs
        if not kept:
            raise _error(source, number, first, len(line), f"constraint `{line}` mentions no column")
        span = Span(source, number, first + 1, number, first + 1 + len(line))
        constraints.append(LinearConstraint(kept, result_rhs, strict, line, span))
    if order is None:  # parse_constraints only sends files with an `ordering` line; a direct call may not
        raise SpeccError(FILE_ERROR, f"{source.path}: pishield requirements need an `ordering` line", None)
    return ConstraintFile(tuple(constraints), tuple(columns[i] for i in _indices(order, columns)), "pishield")


def to_pishield(constraints: Sequence[LinearConstraint], order: Sequence[int]) -> str:
    """Write constraints in pishield's format (variables `y_<column index>`), which its parser reads back."""
    lines = ["ordering " + " ".join(f"y_{i}" for i in order)]
    for c in constraints:
        atoms = []
        for j, a in c.coeffs:  # specc: sum(a x) <= b  is  sum(-a x) >= -b
            w = -a
            mag = "" if abs(w) == 1 else _decimal(abs(w))
            atoms.append(("- " if w < 0 else "+ ") + f"{mag}y_{j}")
        body = " ".join(atoms)
        body = body[2:] if body.startswith("+ ") else "-" + body[2:]
        lines.append(f"{body} {'>' if c.strict else '>='} {_decimal(-c.rhs)}")
    return "\n".join(lines) + "\n"


def _decimal(value: Fraction) -> str:
    """A number in positional notation (pishield's parser cannot read exponents like `1e-05`):
    integers without a fraction part, others as the shortest float that reads back the same."""
    if value.denominator == 1:
        return str(value.numerator)
    return format(Decimal(repr(float(value))), "f")


def _index(digits: str, columns: Sequence[str]) -> int | None:
    """The column a variable's index names, or None past the last one (checked on the text first:
    `int()` refuses numbers of more than 4,300 digits)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(len(columns))):
        return None
    j = int(digits)
    return j if j < len(columns) else None


def _short(digits: str) -> str:
    """An index as shown in a message: a very long one is cut."""
    return digits if len(digits) <= 20 else f"{digits[:20]}... ({len(digits):,} digits)"


def _variable(source: SourceFile, number: int, raw: str, word: str, columns: Sequence[str]) -> str:
    m = re.fullmatch(r"y_(\d+)", word)
    if m is None or _index(m.group(1), columns) is None:
        at = raw.find(word)
        what = "is past the last column" if m else "is not a variable `y_<i>`"
        raise _error(source, number, at, len(word), f"`{word}` in `ordering` {what}", code=FILE_ERROR)
    return word


def _indices(order: Sequence[str], columns: Sequence[str]) -> list[int]:
    return [int(w[2:]) for w in order]


def pishield_is_exact(constraints: Sequence[LinearConstraint], order: Sequence[int]) -> bool:
    """Whether pishield 1.0 eliminates these constraints (written by `to_pishield`) exactly.

    Its elimination (compute_sets_of_constraints.create_constr_by_reduction) scales the body of the
    constraint with the positive coefficient by q/p but not its constant, and when two terms of a
    variable cancel it keeps one of them instead of dropping both. So its bounds are exact only when
    no pair it combines has p != q with a non-zero constant, and no term cancels. This replays its
    pairing (in floats, as it does) to tell; tests and the benchmark compare with pishield only then.
    """
    rows = [({j: -float(a) for j, a in c.coeffs}, -float(c.rhs)) for c in constraints]  # sum >= const
    for y in reversed(order):
        positive = [r for r in rows if r[0].get(y, 0.0) > 0]
        negative = [r for r in rows if r[0].get(y, 0.0) < 0]
        rest = [r for r in rows if y not in r[0]]
        for p_body, p_const in positive:
            for q_body, q_const in negative:
                p, q = p_body[y], -q_body[y]
                body = {j: c * q / p for j, c in p_body.items() if j != y}
                for j, c in q_body.items():
                    if j == y:
                        continue
                    if j in body and body[j] + c == 0:
                        return False
                    body[j] = body.get(j, 0.0) + c
                if not body:
                    continue  # pishield drops a combination without variables (it never checks feasibility)
                if p != q and p_const != 0:
                    return False
                rest.append((body, p_const + q_const))
        rows = rest
    return True
