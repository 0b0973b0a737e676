"""Fourier–Motzkin elimination: linear constraints -> per-column bounds for the repair layer (C-DGM).

Given constraints `sum(a_i * x_i) <= b` (or `<`) and a variable order, the
columns are eliminated from the last in the order to the first. Just before a
column is eliminated, the constraints that still mention it mention only it and
earlier columns: they are its bound set, each one a lower or an upper bound
`x_k >= c + sum(w_j * x_j)` over earlier columns j. Eliminating it adds every
sum of one of its lower and one of its upper bounds, which no longer mentions
it. The constraints left after each step describe exactly the projection of the
feasible set onto the earlier columns, so at run time clamping each column, in
order, into [max of its lower bounds, min of its upper bounds] (evaluated on the
already repaired earlier columns) always finds a non-empty interval, and the
repaired row satisfies every constraint. A row that already satisfies them all
is left unchanged, and repairing twice changes nothing.

Elimination can square the number of constraints at every step, so redundant
ones are dropped as they appear:
- each constraint is normalized so its last column (in the order) has
  coefficient +-1: parallel constraints then have equal coefficients;
- of parallel constraints only the tightest is kept (smaller right-hand side;
  strict over non-strict on a tie), which also removes duplicates;
- Chernikov's rule: a constraint derived from more than k + 1 original ones after
  k columns have been eliminated is implied by the others and is dropped.
A derived constraint without columns is a consistency condition, `0 <= b` (or
`0 < b`): if it fails the set is infeasible, and the original constraints it was
derived from (its history) are the conflict, which `conflict` shrinks to a
minimal one. Arithmetic is exact (Fractions), strictness is tracked.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from . import LinearConstraint


@dataclass(frozen=True)
class Bound:
    """`x[column] >= const + sum(w * x[j])` (lower) or `<=` (upper), over columns j repaired earlier."""

    column: int
    lower: bool
    const: Fraction
    terms: tuple[tuple[int, Fraction], ...]  # (earlier column, weight), in repair order
    strict: bool
    origins: tuple[int, ...]  # indices of the original constraints it was derived from, sorted

    def expression(self, columns: Sequence[str]) -> str:
        """The right-hand side, readably: `0.5*income + debt - 3`."""
        return _linear_text([(columns[j], w) for j, w in self.terms], self.const)


@dataclass(frozen=True)
class Step:
    """One column's bounds, applied in repair order."""

    column: int
    lower: tuple[Bound, ...]
    upper: tuple[Bound, ...]


@dataclass(frozen=True)
class Plan:
    """The compile-time result: for each constrained column, in repair order, its bound set."""

    columns: tuple[str, ...]
    order: tuple[int, ...]  # every column, in repair order
    steps: tuple[Step, ...]  # the columns that have bounds, in repair order

    def render(self, sources: Sequence[LinearConstraint] = ()) -> str:
        """The bound sets, one bound per line, each with the constraints it comes from.

        `sources` (the original constraints) let each bound cite their source lines.
        """
        width = max((len(self.columns[s.column]) for s in self.steps), default=0)
        lines = ["repair order: " + ", ".join(self.columns[i] for i in self.order)]
        for step in self.steps:
            name = self.columns[step.column]
            for i, b in enumerate(step.lower + step.upper):
                op = (">" if b.lower else "<") + ("" if b.strict else "=")
                label = name.ljust(width) if i == 0 else " " * width
                lines.append(f"  {label} {op} {b.expression(self.columns)}".ljust(width + 40)
                             + f"  // {_cite(b.origins, sources)}")
        free = [self.columns[i] for i in self.order if i not in {s.column for s in self.steps}]
        if free:
            lines.append("  unconstrained: " + ", ".join(free))
        return "\n".join(lines)

    def runtime_steps(self) -> list[tuple[int, tuple[_FloatRow, ...], tuple[_FloatRow, ...]]]:
        """The steps as floats for the backends: (column, lower rows, upper rows), a row being
        (constant, ((earlier column, weight), ...)): the bound is constant + sum(weight * x[column])."""
        def row(b: Bound) -> _FloatRow:
            return float(b.const), tuple((j, float(w)) for j, w in b.terms)

        return [(s.column, tuple(row(b) for b in s.lower), tuple(row(b) for b in s.upper)) for s in self.steps]

    def dense_steps(self) -> list[tuple[int, list[tuple[float, list[float]]], list[tuple[float, list[float]]]]]:
        """`runtime_steps` with each row's weights dense over all columns (zero for later ones)."""
        def dense(r: _FloatRow) -> tuple[float, list[float]]:
            weights = [0.0] * len(self.columns)
            for j, w in r[1]:
                weights[j] = w
            return r[0], weights

        return [(c, [dense(r) for r in lo], [dense(r) for r in hi]) for c, lo, hi in self.runtime_steps()]

    def step_texts(self) -> list[str]:
        """One line per step, for comments in generated code: `debt >= 0, debt <= income`."""
        out = []
        for s in self.steps:
            name = self.columns[s.column]
            out.append(", ".join(f"{name} {'>' if b.lower else '<'}{'' if b.strict else '='} "
                                 f"{b.expression(self.columns)}" for b in s.lower + s.upper))
        return out


