"""Disjunctive constraints (QFLRA): `or`, `and`, `not` and `->` between linear inequalities.

    sample = constrain(raw, order=[income, debt, loan]) {
        debt <= 0.5 * income or loan <= 10          // not a convex set
        loan > 0 -> debt >= 1                        // nor is this one
    }

Each line is a formula; `not` is pushed onto the inequalities (`not a <= b` is `a > b`), and the
formula is put into conjunctive normal form: clauses, each a disjunction of linear inequalities
(`LinearConstraint`s, the literals). A block whose clauses all have one literal is a plain set of
linear constraints and compiles to the Fourier–Motzkin layer, unchanged. Otherwise it compiles to
a disjunctive refinement layer, in the spirit of DRL (Stoian & Giunchiglia, "Beyond the convexity
assumption", 2025):

- Columns are repaired one at a time in the repair order. The clauses whose last column (in that
  order) is x define, once the earlier columns are repaired, a union of closed intervals for x: a
  clause whose literals without x hold allows every x; otherwise its literals on x, `x >= L_i` and
  `x <= U_j`, allow everything but the open gap (max U_j, min L_i). x moves to the nearest point
  outside every gap (it stays where it is when it is in no gap): the ends of the connected union of
  gaps around it. A tie goes to the lower end.
- That every earlier choice leaves some x is guaranteed at compile time by eliminating the columns,
  last first, with resolution on bounds, which generalizes Fourier–Motzkin elimination to clauses:
  a clause with a lower bound `x >= L` and one with an upper bound `x <= U` resolve into
  `(rest of the first) or (rest of the second) or L <= U`; saturating the clauses on x under that
  rule and keeping the resolvents without x gives exactly the projection onto the earlier columns
  (the x-free consequences are what a chain of overlapping gaps covering the line needs to be
  false). Deriving the empty clause means the formulas are unsatisfiable; a deletion filter over the
  source lines then names a minimal conflicting subset (E0710).
- Work is bounded by the `constraints` limit (specc.limits), shared with Fourier–Motzkin
  elimination: every pair of bounds resolved counts as one generated constraint, and every literal
  of the normal form as one given constraint.
- Strict inequalities take part in satisfiability exactly, and are repaired to their closure, as in
  the linear layer.
- The map is piecewise linear: inside the allowed set it is the identity; a moved value equals the
  bound at the chosen end of the gaps, and its gradient follows that bound to the earlier columns it
  reads. It is discontinuous where the nearer end switches (as any map onto a non-convex set is).
- Non-finite values as in the linear layer: columns no clause reads pass through unread; a NaN in a
  constrained column makes the row's constrained columns NaN; +-inf is a value, and a literal that
  has no value (inf - inf) does not bind (its clause holds).
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Callable, Sequence

from .. import ast
from ..diagnostics import Span
from . import LinearConstraint
from .fourier_motzkin import (Bound, Budget, Infeasible, OutOfRange, TooLarge, _bound, _combine, _initial_rows,
                              _FloatRow, _linear_text, _Row, gather_table, runtime_row)

UNSATISFIABLE = "E0710"  # no row satisfies the formulas: a minimal conflicting set of lines
NOT_INEQUALITY = "E0711"  # an operand of `or`, `and`, `not`, `->` (or a line) that is no inequality

_LARGEST = sys.float_info.max


@dataclass(frozen=True)
class Formula:
    """One line of a `constrain` block, as clauses (conjunctive normal form over linear inequalities)."""

    clauses: tuple[tuple[LinearConstraint, ...], ...]
    text: str
    span: Span | None = None

    def __str__(self) -> str:
        return self.text


def negated(c: LinearConstraint) -> LinearConstraint:
    """`not (a.x <= b)` is `-a.x < -b` (and `not a.x < b` is `-a.x <= -b`)."""
    return LinearConstraint(tuple((j, -a) for j, a in c.coeffs), -c.rhs, not c.strict, f"not {c.text}", c.span)


def clauses_of(expr: Any, atom: Callable[[Any], LinearConstraint], budget: int,
               span: Span | None) -> tuple[tuple[LinearConstraint, ...], ...]:
    """The conjunctive normal form of a formula (`ast.Logic` nodes over leaves): `atom` turns a leaf (an
    `ast.Compare` in a spec; a parsed inequality in a rules file) into a literal, or raises its error.

    Negations are pushed onto the inequalities, `a -> b` is `not a or b`, and `or` distributes over
    `and`. Distribution can multiply the size, so more than `budget` literals in the result is the
    `constraints` limit's error at `span`.
    """
    from .. import limits

    def cnf(e: ast.Expr, positive: bool) -> list[tuple[LinearConstraint, ...]]:
        if isinstance(e, ast.Logic):
            if e.op == "not":
                return cnf(e.operands[0], not positive)
            left, right = e.operands
            if e.op == "->":  # not a or b
                parts, conjunction = [cnf(left, not positive), cnf(right, positive)], not positive
            else:
                parts, conjunction = [cnf(left, positive), cnf(right, positive)], (e.op == "and") == positive
            if conjunction:
                return parts[0] + parts[1]
            size = sum(len(a) + len(b) for a, b in itertools.product(*parts))
            if size > budget:
                raise limits.exceeded("constraints", size, span, "this formula's conjunctive normal form")
            return [a + b for a, b in itertools.product(*parts)]
        literal = atom(e)
        return [(literal if positive else negated(literal),)]

    return tuple(cnf(expr, True))


# ------------------------------------------------------------------ elimination by resolution
_Clause = frozenset  # of literal `_Row`s (with empty origins): a disjunction


class Unsatisfiable(Exception):
    """No point satisfies the formulas; `origins`: indices of formulas that together are unsatisfiable."""

    def __init__(self, origins: frozenset[int]) -> None:
        super().__init__(f"formulas {sorted(origins)} are unsatisfiable")
        self.origins = tuple(sorted(origins))


@dataclass(frozen=True)
class ClauseStep:
    """One clause of a column's step: its literals without the column (`free`: each `c + sum(w x_j) <= 0`),
    and its bounds on the column (lower: `x >= ...`, upper: `x <= ...`), over earlier columns."""

    free: tuple[Bound, ...]  # stored as Bounds: const + terms is the literal's left side minus its right
    lower: tuple[Bound, ...]
    upper: tuple[Bound, ...]
    origins: tuple[int, ...]


@dataclass(frozen=True)
class OrStep:
    column: int
    clauses: tuple[ClauseStep, ...]


@dataclass(frozen=True)
class OrPlan:
    """The compile-time result of a disjunctive block: for each constrained column, in repair order, its clauses."""

    columns: tuple[str, ...]
    order: tuple[int, ...]
    steps: tuple[OrStep, ...]

    def runtime_steps(self) -> list[tuple[int, tuple[tuple[tuple[_FloatRow, ...], tuple[_FloatRow, ...],
                                                            tuple[_FloatRow, ...]], ...]]]:
        """(column, clauses) per step for the backends, a clause being (free, lower, upper) rows, a row
        (constant, ((earlier column, weight), ...), divisor): a free literal holds where constant + sum <= 0, a lower
        bound is x >= constant + sum, an upper bound x <= constant + sum; every row's value divided by its
        divisor (rows as `fourier_motzkin.runtime_row`: exact where a row satisfies a literal exactly)."""
        def rows(bounds: tuple[Bound, ...]) -> tuple[_FloatRow, ...]:
            return tuple(runtime_row(b) for b in bounds)

        return [(s.column, tuple((rows(c.free), rows(c.lower), rows(c.upper)) for c in s.clauses))
                for s in self.steps]

    def gather_steps(self) -> list[tuple[int, tuple[tuple[tuple | None, tuple | None, tuple | None], ...]]]:
        """`runtime_steps` for backends that evaluate a clause's literals at once by gathering columns:
        each (free, lower, upper) as `fourier_motzkin.gather_table`s (None where a clause has none)."""
        return [(column, tuple(tuple(gather_table(rows) for rows in clause) for clause in clauses))
                for column, clauses in self.runtime_steps()]

    def constrained_columns(self) -> tuple[int, ...]:
        """The columns some clause reads or repairs (those a NaN in the row poisons)."""
        out = {s.column for s in self.steps}
        for s in self.steps:
            for c in s.clauses:
                out |= {j for b in c.free + c.lower + c.upper for j, _ in b.terms}
        return tuple(sorted(out))

    def step_texts(self) -> list[str]:
        """One line per step, for comments in generated code: `b: (a <= 0 or b >= 2), (b <= 5)`."""
        out = []
        for s in self.steps:
            name = self.columns[s.column]
            out.append(f"{name}: " + ", ".join("(" + " or ".join(_clause_texts(c, name, self.columns)) + ")"
                                                for c in s.clauses))
        return out

    def render(self, sources: Sequence[Formula] = ()) -> str:
        """The clauses per column, one clause per line, each with the lines it comes from."""
        lines = ["repair order: " + ", ".join(self.columns[i] for i in self.order)]
        for s in self.steps:
            name = self.columns[s.column]
            for c in s.clauses:
                where = ", ".join(_where(sources[i]) if i < len(sources) else str(i) for i in c.origins)
                lines.append(f"  {name}: " + " or ".join(_clause_texts(c, name, self.columns)).ljust(40)
                             + f"  // {'from' if len(c.origins) == 1 else 'derived from'} {where}")
        free = [self.columns[i] for i in self.order if i not in {s.column for s in self.steps}]
        if free:
            lines.append("  unconstrained: " + ", ".join(free))
        return "\n".join(lines)

    def bound_count(self) -> int:
        """Every literal of every step (each a dot product with earlier columns at run time)."""
        return sum(len(c.free) + len(c.lower) + len(c.upper) for s in self.steps for c in s.clauses)


def _clause_texts(c: ClauseStep, name: str, columns: Sequence[str]) -> list[str]:
    free = []
    for b in c.free:  # const + sum <= 0, shown as sum <= -const (or, its first weight negative, -sum >= const)
        sign = -1 if b.terms and b.terms[0][1] < 0 else 1
        op = ("<" if sign > 0 else ">") + ("" if b.strict else "=")
        free.append(_linear_text([(columns[j], sign * w) for j, w in b.terms], Fraction(0)) + f" {op} "
                    + _linear_text([], -sign * b.const))
    return free + [f"{name} {'>' if b.lower else '<'}{'' if b.strict else '='} {b.expression(columns)}"
                   for b in c.lower + c.upper]


def _where(f: Formula) -> str:
    if f.span is None:
        return f"`{f.text}`"
    return f"{f.span.path.replace(chr(92), '/').split('/')[-1]}:{f.span.line}"


def _literal(c: LinearConstraint) -> _Row:
    """The literal as a row with integer coefficients (a literal mentions a column, so it is never a
    constant row); clauses track their origins, literals none."""
    return replace(_initial_rows([c], False)[0], origins=frozenset())


def _normalize(literals) -> _Clause | None:
    """A clause from literal rows: of parallel literals (equal coefficients) the loosest is kept (in a
    disjunction the weaker one says it all); None when the clause always holds (two opposite literals
    that cover the line, `a.x <= b or a.x > b`)."""
    best: dict[tuple, _Row] = {}
    for lit in literals:
        old = best.get(lit.coeffs)
        if old is None or lit.rhs > old.rhs or (lit.rhs == old.rhs and old.strict and not lit.strict):
            best[lit.coeffs] = lit
    for coeffs, lit in best.items():
        opposite = best.get(tuple((j, -c) for j, c in coeffs))
        if opposite is not None:
            total = lit.rhs + opposite.rhs
            if total > 0 or (total == 0 and not (lit.strict and opposite.strict)):
                return None
    return _Clause(best.values())


def _resolve(first: _Clause, lower: _Row, second: _Clause, upper: _Row, column: int) -> _Clause | None:
    """`(first - lower) or (second - upper) or L <= U`, where lower is `x >= L` and upper `x <= U`; None
    when it always holds."""
    literals = [lit for lit in first if lit is not lower] + [lit for lit in second if lit is not upper]
    try:
        joined = _combine(lower, upper, column)
    except Infeasible:  # `L <= U` is a false constant: it adds nothing to the disjunction
        joined = False
    if joined is None:  # a true constant: the resolvent always holds
        return None
    if joined is not False:
        literals.append(joined)
    return _normalize(literals)


def _mentions(clause: _Clause, column: int) -> bool:
    return any(lit.coeff(column) for lit in clause)


def plan(formulas: Sequence[Formula], columns: Sequence[str], order: Sequence[int],
         budget: Budget | None = None) -> OrPlan:
    """Eliminate along `order` (column indices, every column once); raises `Unsatisfiable`, `TooLarge`
    when resolution would generate more constraints than `budget` allows, or `OutOfRange`."""
    budget = Budget() if budget is None else budget
    position = {c: p for p, c in enumerate(order)}
    clauses: dict[_Clause, frozenset[int]] = {}
    for i, f in enumerate(formulas):
        for literals in f.clauses:
            clause = _normalize(_literal(c) for c in literals)
            if clause is not None and clause not in clauses:
                clauses[clause] = frozenset([i])
    steps: list[OrStep] = []
    for column in reversed(order):
        mentioning = {c: o for c, o in clauses.items() if _mentions(c, column)}
        if not mentioning:
            continue
        rest = {c: o for c, o in clauses.items() if c not in mentioning}
        steps.append(OrStep(column, tuple(_step_clause(c, o, column, position)
                                          for c, o in sorted(mentioning.items(), key=_clause_key))))
        _saturate(mentioning, rest, column, budget)
        clauses = rest
    return OrPlan(tuple(columns), tuple(order), tuple(reversed(steps)))


def _clause_key(item: tuple[_Clause, frozenset[int]]) -> tuple:
    """A deterministic order of clauses (a frozenset's iteration order is not): by origin, then literals."""
    clause, origins = item
    return (sorted(origins), sorted((lit.coeffs, lit.rhs, lit.strict) for lit in clause))


def _saturate(mentioning: dict[_Clause, frozenset[int]], rest: dict[_Clause, frozenset[int]], column: int,
              budget: Budget) -> None:
    """Resolve the clauses on `column` until no new clause comes out; those without it go into `rest`.

    A resolvent that some known clause subsumes (is a subset of it) is dropped. Raises `Unsatisfiable`
    at the empty clause, and `TooLarge` (via `budget`) before resolving more pairs than allowed.
    """
    known: list[_Clause] = list(mentioning) + list(rest)
    queue = sorted(mentioning.items(), key=_clause_key)
    done: list[tuple[_Clause, frozenset[int], list[_Row], list[_Row]]] = []
    while queue:
        clause, origins = queue.pop(0)
        lower = [lit for lit in clause if lit.coeff(column) < 0]
        upper = [lit for lit in clause if lit.coeff(column) > 0]
        for other, other_origins, other_lower, other_upper in done:
            pairs = [(clause, lo, other, hi) for lo in lower for hi in other_upper] + \
                    [(other, lo, clause, hi) for lo in other_lower for hi in upper]
            if not pairs:
                continue
            budget.spend(len(pairs), column)
            for first, lo, second, hi in pairs:
                resolvent = _resolve(first, lo, second, hi, column)
                if resolvent is None or any(k <= resolvent for k in known):
                    continue
                merged = origins | other_origins
                if not resolvent:
                    raise Unsatisfiable(merged)
                known.append(resolvent)
                if _mentions(resolvent, column):
                    queue.append((resolvent, merged))
                else:
                    rest[resolvent] = merged
        done.append((clause, origins, lower, upper))


def _step_clause(clause: _Clause, origins: frozenset[int], column: int, position: dict[int, int]) -> ClauseStep:
    ordered = sorted(clause, key=lambda lit: (lit.coeffs, lit.rhs, lit.strict))
    free = tuple(_free(lit, position) for lit in ordered if not lit.coeff(column))
    lower = tuple(_bound(lit, column, True, position) for lit in ordered if lit.coeff(column) < 0)
    upper = tuple(_bound(lit, column, False, position) for lit in ordered if lit.coeff(column) > 0)
    return ClauseStep(free, lower, upper, tuple(sorted(origins)))


def _free(lit: _Row, position: dict[int, int]) -> Bound:
    """A literal without the step's column, `a.x <= b`, as `-b + a.x` (it holds where that is <= 0)."""
    if abs(lit.rhs) > _LARGEST:
        raise OutOfRange(tuple(sorted(lit.origins)))
    terms = tuple(sorted(((j, Fraction(c)) for j, c in lit.coeffs), key=lambda jc: position[jc[0]]))
    return Bound(-1, False, -lit.rhs, terms, lit.strict, ())


def conflict(formulas: Sequence[Formula], columns: Sequence[str], order: Sequence[int], error: Unsatisfiable,
             budget: Budget | None = None) -> tuple[int, ...]:
    """A minimal unsatisfiable subset of the formulas (deletion filter over those `error` names); once
    `budget` is spent, the subset found so far (still unsatisfiable, if perhaps not minimal)."""
    budget = Budget() if budget is None else budget
    core = list(error.origins)
    for i in list(core):
        trial = [j for j in core if j != i]
        try:
            plan([formulas[j] for j in trial], columns, order, budget)
        except Unsatisfiable as found:
            core = [trial[j] for j in found.origins]
        except (TooLarge, OutOfRange):
            break
    return tuple(core)


def satisfied(formulas: Sequence[Formula], rows, tol: float = 1e-5):
    """Which rows satisfy which formulas: a bool array [rows, formulas]. A clause holds when one of its
    literals does, with `specc.constraints.violations`' tolerance (strict literals to their closure)."""
    import numpy as np

    from . import violations

    x = np.asarray(rows, dtype=np.float64)
    out = np.ones((x.shape[0], len(formulas)), dtype=bool)
    for k, f in enumerate(formulas):
        for literals in f.clauses:
            out[:, k] &= (~violations(literals, x, tol)).any(1)
    return out


__all__ = ["Formula", "OrPlan", "Unsatisfiable", "clauses_of", "conflict", "negated", "plan", "satisfied",
           "TooLarge", "OutOfRange"]
