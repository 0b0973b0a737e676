"""Linear constraints over named columns (C-DGM): the data model shared by the
lowering (which builds it from `constrain(...) { ... }` blocks) and the
`constrain` op (which plans and lowers it)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..diagnostics import Span


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
