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
- each constraint is kept with integer coefficients whose gcd is 1: parallel
  constraints then have equal coefficients (and adding up a pair is integer
  arithmetic, many times faster than rationals);
- of parallel constraints only the tightest is kept (smaller right-hand side;
  strict over non-strict on a tie), which also removes duplicates;
- Chernikov's rule: a constraint derived from more than k + 1 original ones after
  k columns have been eliminated is implied by the others and is dropped.
  The rule is tested on the histories before a pair is added up, so a dropped
  pair costs a set union, not rational arithmetic.
Even so the count can grow doubly exponentially with the number of columns, so
the work is bounded: every lower x upper pair counts as one generated
constraint (whether or not Chernikov's rule then drops it), and a `Budget` (the
`constraints` limit of specc.limits) is charged before each column's pairs are
formed; going over raises `TooLarge` naming that column. The order is the user's
lever against blow-up, and `suggest_order` looks for a better one greedily.
A derived constraint without columns is a consistency condition, `0 <= b` (or
`0 < b`): if it fails the set is infeasible, and the original constraints it was
derived from (its history) are the conflict, which `conflict` shrinks to a
minimal one. Arithmetic is exact (integers, Fractions for the right-hand
sides and the bounds), strictness is tracked.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from .. import limits
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
        (constant, ((earlier column, weight), ...), divisor) (see `runtime_row`): the bound is
        (constant + sum(weight * x[column])) / divisor."""
        return [(s.column, tuple(runtime_row(b) for b in s.lower), tuple(runtime_row(b) for b in s.upper))
                for s in self.steps]

    def gather_steps(self) -> list[tuple[int, tuple | None, tuple | None]]:
        """`runtime_steps` for backends that evaluate a side's bounds at once by gathering columns:
        (column, lower, upper), a side being None without bounds, else `gather_table`'s (constants,
        indices, weights, used, divisors): `gather_table` says how they are laid out. The backend drops
        the unused entries rather than multiply by 0, as 0 * inf in a column the bound does not read
        would be NaN."""
        return [(c, gather_table(lo), gather_table(hi)) for c, lo, hi in self.runtime_steps()]

    def constrained_columns(self) -> tuple[int, ...]:
        """The columns some bound reads or repairs, sorted: those a NaN in the row poisons (the others
        pass through every backend untouched and unread)."""
        return tuple(sorted({s.column for s in self.steps if s.lower or s.upper}
                            | {j for s in self.steps for b in s.lower + s.upper for j, _ in b.terms}))

    def step_texts(self) -> list[str]:
        """One line per step, for comments in generated code: `debt >= 0, debt <= income`."""
        out = []
        for s in self.steps:
            name = self.columns[s.column]
            out.append(", ".join(f"{name} {'>' if b.lower else '<'}{'' if b.strict else '='} "
                                 f"{b.expression(self.columns)}" for b in s.lower + s.upper))
        return out


_FloatRow = tuple[float, tuple[tuple[int, float], ...], float]

# A row's divisor is used only while it and the scaled numbers stay exact and moderate: the divisor
# at most _MOST_DIVISOR, every scaled constant and weight (integers then) below 2**53.
_MOST_DIVISOR = 2 ** 20
_EXACT = 2 ** 53


def runtime_row(b: Bound) -> _FloatRow:
    """A bound (or a disjunctive literal, stored as a Bound) as floats for the backends: (d * const,
    ((column, d * weight), ...), d), evaluated as (d * const + sum(d * weight * x[column])) / d.

    Why the divisor: a bound's coefficients are often not dyadic (`y_20 <= (y_0 - 1) / 3`), and summing
    float(-1/3) + float(1/3) * 7 gives 1.9999999999999998, below y_20 = 2, which then moves though the row
    satisfies `y_0 - 3 y_20 >= 1` exactly. d is the lcm of the denominators of the exact constant and
    weights, so the scaled ones are integers: on integer-valued rows of moderate size the numerator is
    exact, and one correctly rounded division of an exact quotient is exact, so a row on the bound stays.
    Where d or the scaled numbers would be large (not exactly representable, or a numerator that could
    not be exact anyway), d is 1: the plain float bound, as rounded as it ever was."""
    d = math.lcm(b.const.denominator, *(w.denominator for _, w in b.terms))
    if d > _MOST_DIVISOR or abs(b.const * d) >= _EXACT or any(abs(w * d) >= _EXACT for _, w in b.terms):
        d = 1
    return float(b.const * d), tuple((j, float(w * d)) for j, w in b.terms), float(d)


def gather_table(rows: Sequence[_FloatRow]) -> tuple | None:
    """Rows (constant, ((column, weight), ...), divisor) as a table to gather columns by: None without rows,
    else (constants, indices, weights, used, divisors): constants and divisors r long, the others r x k, k
    the most terms of a row (at least 1), shorter rows padded with column 0, weight 0 and used False."""
    if not rows:
        return None
    k = max(1, max(len(terms) for _, terms, _ in rows))
    pad = [(0, 0.0, False)] * k
    padded = [[(j, w, True) for j, w in terms] + pad[len(terms):] for _, terms, _ in rows]
    return (tuple(c for c, _, _ in rows), tuple(tuple(j for j, _, _ in r) for r in padded),
            tuple(tuple(w for _, w, _ in r) for r in padded), tuple(tuple(u for _, _, u in r) for r in padded),
            tuple(d for _, _, d in rows))


class Infeasible(Exception):
    """No point satisfies the constraints; `origins` are indices of constraints that conflict,
    which together imply `0 <= rhs` (or `0 < rhs` when strict), false."""

    def __init__(self, origins: tuple[int, ...], rhs: Fraction, strict: bool) -> None:
        super().__init__(f"constraints {list(origins)} imply 0 {'<' if strict else '<='} {rhs}")
        self.origins = origins
        self.rhs = rhs
        self.strict = strict


class OutOfRange(Exception):
    """A bound derived from constraints `origins` has a number past float64's largest, which the
    generated layer (it evaluates bounds in float64) cannot hold."""

    def __init__(self, origins: tuple[int, ...]) -> None:
        super().__init__(f"a bound derived from constraints {list(origins)} is out of float64's range")
        self.origins = origins


_LARGEST = sys.float_info.max


class TooLarge(Exception):
    """Eliminating `column` would bring the count of generated constraints to `generated`, over the budget."""

    def __init__(self, column: int, generated: int) -> None:
        super().__init__(f"eliminating column {column} would generate {generated} constraints")
        self.column = column
        self.generated = generated


class Budget:
    """How many constraints elimination may generate (each lower x upper pair is one).

    One budget can be shared by several runs (the trials of `conflict`), so that
    together they stop within the limit's time.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limits.value("constraints") if limit is None else limit
        self.used = 0

    def spend(self, amount: int, column: int) -> None:
        """Charge `amount` before doing the work; raises `TooLarge` (charging nothing) if it is over."""
        if self.used + amount > self.limit:
            raise TooLarge(column, self.used + amount)
        self.used += amount


