"""Training support for constraint sets: how often rows violate them, and a loss that penalizes it.

A constraint layer (`constrain`) makes violations impossible; the papers compare it with a generator
trained without the layer, whose samples do violate, sometimes with a penalty added to the loss.
Showing "0% violations" against such a baseline needs the same constraints outside the layer:

    rules = ConstraintSet.from_spec("specs/loan_generator.nnspec")      # the spec's `constrain` layer
    print(report(samples, rules))                                       # per-constraint violation rates
    loss = loss + violation_loss(generated, rules)                      # the baseline's penalty

Both read the constraints as written (and a rules file's), before Fourier–Motzkin elimination, so a
report names the constraints the user wrote. Disjunctive lines (`or`, `not`, `->`, propositional
clauses over labels) count as one constraint each: a row violates a line when it violates one of its
clauses, i.e. every literal of that clause. A categorical variable's literals (`heating in {gas, oil}`,
`==`, `!=`) read the row's category as the layer decodes it, its largest column (the first on a tie):
a row violates `heating in {gas, oil} -> chimney >= 1` when its largest heating column is gas or oil
and chimney < 1, whether or not the group is one-hot. The layer's own rules that tie the group to its
hidden columns (one-hot, best allowed category) are no lines of the user's and are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import LinearConstraint, violations
from .disjunctive import Formula

@dataclass(frozen=True)
class ConstraintSet:
    """Linear constraints and disjunctive lines over named columns: `columns` is the order of a row's
    last dim."""

    columns: tuple[str, ...]
    constraints: tuple[LinearConstraint, ...]
    formulas: tuple[Formula, ...] = ()  # lines with `or` / `not` / `->`, as clauses
    # categorical variables: each one's category columns; `heating in S` is the literal `sum of S's columns >= 1/2`,
    # read on the one-hot of the row's largest category column (`decoded`, `category_literal`)
    groups: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def from_spec(cls, path: str | Path, model: str | None = None, params: dict[str, Any] | None = None,
                  layer: str | None = None) -> "ConstraintSet":
        """The constraints of a `constrain` layer of a spec's model (its block and its rules file).

        `layer` names the layer's output value; it may be left out when the model has one constraint
        layer. Compile errors are raised as `SpeccError`, as `specc compile` reports them.
        """
        from ..compiler import compile_graph

        graph = compile_graph(path, model, params)
        found = [n for n in graph.nodes() if n.op == "constrain"]
        names = ", ".join(f"`{n.name}`" for n in found) or "none"
        if layer is not None:
            found = [n for n in found if n.name == layer]
        if len(found) != 1:
            which = f"no constraint layer named `{layer}`" if layer is not None and not found else (
                "no constraint layer" if not found else "several constraint layers; choose one with `layer=`")
            raise ValueError(f"{path}: model `{graph.name}` has {which} (its constraint layers: {names})")
        attrs = found[0].attrs
        if attrs.disjunctive:
            expansion = attrs.expansion
            if expansion is None:
                return cls(attrs.columns, (), attrs.all_formulas)
            # the expansion's formulas come first; the user's lines, over the visible columns, follow
            return cls(attrs.columns, (), attrs.all_formulas[len(expansion.formulas):], expansion.groups)
        return cls(attrs.columns, attrs.all_constraints)

    @classmethod
    def from_file(cls, path: str | Path, columns: Sequence[str]) -> "ConstraintSet":
        """The constraints of a rules file (specc's format or pishield's) over `columns`."""
        from .files import load_constraints

        loaded = load_constraints(path, columns)
        groups = tuple(g.categories for g in loaded.categoricals)
        return cls(tuple(columns), loaded.constraints, tuple(loaded.formulas), groups)

    def lines(self) -> list[tuple[str, tuple[tuple[LinearConstraint, ...], ...]]]:
        """Every constraint as (its text, its clauses): a linear one is one clause of one literal."""
        return [(c.text, ((c,),)) for c in self.constraints] + [(f.text, f.clauses) for f in self.formulas]

    def matrix(self):
        """`(A, b)` as float64 numpy arrays, with every linear constraint as `A[k] @ row <= b[k]`."""
        import numpy as np

        a = np.zeros((len(self.constraints), len(self.columns)))
        b = np.zeros(len(self.constraints))
        for k, c in enumerate(self.constraints):
            for j, coeff in c.coeffs:
                a[k, j] = float(coeff)
            b[k] = float(c.rhs)
        return a, b

    def _rows(self, rows):
        import numpy as np

        x = np.asarray(rows.detach().cpu() if hasattr(rows, "detach") else rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise ValueError(f"expected rows of shape [N, {len(self.columns)}] (columns "
                             f"{', '.join(self.columns)}), got shape {list(x.shape)}")
        return x

    def decoded(self, x):
        """numpy rows [N, columns] with each categorical variable's columns replaced by the one-hot of its
        largest one (the first on a tie): the category the layer reads. Other columns are unchanged."""
        import numpy as np

        out = np.array(x, dtype=np.float64)
        for group in self.groups:
            out[:, list(group)] = np.eye(len(group))[out[:, list(group)].argmax(-1)]
        return out

    def category_literal(self, c: LinearConstraint) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """For a categorical literal, (the categories' columns it allows, the others); None for a numeric one.
        `heating in S` is `-sum of S's columns <= -1/2` (categorical.membership), its negation `sum < 1/2`:
        the categories not in S."""
        named = {j for j, _ in c.coeffs}
        for group in self.groups:
            if named <= set(group):
                inside = all(a < 0 for _, a in c.coeffs)
                allowed = tuple(j for j in group if (j in named) == inside)
                return allowed, tuple(j for j in group if j not in allowed)
        return None


@dataclass(frozen=True)
class ViolationReport:
    """How many of `rows` rows violate each constraint; `str()` is a table for a log or a paper."""

    constraints: tuple[str, ...]  # each as written
    violated: tuple[int, ...]  # rows violating each constraint
    rows: int
    rows_violating: int  # rows violating at least one constraint
    rows_not_finite: int  # rows with NaN or inf in a constrained column (counted nowhere else)

    @property
    def rate(self) -> float:
        """The fraction of rows that violate at least one constraint."""
        return self.rows_violating / self.rows if self.rows else 0.0

    def __str__(self) -> str:
        width = max([len("constraint")] + [len(c) for c in self.constraints])
        lines = [f"{'constraint':<{width}}  {'rows':>9}  {'rate':>7}"]
        for text, count in zip(self.constraints, self.violated):
            lines.append(f"{text:<{width}}  {count:>9,}  {count / max(self.rows, 1):>7.2%}")
        lines.append(f"{'any constraint':<{width}}  {self.rows_violating:>9,}  {self.rate:>7.2%}"
                     f"   of {self.rows:,} rows")
        if self.rows_not_finite:
            lines.append(f"{self.rows_not_finite:,} rows have NaN or inf in a constrained column")
        return "\n".join(lines)


def report(rows, rules: ConstraintSet, tol: float = 1e-5) -> ViolationReport:
    """Per-constraint violation counts of `rows` ([N, columns], numpy or torch), with the tolerance of
    `specc.constraints.violations` (relative to the size of each constraint's terms)."""
    import numpy as np

    from .disjunctive import satisfied

    x = rules._rows(rows)
    lines = rules.lines()
    used = sorted({j for _, clauses in lines for clause in clauses for c in clause for j, _ in c.coeffs})
    finite = np.isfinite(x[:, used]).all(1) if used else np.ones(len(x), dtype=bool)
    checked = rules.decoded(x[finite])
    bad = np.concatenate([violations(rules.constraints, checked, tol),  # one pass for the linear ones
                          ~satisfied(rules.formulas, checked, tol)], axis=1)
    return ViolationReport(tuple(text for text, _ in lines), tuple(int(n) for n in bad.sum(0)),
                           len(x), int(bad.any(1).sum()), int((~finite).sum()))


def violation_loss(x, rules: ConstraintSet, reduction: str = "mean"):
    """A differentiable penalty for violating `rules`: per row, the sum over constraints of how far
    `A[k] @ row` exceeds `b[k]` (0 where it holds), each constraint scaled by its coefficients' norm so
    that writing `2a <= 2b` instead of `a <= b` does not double its weight; a disjunctive line adds,
    per clause, the excess of its least violated literal (0 where one holds). A categorical literal
    (`heating in S`) is exceeded by how far the row's largest category column outside S is above its
    largest one in S: 0 exactly where the category `report` reads is in S, and its gradient raises the
    allowed categories' columns and lowers the others'. So a row with gas heating that breaks `heating
    in {gas, oil} -> chimney >= 1` is pushed toward chimney >= 1 or toward another category, whichever
    is nearer.

    `x` is a torch tensor [..., columns]; `reduction` is "mean" or "sum" over rows, or "none" for one
    value per row. It is the penalty of a baseline trained without a constraint layer; it lowers
    violations but, unlike the layer, guarantees nothing.
    """
    import torch

    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if x.shape[-1] != len(rules.columns):
        raise ValueError(f"expected a last dim of {len(rules.columns)} (columns {', '.join(rules.columns)}), "
                         f"got shape {list(x.shape)}")

    def excess(literals: Sequence[LinearConstraint]):
        """[..., k]: how far each literal is exceeded, a linear one scaled by its coefficients' norm."""
        numeric = [c for c in literals if rules.category_literal(c) is None]
        a, b = ConstraintSet(rules.columns, tuple(numeric)).matrix()
        norm = (a * a).sum(1) ** 0.5
        a_t = torch.as_tensor(a / norm[:, None], dtype=x.dtype, device=x.device)
        b_t = torch.as_tensor(b / norm, dtype=x.dtype, device=x.device)
        out = [torch.relu(x @ a_t.T - b_t)]
        for c in literals:
            category = rules.category_literal(c)
            if category is not None:
                allowed, others = category
                gap = x[..., list(others)].amax(-1) - x[..., list(allowed)].amax(-1) if others else x[..., 0] * 0
                out.append(torch.relu(gap)[..., None])
        return torch.cat(out, -1)

    per_row = excess(rules.constraints).sum(-1)
    for formula in rules.formulas:  # a clause is as violated as its least violated literal
        for clause in formula.clauses:
            per_row = per_row + excess(clause).amin(-1)
    if reduction == "none":
        return per_row
    return per_row.mean() if reduction == "mean" else per_row.sum()
