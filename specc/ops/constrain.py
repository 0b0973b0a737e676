"""constrain: repair the columns of a tensor so every row satisfies linear constraints (C-DGM).

    columns (age, income, debt, loan) = raw
    sample = constrain(raw, order=[age, income, debt, loan]) {
        age >= 18
        debt <= income
        loan - 0.5 * income - debt <= 0
    }

The lowering turns the block into `constraints` (each normalized to
`sum(coeff * column) <= rhs`, or `<`) and passes the column names. At compile
time Fourier–Motzkin elimination (specc.constraints.fourier_motzkin) turns them
into a bound set per column; an infeasible set is an error (E0705) that points at
a minimal set of conflicting constraints. At run time each column, in the repair
order, is clamped into [max of its lower bounds, min of its upper bounds], the
bounds being linear in the columns repaired before it.

- Order: `order=[...]` lists columns to repair first, in that order; the others
  follow in declaration order (the default order is the declaration order of
  `columns`). Earlier columns are kept whenever possible; the last column in the
  order absorbs most of the repair.
- `file="rules.txt"` adds the constraints of a file (specc's syntax or pishield's
  requirements format, see specc.constraints.files), relative to the spec; its
  `order` line applies when the spec gives no `order=`.
- Strict inequalities (`<`, `>`) are repaired to their closure, as pishield does:
  a repaired value may sit on the boundary, so a strict constraint holds up to the
  float tolerance (checks use 1e-5), never by a margin that would move rows that
  already satisfy it.
- Size: elimination can blow up (8 dense columns x 20 constraints ask for millions of
  pairs), so it is bounded by the `constraints` limit (specc.limits): given
  constraints and every lower x upper pair formed count. Going over is E0010 at the
  call, naming the column whose elimination went over and, when a greedy search
  finds one, an `order=[...]` that stays under the limit. A bound that needs a
  number past float64's range is E0709 at the constraints it comes from.
- Guarantees: with a feasible set every output row satisfies every constraint (up
  to float rounding of the bounds); rows already satisfying them are returned
  unchanged; the layer is idempotent.
- Gradients are those of the piecewise-linear repair map: the identity where a
  column is inside its interval; where it is clamped, its gradient goes to the
  earlier columns the active bound depends on (and none to the clamped column).
- Disjunctive constraints (`or`, `and`, `not`, `->` between inequalities) compile to
  the disjunctive refinement layer of specc.constraints.disjunctive (`formulas`); a
  block whose formulas are all conjunctions of inequalities is linear, as above.
- Categorical variables (`heating = [gas, oil]` as a line, `heating in {gas}` as a literal;
  specc.constraints.categorical) and propositional lines over labels (`probabilities = [a, b]`,
  `a and b -> not c`; specc.constraints.propositional) compile to that disjunctive layer too: the
  former with hidden columns the runtime adds before the layer and drops after it (`expansion`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, PrivateAttr, field_validator

from .. import limits
from ..constraints import NUMBER_ERROR, LinearConstraint
from ..constraints import disjunctive
from ..constraints.categorical import Categorical, Expansion, expand
from ..constraints.disjunctive import Formula, OrPlan
from ..constraints.propositional import BAD_LABELS, Labels
from ..constraints.fourier_motzkin import (Budget, Infeasible, OutOfRange, Plan, TooLarge, conflict, plan,
                                           repair_order, suggest_order)
from ..diagnostics import Note, SpeccError
from ..ir import Node
from ..types import Dim, Sym, TensorType, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register

INFEASIBLE = "E0705"
BAD_ORDER = "E0707"


class ConstrainAttrs(OpAttrs):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    # bounds closer than this, relative to the size of the terms they sum, are one bound that rounding
    # split (8 ulps of a double): the torch layer pins the column to it, value and gradient, as it does
    # where they are equal (triton's backward is the torch layer's; triton's and onnx's forward keep the
    # value inside the sliver, which differs by those ulps before rounding to the input's dtype)
    SLIVER: ClassVar[float] = 8 * 2.0 ** -52
    order: tuple[str, ...] | None = None  # column names; columns given in the spec arrive as names
    file: str | None = None  # a constraints file, relative to the spec
    constraints: tuple[LinearConstraint, ...]  # from the block (filled in by the lowering)
    columns: tuple[str, ...]  # the column names of the last dim, in declaration order (filled in by the lowering)
    # a block with `or` / `not` / `->` (some clause has several literals): its lines, in conjunctive normal form;
    # `constraints` is then empty (filled in by the lowering)
    formulas: tuple[Formula, ...] = ()
    # categorical variables declared in the block (`heating = [gas, oil]`; specc.constraints.categorical);
    # with any (the block's or the file's), the layer is disjunctive, over the expanded columns
    categoricals: tuple[Categorical, ...] = ()
    # `probabilities = [a, b]` / `logits = [a, b]` in the block, and its lines of bare labels (clauses over
    # specc.constraints.propositional atoms), compiled once the repair order is known
    labels: Labels | None = None
    propositions: tuple[Formula, ...] = ()
    _resolved: Any = PrivateAttr(default=None)  # (constraints or formulas incl. the file's, Plan or OrPlan)
    _expansion: Any = PrivateAttr(default=None)  # the categorical Expansion, when there are groups

    @field_validator("order", mode="before")
    @classmethod
    def _undefined_names(cls, value: Any) -> Any:
        """A name that is no column reaches us as a symbolic dim; keep its name, so the order check
        can say it is not one of the columns."""
        if isinstance(value, (list, tuple)):
            return tuple(_symbol_name(v) for v in value)
        return value

    @property
    def disjunctive(self) -> bool:
        """Whether the layer is the disjunctive one (its templates differ): the block's formulas, or its
        rules file's, are not all conjunctions of inequalities."""
        return isinstance(self.plan, OrPlan)

    @property
    def plan(self) -> Plan | OrPlan:
        """The bound sets, or the clauses of a disjunctive block (computed at shape inference; without a
        file they can be computed here)."""
        if self._resolved is None:
            if self.file is not None or self.propositions:
                raise RuntimeError("constrain: the plan of a node with a constraints file or propositional lines "
                                   "comes from shape inference")
            if self.categoricals:
                formulas = self.formulas + tuple(Formula(((c,),), c.text, c.span) for c in self.constraints)
                self._expansion = expand(self.columns, self.categoricals, self.order)
                formulas = self._expansion.formulas + formulas
                self._resolved = (formulas, disjunctive.plan(formulas, self._expansion.columns,
                                                             self._expansion.order))
                return self._resolved[1]
            order = repair_order(self.columns, self.order)
            self._resolved = ((self.formulas, disjunctive.plan(self.formulas, self.columns, order)) if self.formulas
                              else (self.constraints, plan(self.constraints, self.columns, order)))
        return self._resolved[1]

    def _expansion_order(self, groups: tuple[Categorical, ...], order: tuple[str, ...] | None) -> tuple[int, ...]:
        return expand(self.columns, groups, order).order

    @property
    def expansion(self) -> Expansion | None:
        """The categorical variables' expansion (hidden columns, gather), None without any."""
        self.plan  # noqa: B018 (computes it, or raises where shape inference must)
        return self._expansion

    @property
    def layer_columns(self) -> tuple[str, ...]:
        """The columns the layer repairs: the input's, then the categorical variables' hidden ones."""
        expansion = self.expansion
        return self.columns if expansion is None else expansion.columns

    @property
    def all_constraints(self) -> tuple[LinearConstraint, ...]:
        """The block's constraints, then the file's: what the plan's `origins` index."""
        if self.disjunctive:
            raise ValueError("this constraint layer has disjunctive constraints (`or`, `not`, `->`); see "
                             "`all_formulas`")
        return self._resolved[0]

    @property
    def all_formulas(self) -> tuple[Formula, ...]:
        """A disjunctive block's formulas, then the file's constraints (one-literal formulas): what the
        plan's `origins` index."""
        if not self.disjunctive:
            raise ValueError("this constraint layer has linear constraints only; see `all_constraints`")
        return self._resolved[0]

    def details(self) -> str:
        """The bound sets, readably (what `specc ir` shows under the graph); with a constraints file,
        once shape inference has read it."""
        if self._resolved is None and self.file is not None:
            return ""
        if self.disjunctive:
            return "clauses, by the column each repairs:\n" + self.plan.render(self.all_formulas)
        return "bound sets:\n" + self.plan.render(self.all_constraints)