_FloatRow = tuple[float, tuple[tuple[int, float], ...]]


class Infeasible(Exception):
    """No point satisfies the constraints; `origins` are indices of constraints that conflict,
    which together imply `0 <= rhs` (or `0 < rhs` when strict), false."""

    def __init__(self, origins: tuple[int, ...], rhs: Fraction, strict: bool) -> None:
        super().__init__(f"constraints {list(origins)} imply 0 {'<' if strict else '<='} {rhs}")
        self.origins = origins
        self.rhs = rhs
        self.strict = strict


@dataclass(frozen=True)
class _Row:
    """`sum(coeffs) <= rhs` (or `<`), normalized; `origins`: the history (original constraint indices)."""

    coeffs: tuple[tuple[int, Fraction], ...]  # sorted by column index, no zeros
    rhs: Fraction
    strict: bool
    origins: frozenset[int]

    def coeff(self, column: int) -> Fraction:
        for j, c in self.coeffs:
            if j == column:
                return c
        return Fraction(0)


def repair_order(columns: Sequence[str], order: Sequence[str] | None) -> tuple[int, ...]:
    """The columns named in `order` first, in that order, then the others in declaration order.

    Raises ValueError for an unknown or repeated name.
    """
    given = list(order or ())
    for name in given:
        if name not in columns:
            raise ValueError(f"`{name}` is not one of the columns ({', '.join(columns)})")
        if given.count(name) > 1:
            raise ValueError(f"`{name}` appears twice")
    first = [columns.index(name) for name in given]
    return tuple(first + [i for i in range(len(columns)) if i not in first])


def plan(constraints: Sequence[LinearConstraint], columns: Sequence[str], order: Sequence[int],
         *, dedupe: bool = True, chernikov: bool = True) -> Plan:
    """Eliminate along `order` (column indices, every column once); raises `Infeasible`.

    The redundancy rules can be switched off (for tests: the result must repair identically).
    """
    position = {c: p for p, c in enumerate(order)}
    rows = [r for r in (_normalize(_Row(c.coeffs, c.rhs, c.strict, frozenset([i])), position)
                        for i, c in enumerate(constraints)) if r is not None]
    rows = _dedupe(rows) if dedupe else rows
    mentioned = {j for c in constraints for j, _ in c.coeffs}
    steps: list[Step] = []
    eliminated = 0
    for column in reversed(order):
        eliminated += column in mentioned  # Chernikov's k: counting every column passed is conservative
        with_it = [r for r in rows if r.coeff(column) != 0]
        if not with_it:
            continue
        lower = [r for r in with_it if r.coeff(column) < 0]
        upper = [r for r in with_it if r.coeff(column) > 0]
        steps.append(Step(column, tuple(_bound(r, column, True, position) for r in lower),
                          tuple(_bound(r, column, False, position) for r in upper)))
        derived = []
        for lo in lower:
            for hi in upper:
                row = _combine(lo, hi, position)
                if row is not None and (not chernikov or len(row.origins) <= eliminated + 1):
                    derived.append(row)
        rows = [r for r in rows if r.coeff(column) == 0] + derived
        rows = _dedupe(rows) if dedupe else rows
    return Plan(tuple(columns), tuple(order), tuple(reversed(steps)))


