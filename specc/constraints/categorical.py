"""Categorical columns: a group of columns that is the one-hot (or softmax) encoding of one variable.

    columns (rooms, gas, electric, heat_pump, rent) = raw
    // in a rules file (or a `constrain` block):
    heating = [gas, electric, heat_pump]          // a categorical variable; its categories are columns
    heating in {gas, electric} -> rent >= 400      // `in`, `==`, `!=` are literals of formulas
    not heating == heat_pump or rooms >= 3

A categorical variable is a column whose allowed values are a finite set (DRL's view): it takes
one place in the repair order (where its first column is declared, or where `order` names it).

Semantics, per row:
- The variable's value is the category with the largest column (the first on a tie); the group's
  columns come out one-hot (1 at the chosen category, 0 elsewhere), always.
- Columns before the variable in the repair order are repaired first. If the largest category is
  allowed given them (some value of the later columns satisfies every formula), it is kept;
  otherwise the variable switches to the allowed category with the largest column. Columns after
  it are then repaired given the category. So every output row satisfies every formula, as for
  numeric columns, and putting the variable first in `order` keeps the generator's category and
  repairs the numeric columns instead.
- A NaN in the group makes the row's constrained columns NaN, as a NaN in any constrained column.
- The one-hot output is piecewise constant: no gradient flows to the group's columns.

It compiles to the disjunctive layer (specc.constraints.disjunctive) with no new runtime step:
- The group's columns c_k are binary (`0 <= c_k <= 1`, `c_k <= 0 or c_k >= 1`) and sum to 1.
- `heating in S` is the literal `sum of S's columns >= 1/2` (its negation `< 1/2`, which on binary
  columns is `== 0`, also after repair to the closure).
- Hidden columns carry the choice: a copy of each category's column (score s_k, first in the repair
  order, never moved) and `best`, just before the group, which starts at max_k s_k; the clauses
  `c_k <= 0 or best <= s_k` tie a chosen category to its score. Elimination of the group's columns
  by resolution leaves clauses on `best` that say "some allowed category has s_k >= best", so the
  repair moves `best` down to the largest allowed score, and the group's columns, which arrive
  as the one-hot of the argmax, move to that category. The runtime adds the hidden columns before
  the layer (with the one-hot of the argmax) and drops them after it (`expand` gives the gather).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from ..diagnostics import Span, SpeccError
from . import LinearConstraint
from .disjunctive import Formula

UNKNOWN_CATEGORY = "E0712"  # `color in {purple}`: no such category in the group
NOT_CATEGORICAL = "E0713"  # `rooms in {a}`: a category set on a name that is no categorical variable
BAD_GROUP = "E0714"  # a declaration: unknown column, a column in two groups, fewer than 2 categories, a clash
CATEGORICAL_AS_NUMBER = "E0715"  # `color >= 1`: a categorical variable in arithmetic
BAD_SET = "E0716"  # an empty set `{}` or a category repeated in it

_HALF = Fraction(1, 2)


@dataclass(frozen=True)
class Categorical:
    """A categorical variable: its name and its categories, each a column (index into the columns)."""

    name: str
    categories: tuple[int, ...]
    span: Span | None = None


def declare(name: str, categories: Sequence[tuple[str, Span | None]], columns: Sequence[str],
            groups: Sequence[Categorical], span: Span | None) -> Categorical:
    """A group from `name = [a, b, c]`, checked against the columns and the groups declared before."""
    if name in columns:
        raise SpeccError(BAD_GROUP, f"categorical variable `{name}` has the name of a column", span,
                         help="name the variable apart from its categories' columns, e.g. `heating = [gas, oil]`")
    taken = {c: g for g in groups for c in g.categories}
    if any(g.name == name for g in groups):
        raise SpeccError(BAD_GROUP, f"categorical variable `{name}` is declared twice", span)
    if len(categories) < 2:
        raise SpeccError(BAD_GROUP, f"categorical variable `{name}` needs at least two categories", span)
    index: list[int] = []
    for category, where in categories:
        if category not in columns:
            raise SpeccError(BAD_GROUP, f"category `{category}` of `{name}` is not a column", where or span,
                             help=f"the categories are columns of the one-hot group; the columns: {', '.join(columns)}")
        j = columns.index(category)
        if j in index:
            raise SpeccError(BAD_GROUP, f"category `{category}` appears twice in `{name}`", where or span)
        if j in taken:
            raise SpeccError(BAD_GROUP, f"column `{category}` is already a category of `{taken[j].name}`",
                             where or span)
        index.append(j)
    return Categorical(name, tuple(index), span)


def membership(group: Categorical, names: Sequence[tuple[str, Span | None]], columns: Sequence[str], text: str,
               span: Span | None) -> LinearConstraint:
    """`group in {names}` as the literal `sum of their columns >= 1/2` (i.e. `-sum <= -1/2`)."""
    if not names:
        raise SpeccError(BAD_SET, f"`{text}`: the set of categories is empty", span)
    chosen: list[int] = []
    for category, where in names:
        j = columns.index(category) if category in columns else -1
        if j not in group.categories:
            options = ", ".join(columns[c] for c in group.categories)
            raise SpeccError(UNKNOWN_CATEGORY, f"`{category}` is no category of `{group.name}`", where or span,
                             help=f"the categories of `{group.name}`: {options}")
        if j in chosen:
            raise SpeccError(BAD_SET, f"category `{category}` appears twice in the set", where or span)
        chosen.append(j)
    return LinearConstraint(tuple((j, Fraction(-1)) for j in sorted(chosen)), -_HALF, False, text, span)


def _unit(coeffs: Sequence[tuple[int, Fraction]], rhs: Fraction, text: str) -> LinearConstraint:
    return LinearConstraint(tuple(sorted(coeffs)), rhs, False, text)


@dataclass(frozen=True)
class Expansion:
    """The layer's columns once the groups' hidden ones are added, and how to build them from the input.

    `columns`: visible columns, then per group its scores and `best`; `order`: the repair order over
    them; `formulas`: each group's (binary, one-hot, tied to the scores); `gather`: for each expanded
    column, its index in `[input columns, one-hot of each group's argmax, ...]` (the runtime concatenates
    the input with the one-hots, then gathers: group columns read the one-hot, scores the input, `best`
    the max, which the runtime appends last per group).
    """

    columns: tuple[str, ...]
    order: tuple[int, ...]
    formulas: tuple[Formula, ...]
    groups: tuple[tuple[int, ...], ...]  # each group's columns, in category order
    gather: tuple[int, ...]
    visible: int


def expand(columns: Sequence[str], groups: Sequence[Categorical], order: Sequence[str] | None) -> Expansion:
    """The expanded layer for `groups` over `columns`; `order` may name a group as one column. Raises
    ValueError for an order naming an unknown or repeated name, or one column of a group."""
    from .fourier_motzkin import repair_order

    n = len(columns)
    of_group = {c: g for g in groups for c in g.categories}
    collapsed: list[str] = []
    for j, name in enumerate(columns):
        if j not in of_group:
            collapsed.append(name)
        elif of_group[j].categories[0] == j or j == min(of_group[j].categories):
            if of_group[j].name not in collapsed:
                collapsed.append(of_group[j].name)
    for name in order or ():
        if any(name == columns[c] for c in of_group):
            group = next(g for c, g in of_group.items() if columns[c] == name)
            raise ValueError(f"`{name}` is a category of `{group.name}`: name the variable `{group.name}` in "
                             "the order (its categories are repaired together)")
    collapsed_order = repair_order(collapsed, order)
    names = list(columns)
    gather = list(range(n))
    hot_base = n
    score_index: list[list[int]] = []
    best_index: list[int] = []
    extra_after_hots = n + sum(len(g.categories) for g in groups)  # maxima appended after the one-hots
    for gi, g in enumerate(groups):
        for k, c in enumerate(g.categories):
            gather[c] = hot_base + k
        hot_base += len(g.categories)
        score_index.append([])
        for c in g.categories:
            score_index[-1].append(len(names))
            names.append(f"{g.name}.score[{columns[c]}]")
            gather.append(c)
        best_index.append(len(names))
        names.append(f"{g.name}.best")
        gather.append(extra_after_hots + gi)
    by_name = {g.name: gi for gi, g in enumerate(groups)}
    full_order: list[int] = [j for scores in score_index for j in scores]
    for i in collapsed_order:
        name = collapsed[i]
        if name in by_name:
            gi = by_name[name]
            full_order += [best_index[gi], *groups[gi].categories]
        else:
            full_order.append(columns.index(name))
    formulas: list[Formula] = []
    for gi, g in enumerate(groups):
        def unit(coeffs, rhs, text, span=g.span):
            return Formula(((_unit(coeffs, rhs, text),),), text, span)
        cats = g.categories
        for k, c in enumerate(cats):
            name = columns[c]
            formulas.append(unit([(c, Fraction(-1))], Fraction(0), f"{name} >= 0 (one-hot `{g.name}`)"))
            formulas.append(unit([(c, Fraction(1))], Fraction(1), f"{name} <= 1 (one-hot `{g.name}`)"))
            text = f"{name} <= 0 or {name} >= 1 (one-hot `{g.name}`)"
            formulas.append(Formula(((_unit([(c, Fraction(1))], Fraction(0), text),
                                      _unit([(c, Fraction(-1))], Fraction(-1), text)),), text, g.span))
            text = f"{name} <= 0 or {g.name}.best <= {g.name}.score[{name}] (the best allowed category)"
            formulas.append(Formula(((_unit([(c, Fraction(1))], Fraction(0), text),
                                      _unit([(best_index[gi], Fraction(1)), (score_index[gi][k], Fraction(-1))],
                                            Fraction(0), text)),), text, g.span))
        total = " + ".join(columns[c] for c in cats)
        formulas.append(unit([(c, Fraction(1)) for c in cats], Fraction(1), f"{total} <= 1 (one-hot `{g.name}`)"))
        formulas.append(unit([(c, Fraction(-1)) for c in cats], Fraction(-1), f"{total} >= 1 (one-hot `{g.name}`)"))
    return Expansion(tuple(names), tuple(full_order), tuple(formulas), tuple(g.categories for g in groups),
                     tuple(gather), n)


def satisfied(expansion: Expansion, formulas: Sequence[Formula], rows, tol: float = 1e-5):
    """Which rows (over the visible columns, e.g. the layer's output) satisfy which formulas: a bool
    array [rows, formulas']. The formulas are a layer's (`ConstrainAttrs.all_formulas`) less those that
    tie the choice to the hidden columns (meaningless on an output); the groups' one-hot formulas stay."""
    import numpy as np

    from .disjunctive import satisfied as formulas_hold

    x = np.asarray(rows, dtype=np.float64)
    visible = [f for f in formulas
               if all(j < expansion.visible for clause in f.clauses for lit in clause for j, _ in lit.coeffs)]
    padded = np.concatenate([x, np.zeros((x.shape[0], len(expansion.columns) - expansion.visible))], 1)
    return formulas_hold(visible, padded, tol)


__all__ = ["Categorical", "Expansion", "declare", "expand", "membership", "satisfied", "UNKNOWN_CATEGORY", "NOT_CATEGORICAL",
           "BAD_GROUP", "CATEGORICAL_AS_NUMBER", "BAD_SET"]