def _symbol_name(value: Any) -> Any:
    if isinstance(value, Sym) and len(value.terms) == 1:
        (monomial, coefficient), = value.terms
        if len(monomial) == 1 and coefficient == 1:
            return monomial[0]
    return value


def resolve(node: Node) -> Plan | OrPlan:
    """Read the constraints file, eliminate, and keep the result on the node's attrs; errors as diagnostics."""
    attrs: ConstrainAttrs = node.attrs  # type: ignore[assignment]
    if attrs._resolved is not None:
        return attrs._resolved[1]
    call_sites = [Note(f"in block `{block}`, called here", span) for block, span in reversed(node.call_sites)]
    constraints, order, file_formulas, groups = attrs.constraints, attrs.order, (), attrs.categoricals
    propositions, labels = attrs.propositions, attrs.labels
    if attrs.file is not None:
        from ..constraints.files import load_constraints

        base = Path(node.span.path).parent if node.span is not None else Path()
        try:
            loaded = load_constraints(base / attrs.file, attrs.columns, within=base, groups=groups)
        except SpeccError as err:
            if err.span is None:
                err.span = node.span
            raise err.with_note(Note(f"constraints file of `{node.name}`", node.span)) from None
        constraints, file_formulas = constraints + loaded.constraints, loaded.formulas
        order = order if order is not None else loaded.order
        groups = loaded.categoricals
        if loaded.labels is not None and labels is not None:
            raise SpeccError(BAD_LABELS, "the labels are declared in the block and in its rules file",
                             loaded.labels.span, [Note("declared here", labels.span)] + call_sites,
                             help="declare them once")
        propositions, labels = propositions + loaded.propositions, labels or loaded.labels
    formulas = ()
    if attrs.formulas or file_formulas or groups or propositions:  # the block's formulas, its and the file's inequalities, the file's formulas
        formulas = attrs.formulas + tuple(Formula(((c,),), c.text, c.span) for c in constraints) + file_formulas
    if propositions:  # clauses over labels: their form depends on the repair order (each repaired at its head)
        from ..constraints.propositional import compile_clauses

        try:
            head_order = (attrs._expansion_order(groups, order) if groups else repair_order(attrs.columns, order))
        except ValueError:
            head_order = tuple(range(len(attrs.columns)))  # the order's error comes below, at the call
        formulas = formulas + compile_clauses(propositions, labels, head_order)
    if formulas:  # every literal of the normal form counts as a given constraint
        limits.check("constraints", sum(len(clause) for f in formulas for clause in f.clauses), node.span,
                     "constrain: the block's clauses and its rules file")
    else:
        limits.check("constraints", len(constraints), node.span, "constrain: the block and its rules file")
    try:
        if groups:
            attrs._expansion = expand(attrs.columns, groups, order)
            columns, columns_order = attrs._expansion.columns, attrs._expansion.order
            formulas = attrs._expansion.formulas + formulas
        else:
            columns, columns_order = attrs.columns, repair_order(attrs.columns, order)
    except ValueError as exc:
        raise SpeccError(BAD_ORDER, f"constrain: invalid `order`: {exc}", node.span, call_sites) from None
    if formulas:
        attrs._resolved = (formulas, _disjunctive_plan(formulas, columns, columns_order, node, call_sites))
        return attrs._resolved[1]
    try:
        result = plan(constraints, attrs.columns, columns_order)
    except Infeasible as err:
        raise _infeasible(constraints, attrs.columns, columns_order, err, node, call_sites) from None
    except TooLarge as err:
        raise _too_large(constraints, attrs.columns, columns_order, err, node, call_sites) from None
    except OutOfRange as err:
        raise _out_of_range(constraints, err, node, call_sites) from None
    attrs._resolved = (constraints, result)
    return result