@dataclass(frozen=True)
class _Row:
    """`sum(coeffs) <= rhs` (or `<`), with integer coefficients whose gcd is 1 (the canonical positive
    multiple); `origins`: the history (original constraint indices)."""

    coeffs: tuple[tuple[int, int], ...]  # sorted by column index, no zeros
    rhs: Fraction
    strict: bool
    origins: frozenset[int]

    def coeff(self, column: int) -> int:
        for j, c in self.coeffs:
            if j == column:
                return c
        return 0


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
         *, dedupe: bool = True, chernikov: bool = True, budget: Budget | None = None) -> Plan:
    """Eliminate along `order` (column indices, every column once); raises `Infeasible`, `TooLarge`
    when it would generate more constraints than `budget` (default: the `constraints` limit) allows,
    or `OutOfRange` when a bound needs a number past float64's range.

    The redundancy rules can be switched off (for tests: the result must repair identically).
    """
    budget = Budget() if budget is None else budget
    position = {c: p for p, c in enumerate(order)}
    rows = _initial_rows(constraints, dedupe)
    mentioned = {j for c in constraints for j, _ in c.coeffs}
    steps: list[Step] = []
    eliminated = 0
    for column in reversed(order):
        eliminated += column in mentioned  # Chernikov's k: counting every column passed is conservative
        lower, upper, rows = _eliminate(rows, column, eliminated if chernikov else None, budget, dedupe)
        if lower or upper:
            steps.append(Step(column, tuple(_bound(r, column, True, position) for r in lower),
                              tuple(_bound(r, column, False, position) for r in upper)))
    return Plan(tuple(columns), tuple(order), tuple(reversed(steps)))


