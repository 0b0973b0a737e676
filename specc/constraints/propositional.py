"""Propositional constraints over Boolean (multi-label) outputs, with the semantics of CCN+ / pishield.

    // a rules file
    probabilities cat, dog, animal, indoor      // (or `logits ...`): label columns
    cat -> animal
    dog -> animal
    cat and indoor -> not dog

A label's value is its column: a probability in [0, 1] (`probabilities`), or a logit (`logits`).
`not a` is `1 - a` for probabilities and `-a` for logits (sigmoid(-x) = 1 - sigmoid(x)), and a
conjunction is the minimum (Goedel t-norm): as in CCN+ (Giunchiglia & Lukasiewicz) and pishield's
propositional layer. Each line is put into clauses (conjunctive normal form over label literals);
a clause `l_1 or ... or l_k` is repaired at its head, the literal whose label comes last in the
repair order, given the others: `head >= min_i value(not l_i)`, which is
`head >= value(not l_1) or ... or head >= value(not l_k)`, a disjunction of linear inequalities.
So `a and b -> c` raises c to min(a, b) where it is below; `a and b -> not c` lowers c to
1 - min(a, b) (probabilities) or -min(a, b) (logits). A clause of one literal forces its label to 1
(0 for `not`) for probabilities, to >= 0 (<= 0) for logits. Probabilities are also kept in [0, 1].

These compile to the disjunctive layer (specc.constraints.disjunctive), which guarantees that every
output row satisfies every constraint (in the Goedel semantics above), leaves satisfying rows
unchanged, and rejects unsatisfiable sets (E0710). Where each clause's head comes after its body in
the repair order (pishield's strata), the output equals pishield's ShieldLayer: a head takes the
max of its lower bounds min(body), clamped below the min of its upper bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from ..diagnostics import Span
from . import LinearConstraint
from .disjunctive import Formula

MIXED = "E0717"  # a line mixes labels (Boolean atoms) and inequalities
BAD_LABELS = "E0718"  # a `probabilities` / `logits` line: an unknown column, a label declared twice


@dataclass(frozen=True)
class Labels:
    """Label columns (indices) and what their values are: "probabilities" or "logits"."""

    kind: str
    columns: tuple[int, ...]
    span: Span | None = None

    @property
    def threshold(self) -> Fraction:
        """Where a label counts as true: 1/2 for probabilities, 0 for logits."""
        return Fraction(1, 2) if self.kind == "probabilities" else Fraction(0)


def atom(column: int, labels: Labels, text: str, span: Span | None) -> LinearConstraint:
    """A bare label as a literal of a formula: `x >= threshold` (its negation `x < threshold`). Lines of
    labels only are propositional; `compile_clauses` reads each literal's label and sign back."""
    return LinearConstraint(((column, Fraction(-1)),), -labels.threshold, False, text, span)


def _literal(c: LinearConstraint) -> tuple[int, bool]:
    (column, coefficient), = c.coeffs
    return column, coefficient < 0


def compile_clauses(propositions: Sequence[Formula], labels: Labels, order: Sequence[int]) -> tuple[Formula, ...]:
    """The disjunctive-layer formulas of propositional lines (clauses over `atom` literals), each clause
    repaired at its head (its label last in `order`), plus [0, 1] bounds for probabilities."""
    position = {c: p for p, c in enumerate(order)}
    probabilities = labels.kind == "probabilities"
    out: list[Formula] = []
    if probabilities:
        for j in labels.columns:
            out.append(Formula(((LinearConstraint(((j, Fraction(-1)),), Fraction(0), False, "probability >= 0"),),
                                (LinearConstraint(((j, Fraction(1)),), Fraction(1), False, "probability <= 1"),)),
                               "probabilities in [0, 1]", labels.span))
    for f in propositions:
        clauses = []
        for clause in f.clauses:
            literals = {}
            for c in clause:
                j, positive = _literal(c)
                literals.setdefault(j, set()).add(positive)
            if any(len(signs) == 2 for signs in literals.values()):
                continue  # `a or not a`: always holds
            lits = sorted(((j, next(iter(s))) for j, s in literals.items()), key=lambda js: position[js[0]])
            (head, head_positive), body = lits[-1], lits[:-1]
            value = _value(head, head_positive, probabilities)
            if not body:  # the head alone: true (1, or >= 0 for logits)
                top = Fraction(1) if probabilities else Fraction(0)
                clauses.append((_at_least(value, top, f.text),))
                continue
            # head >= value(not l) for some body literal l: value(head) + value(l) >= 1 (0 for logits)
            clauses.append(tuple(_at_least(_sum(value, _value(j, positive, probabilities)),
                                           Fraction(1) if probabilities else Fraction(0), f.text)
                                 for j, positive in body))
        out.append(Formula(tuple(clauses), f.text, f.span))
    return tuple(out)


_Linear = tuple[dict[int, Fraction], Fraction]


def _value(j: int, positive: bool, probabilities: bool) -> _Linear:
    """A literal's value: x, or 1 - x (probabilities) / -x (logits)."""
    if positive:
        return {j: Fraction(1)}, Fraction(0)
    return {j: Fraction(-1)}, Fraction(1) if probabilities else Fraction(0)


def _sum(a: _Linear, b: _Linear) -> _Linear:
    coeffs = dict(a[0])
    for j, c in b[0].items():
        coeffs[j] = coeffs.get(j, Fraction(0)) + c
    return coeffs, a[1] + b[1]


def _at_least(value: _Linear, bound: Fraction, text: str) -> LinearConstraint:
    """value >= bound, as -value <= -bound."""
    coeffs, const = value
    kept = tuple(sorted((j, -c) for j, c in coeffs.items() if c != 0))
    return LinearConstraint(kept, const - bound, False, text)


__all__ = ["Labels", "atom", "compile_clauses", "MIXED", "BAD_LABELS"]