def _disjunctive_plan(formulas: tuple[Formula, ...], columns: tuple[str, ...], order: tuple[int, ...], node: Node,
                      call_sites: list[Note]) -> OrPlan:
    """Eliminate by resolution; an unsatisfiable block names a minimal set of conflicting lines (E0710),
    going over the `constraints` limit is E0010 at the call, naming the column."""
    try:
        return disjunctive.plan(formulas, columns, order)
    except disjunctive.Unsatisfiable as err:
        core = disjunctive.conflict(formulas, columns, order, err)  # bounded by the `constraints` limit
        picked = sorted(core, key=lambda i: _source_key(formulas[i]))
        first = formulas[picked[0]]
        notes = [Note(f"conflicts with `{formulas[i].text}`", formulas[i].span) for i in picked[1:]]
        message = ("constrain: these constraints cannot all hold: " + ", ".join(f"`{formulas[i].text}`" for i in picked)
                   if len(picked) > 1 else f"constrain: constraint `{first.text}` cannot hold")
        raise SpeccError(disjunctive.UNSATISFIABLE, message, first.span or node.span, notes + call_sites,
                         help="no row satisfies them together (whichever side of each `or` is taken); "
                              "relax or remove one of them") from None
    except TooLarge as err:
        error = limits.exceeded("constraints", err.generated, node.span,
                                f"constrain: eliminating column `{columns[err.column]}` (and those after it in "
                                "the repair order) by resolution")
        error.help = ("the repair order decides how many clauses resolution generates: put the columns that "
                      "most clauses share first in `order=[...]`; or " + (error.help or ""))
        error.notes.extend(call_sites)
        raise error from None
    except OutOfRange:
        raise SpeccError(NUMBER_ERROR, "constrain: a bound derived from these constraints has a number larger "
                                       "than float64's largest (about 1.8e308)", node.span, call_sites,
                         help="rescale the columns (or coefficients) so the bounds stay in float64's range") from None


