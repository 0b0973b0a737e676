"""Linear constraints over named columns (C-DGM): the data model shared by the
lowering (which builds it from `constrain(...) { ... }` blocks) and the
`constrain` op (which plans and lowers it)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ..diagnostics import Span, SpeccError

NUMBER_ERROR = "E0709"
MAX_DIGITS = 50  # significant digits of one number: float64 needs 17, exact decimals a few more
_LARGEST, _SMALLEST = Decimal(sys.float_info.max), Decimal(sys.float_info.min)


@dataclass(frozen=True)
class LinearConstraint:
    """`sum(coeff * column) <= rhs` (or `<` when `strict`), kept exact with rationals.

    Every comparison is normalized to this form: `a >= b` becomes `-a + b <= 0`.
    `text` and `span` are the source, so compile-time errors can quote it.
    """

    coeffs: tuple[tuple[int, Fraction], ...]  # (column index, nonzero coefficient), sorted by index
    rhs: Fraction
    strict: bool
    text: str
    span: Span | None = None

    def __str__(self) -> str:
        return self.text


def violations(constraints: "tuple[LinearConstraint, ...] | list[LinearConstraint]", rows, tol: float = 1e-5):
    """Which rows violate which constraints: a bool array [rows, constraints] (rows: array-like [N, columns]).

    A constraint `a.x <= b` (or `<`) counts as violated when `a.x - b > tol * (1 + |b| + sum|a_i x_i|)`,
    evaluated in float64: the tolerance is relative to the size of its terms, as float32 rounding is.
    Strict constraints get the same tolerance: the constraint layer repairs them to their closure
    (as pishield does), so a repaired value may lie on the boundary.
    """
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    out = np.zeros((x.shape[0], len(constraints)), dtype=bool)
    for k, c in enumerate(constraints):
        terms = np.stack([float(a) * x[:, j] for j, a in c.coeffs], axis=1)
        rhs = float(c.rhs)
        out[:, k] = terms.sum(1) - rhs > tol * (1 + abs(rhs) + np.abs(terms).sum(1))
    return out


def exact_number(value: str | int | float, span: Span | None) -> Fraction:
    """A number of a constraint (its text, or the value the spec's parser made of it), exactly.

    It must be one the generated layer can evaluate in float64: finite, 0 or between float64's
    smallest normal and largest magnitude (about 2.2e-308 and 1.8e308), with at most `MAX_DIGITS`
    significant digits. Anything else is "number out of range" (E0709) at `span`, found before a
    big number is built: `Fraction("1e999999999")` would build a billion-digit integer, and
    `Fraction(float("1e400"))` fails on infinity.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:  # the common case, quickly
        return Fraction(int(value))
    if isinstance(value, int):
        if abs(value) > _LARGEST:  # int against Decimal compares exactly, without converting the int to text
            raise _out_of_range(span, "it is larger than float64's largest (about 1.8e308)")
        return Fraction(value)
    text = repr(value) if isinstance(value, float) else value
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise SpeccError(NUMBER_ERROR, f"expected a number, got `{text}`", span) from None
    if number.is_nan():
        raise SpeccError(NUMBER_ERROR, f"expected a number, got `{text}`", span)
    magnitude = number.copy_abs()  # exact, unlike abs(), which rounds (and overflows) in the decimal context
    if magnitude > _LARGEST:
        raise _out_of_range(span, "it is larger than float64's largest (about 1.8e308)")
    if number and magnitude < _SMALLEST:
        raise _out_of_range(span, "it is closer to 0 than float64's smallest normal number (about 2.2e-308)")
    shown = number.as_tuple().digits
    digits = len(shown)
    while digits > 1 and shown[digits - 1] == 0:  # trailing zeros (`1.000`) are not significant
        digits -= 1
    if digits > MAX_DIGITS:
        raise _out_of_range(span, f"it has {digits:,} significant digits, more than {MAX_DIGITS}")
    return Fraction(number)


def _out_of_range(span: Span | None, why: str) -> SpeccError:
    return SpeccError(NUMBER_ERROR, f"number out of range: {why}", span,
                      help="a number in a constraint must be 0 or between about 2.2e-308 and 1.8e308 in "
                           f"magnitude (float64's normal range), with at most {MAX_DIGITS} significant digits; "
                           "rescale the column if it needs larger values")


from .report import ConstraintSet, ViolationReport, report, violation_loss  # noqa: E402  (they use the above)
