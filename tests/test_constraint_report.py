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


HOUSING = ROOT / "specs" / "housing_generator.nnspec"
HEATING = ("gas", "oil", "electric", "heat_pump")


def housing_rows(n: int, seed: int = 0) -> np.ndarray:
    """Rows over housing_generator's columns, spread across every rule's two sides; the heating columns are
    scores (not one-hot)."""
    rng = np.random.default_rng(seed)  # on grids that keep off every bound by more than the report's tolerance
    year, area = rng.integers(1880, 2040, n) + 0.5, rng.integers(0, 420, n) + 0.5
    heating = rng.normal(0, 2, (n, 4))
    chimney, insulation = rng.integers(-5, 15, n) / 10 + 0.05, rng.integers(-1, 11, n) + 0.5
    price = area * rng.uniform(300, 22000, n)
    return np.column_stack([year, area, heating, chimney, insulation, price])


def housing_oracle(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Which rows violate each line of housing_generator (block and rules file), written out by hand, with the
    category as the largest heating column."""
    year, area, chimney, insulation, price = rows[:, 0], rows[:, 1], rows[:, 6], rows[:, 7], rows[:, 8]
    heating = np.array(HEATING)[rows[:, 2:6].argmax(1)]
    return {
        "year >= 1900": year < 1900, "year <= 2025": year > 2025, "area >= 20": area < 20, "area <= 400": area > 400,
        "insulation >= 0": insulation < 0, "insulation <= 10": insulation > 10,
        "price >= 500 * area": price < 500 * area, "price <= 20000 * area": price > 20000 * area,
        "chimney >= 0": chimney < 0, "chimney <= 1": chimney > 1,
        "chimney <= 0 or chimney >= 1": (chimney > 0) & (chimney < 1),
        "heating in {gas, oil} -> chimney >= 1": np.isin(heating, ["gas", "oil"]) & (chimney < 1),
        "year < 1950 -> heating != heat_pump": (year < 1950) & (heating == "heat_pump"),
        "heating == heat_pump -> insulation >= 6": (heating == "heat_pump") & (insulation < 6),
        "heating == electric -> area <= 120": (heating == "electric") & (area > 120),
        "not heating in {oil} or price <= 4000 * area": (heating == "oil") & (price > 4000 * area),
    }


def test_report_reads_categorical_lines_by_the_decoded_category():
    """A row violates a line with a categorical literal when its category (the largest heating column)
    breaks it: the report equals a hand-written oracle line by line, on score rows that are not one-hot, and
    does not change when the scores are scaled and shifted (the category does not)."""
    rules = ConstraintSet.from_spec(HOUSING)
    assert rules.groups == ((2, 3, 4, 5),)
    rows = housing_rows(4000)
    oracle = housing_oracle(rows)
    rep = report(rows, rules)
    assert set(rep.constraints) == set(oracle)  # the user's lines, none of the layer's own
    assert dict(zip(rep.constraints, rep.violated)) == {k: int(v.sum()) for k, v in oracle.items()}
    assert rep.rows_violating == int(np.any(list(oracle.values()), 0).sum())
    assert all(n > 0 for n in rep.violated)  # every line, categorical ones too, is broken by some row
    shifted = rows.copy()
    shifted[:, 2:6] = shifted[:, 2:6] * 7 + 3
    assert report(shifted, rules).violated == rep.violated


def test_report_of_a_categorical_rules_file_and_the_layers_output():
    rules = ConstraintSet.from_spec(HOUSING)
    from_file = ConstraintSet.from_file(ROOT / "specs" / "housing_generator.rules", rules.columns)
    rows = housing_rows(2000, seed=1)
    oracle = housing_oracle(rows)
    rep = report(rows, from_file)
    assert dict(zip(rep.constraints, rep.violated)) == {k: int(oracle[k].sum()) for k in rep.constraints}
    assert len(rep.constraints) == 8  # the file's lines; the block's are the spec's

    module = python_module(compile_graph(HOUSING), "torch")[1].eval()
    with torch.no_grad():
        sample, raw = module(torch.randn(2000, 16) * 3)
    assert report(raw, rules).rows_violating > 0
    assert report(sample, rules).rows_violating == 0


def test_violation_loss_reads_categorical_literals():
    """A categorical literal `heating in S` is exceeded by the gap from the best category outside S to the best in
    S: a gas-heated row without a chimney costs min(gap to electric or heat pump, chimney's shortfall); the loss
    is 0 exactly on the rows the report passes, and its gradient leads out by the nearer way."""
    rules = ConstraintSet.from_spec(HOUSING)
    row = torch.tensor([[2000.0, 100.0, 3.0, 1.0, 2.5, 0.0, 0.0, 7.0, 100000.0]], dtype=torch.float64)
    line = next(f for f in rules.formulas if f.text == "heating in {gas, oil} -> chimney >= 1")
    only = dataclasses.replace(rules, formulas=(line,))
    assert float(violation_loss(row, only, reduction="sum")) == pytest.approx(0.5)  # gas 3 - electric 2.5
    row[0, 6] = 0.8
    assert float(violation_loss(row, only, reduction="sum")) == pytest.approx(0.2)  # chimney 1 - 0.8
    x = row.clone().requires_grad_()
    violation_loss(x, only, reduction="sum").backward()
    assert x.grad[0, 6] < 0 and x.grad[0, 2:6].abs().sum() == 0  # the chimney literal is the nearer

    rows = torch.as_tensor(housing_rows(512, seed=2))
    per_row = violation_loss(rows, rules, reduction="none")
    broken = torch.as_tensor(~satisfied_rows(rows.numpy(), rules))
    assert (per_row[~broken] == 0).all() and (per_row[broken] > 0).all()

    row[0, 4] = 2.9  # electric now 0.1 below gas: switching category is the nearer way out
    x = row.clone().requires_grad_()
    loss = violation_loss(x, only, reduction="sum")
    assert loss.item() == pytest.approx(0.1)
    loss.backward()
    assert x.grad[0, 2] > 0 and x.grad[0, 4] < 0 and x.grad[0, 6] == 0  # gas down, electric up
    stepped = (x - 0.1 * x.grad).detach()
    assert report(stepped, only).rows_violating == 0


def satisfied_rows(rows: np.ndarray, rules: ConstraintSet) -> np.ndarray:
    """Which rows break no line, by the oracle."""
    return ~np.any(list(housing_oracle(rows).values()), 0)