def _too_large(constraints, columns, order, err: TooLarge, node: Node, call_sites: list[Note]) -> SpeccError:
    """Over the `constraints` limit: the error at the call, naming the column whose elimination went
    over and, since the repair order is what decides the size, an order found greedily that stays
    under the limit, if there is one (the search is bounded by the same limit)."""
    try:
        better = suggest_order(constraints, order, Budget())
    except Infeasible as infeasible:  # the greedy order got far enough to find the conflict
        return _infeasible(constraints, columns, order, infeasible, node, call_sites)
    except OutOfRange as out_of_range:
        return _out_of_range(constraints, out_of_range, node, call_sites)
    error = limits.exceeded("constraints", err.generated, node.span,
                            f"constrain: eliminating column `{columns[err.column]}` (and those after it in "
                            "the repair order)")
    if better is not None:
        first = len(better) - 1  # `order=` needs only the columns before the rest follow in declaration order
        while first > 0 and better[first - 1] < better[first]:
            first -= 1
        hint = (f"the repair order decides how many constraints elimination generates: "
                f"`order=[{', '.join(columns[i] for i in better[:max(first, 1)])}]` stays under the limit (earlier "
                "columns are kept where possible, later ones absorb the repair)")
    else:
        hint = ("the repair order decides how many constraints elimination generates, but no order found "
                "greedily stays under the limit; fewer columns per constraint keep it small")
    error.help = f"{hint}; or {error.help}"
    error.notes.extend(call_sites)
    return error


def _out_of_range(constraints, err: OutOfRange, node: Node, call_sites: list[Note]) -> SpeccError:
    """A bound too large for float64: at the first of the constraints it is derived from."""
    picked = sorted(err.origins, key=lambda i: _source_key(constraints[i]))
    first = constraints[picked[0]]
    notes = [Note(f"with `{constraints[i].text}`", constraints[i].span) for i in picked[1:]]
    what = f"`{first.text}`" if len(picked) == 1 else "these constraints"
    return SpeccError(NUMBER_ERROR, f"constrain: a bound derived from {what} has a number larger than "
                                    "float64's largest (about 1.8e308)", first.span or node.span,
                      notes + call_sites, help="rescale the columns (or coefficients) so the bounds stay in "
                                               "float64's range")


def _infeasible(constraints, columns, order, err: Infeasible, node: Node, call_sites: list[Note]) -> SpeccError:
    """Name a minimal conflicting subset: the error at the first of them, notes at the others."""
    from ..constraints.fourier_motzkin import number_text

    core = conflict(constraints, columns, order, err)  # bounded by the `constraints` limit
    picked = sorted(core.origins, key=lambda i: _source_key(constraints[i]))
    quoted = ", ".join(f"`{constraints[i].text}`" for i in picked)
    implied = f"0 {'<' if core.strict else '<='} {number_text(core.rhs)}"
    first = constraints[picked[0]]
    notes = [Note(f"conflicts with `{constraints[i].text}`", constraints[i].span) for i in picked[1:]]
    if first.span is None:
        notes.insert(0, Note(f"`{first.text}`", None))
    message = (f"constrain: these constraints cannot all hold: {quoted}" if len(picked) > 1 else
               f"constrain: constraint `{first.text}` cannot hold")
    return SpeccError(INFEASIBLE, message, first.span or node.span, notes + call_sites,
                      help=f"added up with positive weights they imply {implied}; relax or remove one of them")


def _source_key(c: LinearConstraint | Formula) -> tuple:
    return (c.span.path, c.span.line, c.span.col) if c.span is not None else ("", 0, 0)


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}")
    n = ctx.static(0, -1, "the constrained dim (last)")
    if n != len(ctx.attrs.columns):
        raise ctx.error(f"{len(ctx.attrs.columns)} columns are named, but {ctx.describe(0)} has {n}", "E0701")
    resolve(ctx.node)
    return x


def _flops(ctx: InferContext) -> Dim:
    """Per row: each bound is a dot product with the earlier columns (2 per weight, 1 for the constant),
    plus a comparison per bound."""
    t = ctx.node.type
    rows: Dim = 1
    for d in t.shape[:-1]:
        rows = dim_mul(rows, d)
    resolved = resolve(ctx.node)
    if isinstance(resolved, OrPlan):  # each literal a dot product and a comparison; the gaps' union costs more
        per_row = sum(2 * len(b.terms) + 2 for s in resolved.steps for c in s.clauses
                      for b in c.free + c.lower + c.upper)
        per_row += sum(4 * len(s.clauses) ** 2 for s in resolved.steps)
        return dim_mul(rows, per_row)
    per_row = sum(2 * len(b.terms) + 2 for s in resolved.steps for b in s.lower + s.upper)
    return dim_mul(rows, per_row)


register(OpDef("constrain", "repair the last dim's columns so every row satisfies linear constraints "
                            "(C-DGM; Fourier–Motzkin bounds, clamped column by column)",
               ("x",), ConstrainAttrs, infer=_infer, flops=_flops))

