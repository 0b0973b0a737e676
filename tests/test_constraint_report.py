"""Violation statistics and the violation loss (`specc.constraints.report`, `violation_loss`): what a
user needs to compare a generator trained without the constraint layer against one trained with it."""

import dataclasses

import numpy as np
import pytest
import torch

from specc.constraints import ConstraintSet, report, violation_loss, violations
from specc.compiler import compile_graph
from tests.targets import ROOT, python_module

LOAN = ROOT / "specs" / "loan_generator.nnspec"


def generator():
    return python_module(compile_graph(LOAN), "torch")[1].eval()


def test_from_spec_reads_the_constraints_as_written():
    rules = ConstraintSet.from_spec(LOAN)
    assert rules.columns[:3] == ("age", "years_employed", "income")
    assert len(rules.constraints) == 27
    assert rules.constraints[0].text == "age >= 18"


def test_report_counts_each_constraint_and_the_layer_leaves_none():
    rules = ConstraintSet.from_spec(LOAN)
    torch.manual_seed(0)
    raw = torch.randn(1000, 14) * 30
    rep = report(raw, rules)
    expected = violations(rules.constraints, raw.numpy())
    assert rep.violated == tuple(int(n) for n in expected.sum(0))
    assert rep.rows_violating == int(expected.any(1).sum()) > 0
    assert "age >= 18" in str(rep) and "any constraint" in str(rep)

    module = generator()
    with torch.no_grad():
        samples, raw = module(torch.randn(1000, 16))
    assert report(raw, rules).rows_violating > 0
    clean = report(samples, rules)
    assert clean.rows_violating == 0 and clean.rate == 0.0


def test_non_finite_rows_are_counted_apart():
    rules = ConstraintSet.from_spec(LOAN)
    rows = np.full((3, 14), 50.0)
    rows[0, 0] = np.nan
    rows[1, 2] = np.inf
    rep = report(rows, rules)
    assert rep.rows_not_finite == 2 and rep.rows == 3
    assert "NaN or inf" in str(rep)


def test_violation_loss_is_zero_on_satisfying_rows_and_its_gradient_reduces_violations():
    rules = ConstraintSet.from_spec(LOAN)
    module = generator()
    with torch.no_grad():
        good = module(torch.randn(64, 16))[0]
    assert violation_loss(good, rules).item() <= 1e-6

    torch.manual_seed(1)
    x = (torch.randn(256, 14) * 30).requires_grad_()
    optimizer = torch.optim.Adam([x], lr=0.5)
    before = (report(x, rules).rows_violating, violation_loss(x, rules).item())
    for _ in range(300):
        optimizer.zero_grad()
        violation_loss(x, rules).backward()
        optimizer.step()
    after = (report(x, rules).rows_violating, violation_loss(x, rules).item())
    assert after[0] < before[0] / 2 and after[1] < before[1] / 100, (before, after)


def test_violation_loss_matches_its_definition_and_ignores_scaling():
    rules = ConstraintSet.from_spec(LOAN)
    x = torch.randn(5, 14, dtype=torch.float64) * 40
    a, b = rules.matrix()
    norm = np.linalg.norm(a, axis=1)
    expected = np.maximum(x.numpy() @ a.T - b, 0) / norm
    assert torch.allclose(violation_loss(x, rules, "none"), torch.as_tensor(expected.sum(1)))
    doubled = ConstraintSet(rules.columns, tuple(
        dataclasses.replace(c, coeffs=tuple((j, 2 * k) for j, k in c.coeffs), rhs=2 * c.rhs) for c in rules.constraints))
    assert torch.equal(violation_loss(x, doubled), violation_loss(x, rules))


def test_shape_and_layer_errors_are_clear():
    rules = ConstraintSet.from_spec(LOAN)
    with pytest.raises(ValueError, match=r"\[N, 14\]"):
        report(np.zeros((2, 3)), rules)
    with pytest.raises(ValueError, match="last dim of 14"):
        violation_loss(torch.zeros(2, 3), rules)
    with pytest.raises(ValueError, match="no constraint layer named `nope`.*`sample`"):
        ConstraintSet.from_spec(LOAN, layer="nope")
    with pytest.raises(ValueError, match="no constraint layer"):
        ConstraintSet.from_spec(ROOT / "specs" / "mlp.nnspec")


# ------------------------------------------------------------------ disjunctive lines
def test_disjunctive_lines_are_reported_and_penalized_as_written():
    """The rental generator's rules (`or`, `not`, `->`): a line is violated when one of its clauses is,
    the layer's output violates none, and the loss is each clause's least violated literal."""
    rules = ConstraintSet.from_spec(ROOT / "specs" / "rental_generator.nnspec")
    assert not rules.constraints and len(rules.formulas) >= 10
    assert "lease_months <= 6 or lease_months >= 12" in [f.text for f in rules.formulas]
    _, model = python_module(compile_graph(ROOT / "specs" / "rental_generator.nnspec"), "torch")
    torch.manual_seed(0)
    raw = torch.randn(400, len(rules.columns)).double() * 30
    before = report(raw.numpy(), rules)
    assert before.rows_violating > 300 and str(before).count("\n") == len(rules.formulas) + 1
    repaired = model.sample(raw.float()).double()  # the spec's constraint layer
    assert report(repaired.numpy(), rules).rows_violating == 0
    assert float(violation_loss(repaired, rules)) < 1e-9  # float32 rows: rounding only
    # a clause's penalty is its least violated literal: lease_months = 9 is 3 from 6 and 3 from 12
    row = torch.zeros(1, len(rules.columns), dtype=torch.float64)
    names = list(rules.columns)
    row[0, names.index("lease_months")] = 9.0
    row[0, names.index("rent")], row[0, names.index("deposit")] = 100.0, 100.0
    clause = [f for f in rules.formulas if f.text.startswith("lease_months <= 6 or")]
    only = dataclasses.replace(rules, formulas=tuple(clause))
    assert float(violation_loss(row, only, reduction="sum")) == pytest.approx(3.0)
    x = raw.clone().requires_grad_()
    loss = violation_loss(x, rules)
    loss.backward()
    stepped = (raw - 0.5 * x.grad).detach()
    assert float(violation_loss(stepped, rules)) < loss.item()


def test_categorical_layers_point_to_their_own_check():
    with pytest.raises(ValueError, match="categorical"):
        ConstraintSet.from_spec(ROOT / "specs" / "housing_generator.nnspec")