def conflict(constraints: Sequence[LinearConstraint], columns: Sequence[str], order: Sequence[int],
             error: Infeasible) -> Infeasible:
    """Shrink an infeasibility to a minimal conflicting subset (deletion filter: drop each constraint
    whose removal keeps the rest infeasible)."""
    core = list(error.origins)
    for i in list(core):
        trial = [j for j in core if j != i]
        try:
            plan([constraints[j] for j in trial], columns, order)
        except Infeasible:
            core = trial
    try:
        plan([constraints[j] for j in core], columns, order)
    except Infeasible as final:
        return Infeasible(tuple(core[j] for j in final.origins), final.rhs, final.strict)
    return error  # unreachable: `core` stays infeasible by construction


def _normalize(row: _Row, position: dict[int, int]) -> _Row | None:
    """Scale so the last column in the order has coefficient +-1; check a row without columns."""
    if not row.coeffs:
        if row.rhs < 0 or (row.strict and row.rhs == 0):
            raise Infeasible(tuple(sorted(row.origins)), row.rhs, row.strict)
        return None  # always true
    last = max(row.coeffs, key=lambda jc: position[jc[0]])
    scale = abs(last[1])
    return _Row(tuple((j, c / scale) for j, c in row.coeffs), row.rhs / scale, row.strict, row.origins)


def _combine(lo: _Row, hi: _Row, position: dict[int, int]) -> _Row | None:
    """The sum of a lower bound (coefficient -1) and an upper bound (+1) on the same column: it cancels."""
    coeffs: dict[int, Fraction] = {}
    for j, c in lo.coeffs + hi.coeffs:
        coeffs[j] = coeffs.get(j, Fraction(0)) + c
    kept = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
    return _normalize(_Row(kept, lo.rhs + hi.rhs, lo.strict or hi.strict, lo.origins | hi.origins), position)


def _dedupe(rows) -> list[_Row]:
    """Of parallel rows (equal normalized coefficients) keep the tightest; on a full tie the shorter history."""
    best: dict[tuple, _Row] = {}
    for row in rows:
        old = best.get(row.coeffs)
        if old is None or _tighter(row, old):
            best[row.coeffs] = row
    return list(best.values())


def _tighter(a: _Row, b: _Row) -> bool:
    if a.rhs != b.rhs:
        return a.rhs < b.rhs
    if a.strict != b.strict:
        return a.strict
    return (len(a.origins), sorted(a.origins)) < (len(b.origins), sorted(b.origins))


def _bound(row: _Row, column: int, lower: bool, position: dict[int, int]) -> Bound:
    """`-x + sum(a_j x_j) <= b` is x >= sum(a_j x_j) - b; `x + sum(a_j x_j) <= b` is x <= b - sum(a_j x_j)."""
    sign = 1 if lower else -1
    terms = tuple(sorted(((j, sign * c) for j, c in row.coeffs if j != column), key=lambda jc: position[jc[0]]))
    return Bound(column, lower, -row.rhs if lower else row.rhs, terms, row.strict, tuple(sorted(row.origins)))


def number_text(value: Fraction) -> str:
    """Exact and short: `3`, `0.25`, `-1/3` (decimals only when they are exact)."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        digits = 0
        while (value * 10 ** digits).denominator != 1:
            digits += 1
        return f"{float(value):.{digits}f}"
    return str(value)


def _linear_text(terms: Sequence[tuple[str, Fraction]], const: Fraction) -> str:
    parts: list[str] = []
    for name, w in terms:
        mag = abs(w)
        term = name if mag == 1 else f"{number_text(mag)}*{name}"
        parts.append(("- " if w < 0 else "+ ") + term)
    if const != 0 or not parts:
        parts.append(("- " if const < 0 else "+ ") + number_text(abs(const)))
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _cite(origins: Sequence[int], sources: Sequence[LinearConstraint]) -> str:
    """Where a bound comes from: the constraint itself, or the lines of those it was derived from."""
    if not sources:
        return "from constraints " + ", ".join(str(i) for i in origins)
    if len(origins) == 1:
        c = sources[origins[0]]
        return f"{c.text}  ({_where(c)})" if c.span is not None else c.text
    places = [_where(sources[i]) if sources[i].span is not None else f"`{sources[i].text}`" for i in origins]
    return "derived from " + ", ".join(places)


def _where(c: LinearConstraint) -> str:
    assert c.span is not None
    return f"{c.span.path.replace(chr(92), '/').split('/')[-1]}:{c.span.line}"