def suggest_order(constraints: Sequence[LinearConstraint], preferred: Sequence[int],
                  budget: Budget) -> tuple[int, ...] | None:
    """A repair order of the constrained columns whose elimination fits `budget`, or None if none is found.

    Greedy (as min-fill orderings for elimination are): the next column to eliminate is the one with
    the fewest lower x upper pairs among the constraints left, ties going to the column `preferred`
    (the user's order) eliminates first. It runs the elimination itself, with the rules `plan` uses,
    so `plan` along the result generates exactly as many constraints.
    Raises `Infeasible` if it finds the set infeasible.
    """
    position = {c: p for p, c in enumerate(preferred)}
    rows = _initial_rows(constraints, True)
    left = {j for c in constraints for j, _ in c.coeffs}
    sequence: list[int] = []
    try:
        while left:
            signs = {j: [0, 0] for j in left}
            for r in rows:
                for j, c in r.coeffs:
                    signs[j][c > 0] += 1
            column = min(left, key=lambda j: (signs[j][0] * signs[j][1], -position[j]))
            left.discard(column)
            sequence.append(column)
            rows = _eliminate(rows, column, len(sequence), budget, True)[2]
    except TooLarge:
        return None
    return tuple(reversed(sequence))


def _initial_rows(constraints: Sequence[LinearConstraint], dedupe: bool) -> list[_Row]:
    """The constraints as rows: scaled by the lcm of their coefficients' denominators, then by 1/gcd."""
    rows = []
    for i, c in enumerate(constraints):
        scale = math.lcm(*(a.denominator for _, a in c.coeffs))
        row = _primitive({j: a.numerator * (scale // a.denominator) for j, a in c.coeffs},
                         c.rhs.numerator * scale, c.rhs.denominator, c.strict, frozenset([i]))
        if row is not None:
            rows.append(row)
    return _dedupe(rows) if dedupe else rows


def _eliminate(rows: list[_Row], column: int, chernikov: int | None, budget: Budget,
               dedupe: bool) -> tuple[list[_Row], list[_Row], list[_Row]]:
    """One step: the rows that bound `column` from below and above (negative / positive coefficient), and the rows
    without it: those that never had it, and the sum of every lower and upper pair that passes
    Chernikov's rule (`chernikov`: the number of columns eliminated so far, None for no rule).

    A pair whose sum has no column left (its other coefficients are opposite) is a consistency check,
    made even when the rule drops the pair: with the dominance checks, the rule alone does not keep
    every infeasibility in view. The candidates (other coefficients opposite in direction, if not
    necessarily in size) are found by a key per row, not by adding up every pair.
    """
    lower, upper, rest = [], [], []
    for r in rows:
        c = r.coeff(column)
        (rest if c == 0 else lower if c < 0 else upper).append(r)
    if not lower or not upper:
        return lower, upper, rest
    budget.spend(len(lower) * len(upper), column)
    most = None if chernikov is None else chernikov + 1
    lower_keys = [_direction(r, column, 1) for r in lower]
    upper_keys = [_direction(r, column, -1) for r in upper]
    for lo, lo_key in zip(lower, lower_keys):
        for hi, hi_key in zip(upper, upper_keys):
            dropped = most is not None and len(lo.origins | hi.origins) > most
            if dropped and lo_key != hi_key:
                continue
            row = _combine(lo, hi, column)  # raises `Infeasible` for a failed consistency check
            if row is not None and not dropped:
                rest.append(row)
    return lower, upper, _dedupe(rest) if dedupe else rest


def _direction(row: _Row, column: int, sign: int) -> tuple[tuple[int, int], ...]:
    """`sign` times the row's coefficients other than `column`, divided by their gcd: a lower and an
    upper row add up to a row without columns only if their keys (signs 1 and -1) are equal."""
    rest = [(j, c) for j, c in row.coeffs if j != column]
    g = math.gcd(*(c for _, c in rest))
    return tuple((j, sign * c // g) for j, c in rest)


def conflict(constraints: Sequence[LinearConstraint], columns: Sequence[str], order: Sequence[int],
             error: Infeasible, budget: Budget | None = None) -> Infeasible:
    """Shrink an infeasibility to a minimal conflicting subset (deletion filter: drop each constraint
    whose removal keeps the rest infeasible).

    The trials share `budget` (default: the `constraints` limit); once it is spent, the subset found
    so far is returned: still a conflict, if perhaps not a minimal one.
    """
    budget = Budget() if budget is None else budget
    core = list(error.origins)
    for i in list(core):
        trial = [j for j in core if j != i]
        try:
            plan([constraints[j] for j in trial], columns, order, budget=budget)
        except Infeasible:
            core = trial
        except TooLarge:
            break
    try:
        plan([constraints[j] for j in core], columns, order, budget=Budget(budget.limit))
    except Infeasible as final:
        return Infeasible(tuple(core[j] for j in final.origins), final.rhs, final.strict)
    except TooLarge:
        pass
    return error  # reached only when the budget ran out on the original conflict


def _primitive(coeffs: dict[int, int], num: int, den: int, strict: bool, origins: frozenset[int]) -> _Row | None:
    """`sum(coeffs) <= num / den` divided by the gcd of its coefficients; a row without columns is
    checked (`0 <= rhs`) and dropped, or raises `Infeasible`. (One Fraction is built per row: rational
    arithmetic dominates the cost of elimination.)"""
    kept = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
    if not kept:
        rhs = Fraction(num, den)
        if rhs < 0 or (strict and rhs == 0):
            raise Infeasible(tuple(sorted(origins)), rhs, strict)
        return None  # always true
    g = math.gcd(*(c for _, c in kept))
    return _Row(tuple((j, c // g) for j, c in kept) if g != 1 else kept, Fraction(num, den * g), strict, origins)


def _combine(lo: _Row, hi: _Row, column: int) -> _Row | None:
    """`q * lo + p * hi`, where lo's coefficient on `column` is -p and hi's is q: the column cancels.

    A row without columns gets the right-hand side `lo.rhs / p + hi.rhs / q`, the sum of the two
    bounds with coefficient 1 on the column, so an infeasibility reads the same whatever the scaling.
    """
    p, q = -lo.coeff(column), hi.coeff(column)
    coeffs = {j: q * c for j, c in lo.coeffs}
    for j, c in hi.coeffs:
        coeffs[j] = coeffs.get(j, 0) + p * c
    strict, origins = lo.strict or hi.strict, lo.origins | hi.origins
    n1, d1, n2, d2 = lo.rhs.numerator, lo.rhs.denominator, hi.rhs.numerator, hi.rhs.denominator
    num = q * n1 * d2 + p * n2 * d1  # q * lo.rhs + p * hi.rhs, over d1 * d2
    if not any(coeffs.values()):
        return _primitive({}, num, p * q * d1 * d2, strict, origins)
    return _primitive(coeffs, num, d1 * d2, strict, origins)


def _dedupe(rows) -> list[_Row]:
    """Of parallel rows (equal primitive coefficients) keep the tightest; on a full tie the shorter history."""
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
    """Divided by |a| (x's coefficient): `-x + sum(a_j x_j) <= b` is x >= sum(a_j x_j) - b;
    `x + sum(a_j x_j) <= b` is x <= b - sum(a_j x_j)."""
    scale = abs(row.coeff(column))
    sign = 1 if lower else -1
    terms = tuple(sorted(((j, Fraction(sign * c, scale)) for j, c in row.coeffs if j != column),
                         key=lambda jc: position[jc[0]]))
    rhs = row.rhs / scale
    if abs(rhs) > _LARGEST or any(abs(w) > _LARGEST for _, w in terms):
        raise OutOfRange(tuple(sorted(row.origins)))
    return Bound(column, lower, -rhs if lower else rhs, terms, row.strict, tuple(sorted(row.origins)))


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
