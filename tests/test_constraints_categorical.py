"""Categorical columns in constraint formulas: `heating = [gas, oil, electric, heat_pump]` declares a
one-hot group; `heating in {...}`, `heating == x`, `heating != x` are literals.

The oracle is independent of specc: the rules of specs/housing_generator.rules evaluated in numpy on
the output (the category read as the output's one-hot), and the expected category computed directly
from the semantics: the largest input column among the categories the rules allow given the columns
before `heating` in the repair order (year, area): a heat pump needs year >= 1950, electric heating
area <= 120; gas and oil are always possible.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch

from specc.compiler import compile_graph
from specc.constraints.categorical import satisfied
from specc.diagnostics import SpeccError
from targets import ROOT, outputs_on_every_target, python_module

RULES = ROOT / "specs" / "housing_generator.rules"
COLUMNS = ["year", "area", "gas", "oil", "electric", "heat_pump", "chimney", "insulation", "price"]
BLOCK = """        year >= 1900
        year <= 2025
        area >= 20
        area <= 400
        insulation >= 0
        insulation <= 10
        price >= 500 * area
        price <= 20000 * area
"""
_counter = itertools.count()


def spec(rules: str = "rules.txt", block: str = BLOCK, columns: list[str] = COLUMNS, dtype: str = "f32") -> str:
    return (f"model m() {{\n    input x: {dtype}[B, {len(columns)}]\n    columns ({', '.join(columns)}) = x\n"
            f"    output y = constrain(x, file=\"{rules}\") {{\n{block}    }}\n}}\n")


def compile_with(tmp_path, rules_text: str | None = None, **kw):
    folder = tmp_path / f"s{next(_counter)}"
    folder.mkdir()
    if rules_text is None:
        shutil.copy(RULES, folder / "rules.txt")
    else:
        (folder / "rules.txt").write_text(rules_text)
    path = folder / "m.nnspec"
    path.write_text(spec(**kw))
    return compile_graph(path)


def error_of(tmp_path, rules_text: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        compile_with(tmp_path, rules_text)
    return info.value


def rows(seed: int, n: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    year = 1880 + 160 * torch.rand(n, generator=g, dtype=torch.float64)
    area = 450 * torch.rand(n, generator=g, dtype=torch.float64)
    scores = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scores[: n // 4] = torch.softmax(scores[: n // 4], 1)  # probabilities, as a softmax head gives
    chimney = 1.5 * torch.rand(n, generator=g, dtype=torch.float64) - 0.25
    insulation = 12 * torch.rand(n, generator=g, dtype=torch.float64) - 1
    price = area * (30000 * torch.rand(n, generator=g, dtype=torch.float64))
    return torch.cat([year[:, None], area[:, None], scores, chimney[:, None], insulation[:, None],
                      price[:, None]], 1).float()


def rules_hold(y: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """Every rule of housing_generator (block and rules file), per row, read from the output."""
    y = np.asarray(y, dtype=np.float64)
    year, area, hot, chimney, insulation, price = y[:, 0], y[:, 1], y[:, 2:6], y[:, 6], y[:, 7], y[:, 8]
    one_hot = ((hot == 0) | (hot == 1)).all(1) & (hot.sum(1) == 1)
    k = hot.argmax(1)
    gas, oil, electric, pump = (k == 0), (k == 1), (k == 2), (k == 3)
    slack = tol * (1 + np.abs(y))
    le = lambda a, b, s: a <= b + s  # noqa: E731
    ok = one_hot & le(1900, year, slack[:, 0]) & le(year, 2025, slack[:, 0]) & le(20, area, slack[:, 1])
    ok &= le(area, 400, slack[:, 1]) & le(0, insulation, slack[:, 7]) & le(insulation, 10, slack[:, 7])
    ok &= le(500 * area, price, tol * (1 + price)) & le(price, 20000 * area, tol * (1 + price))
    ok &= (chimney == 0) | (chimney == 1)
    ok &= ~(gas | oil) | (chimney == 1)
    ok &= ~(year < 1950) | ~pump
    ok &= ~pump | le(6, insulation, slack[:, 7])
    ok &= ~electric | le(area, 120, slack[:, 1])
    ok &= ~oil | le(price, 4000 * area, tol * (1 + price))
    return ok


def expected_category(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The semantics: the largest score among the categories allowed given the repaired year and area."""
    scores = x[:, 2:6].double().numpy().copy()
    year, area = y[:, 0].double().numpy(), y[:, 1].double().numpy()
    scores[year < 1950, 3] = -np.inf
    scores[area > 120, 2] = -np.inf
    return scores.argmax(1)


def test_every_row_satisfies_the_rules_with_the_best_allowed_category(tmp_path):
    graph = compile_with(tmp_path)
    _, model = python_module(graph, "torch")
    x = rows(0)
    with torch.no_grad():
        y = model(x)
        again = model(y)
    assert not rules_hold(x.numpy()).any()
    holds = rules_hold(y.numpy())
    assert holds.all(), f"{(~holds).sum()} rows violate a rule"
    chosen = y[:, 2:6].numpy().argmax(1)
    np.testing.assert_array_equal(chosen, expected_category(x, y))
    kept = chosen == x[:, 2:6].numpy().argmax(1)
    assert 0 < kept.mean() < 1  # some rows keep the generator's category, others switch
    assert torch.equal(again, y)  # idempotent
    # columns before `heating` in the order are repaired by their own bounds only
    torch.testing.assert_close(y[:, 0], x[:, 0].clamp(1900, 2025))
    torch.testing.assert_close(y[:, 1], x[:, 1].clamp(20, 400))


def test_valid_rows_come_out_unchanged(tmp_path):
    graph = compile_with(tmp_path)
    _, model = python_module(graph, "torch")
    x = rows(1)
    with torch.no_grad():
        y = model(model(x))  # valid rows
        noisy = y.clone()
        noisy[:, 2:6] = noisy[:, 2:6] * 0.8 + 0.05  # the same category, as soft scores
        assert torch.equal(model(noisy), y)


def test_torch_triton_and_onnx_agree_also_on_non_finite_rows(tmp_path):
    graph = compile_with(tmp_path)
    x = rows(2, n=60)
    nan, inf = float("nan"), float("inf")
    x[0, 3] = nan  # NaN in the group: the row's constrained columns are NaN
    x[1, 8] = nan
    x[2, 4] = inf  # inf is a score: electric, if allowed
    x[3, 2:6] = torch.tensor([-inf, -inf, -inf, -inf])  # all -inf: the first allowed
    x[4, 0] = inf
    got = outputs_on_every_target(graph, [x], None, tmp_path)
    expected = got["torch"][0]
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], expected, rtol=0, atol=0, equal_nan=True, msg=target)
    assert expected[:2].isnan().all()
    assert rules_hold(expected[2:].numpy()).all()


def test_declaring_the_variable_first_in_the_order_keeps_the_category(tmp_path):
    """`order heating ...`: the category is never switched (each one is possible for some year and
    area), the numeric columns are repaired given it."""
    text = RULES.read_text().replace("order year area heating", "order heating year area")
    graph = compile_with(tmp_path, text)
    _, model = python_module(graph, "torch")
    x = rows(3)
    with torch.no_grad():
        y = model(x)
    assert rules_hold(y.numpy()).all()
    np.testing.assert_array_equal(y[:, 2:6].numpy().argmax(1), x[:, 2:6].numpy().argmax(1))


def test_gradients_reach_the_numeric_columns_and_not_the_group(tmp_path):
    graph = compile_with(tmp_path)
    _, model = python_module(graph, "torch")
    x = rows(4, n=50).requires_grad_()
    y = model(x)
    (y[:, 8] + y[:, 7]).sum().backward()
    assert x.grad.isfinite().all()
    assert (x.grad[:, 2:6] == 0).all()
    # price is moved to a bound on area where it is out of range, else it passes through
    assert set(x.grad[:, 8].tolist()) <= {0.0, 1.0} and (x.grad[:, 8] == 1).any()


def test_the_housing_generator_spec_samples_satisfy_its_rules():
    graph = compile_graph(ROOT / "specs" / "housing_generator.nnspec")
    _, model = python_module(graph, "torch")
    torch.manual_seed(0)
    with torch.no_grad():
        sample, raw = model(torch.randn(256, 16) * 3)
    assert rules_hold(sample.numpy()).all()
    assert not rules_hold(raw.numpy()).any()
    # specc's own check, on the formulas it compiled, agrees
    attrs = next(v for v in graph.nodes() if v.op == "constrain").attrs
    assert satisfied(attrs.expansion, attrs.all_formulas, sample.numpy()).all()
    assert not satisfied(attrs.expansion, attrs.all_formulas, raw.numpy()).all(1).any()


def test_infeasible_categorical_formulas_are_rejected(tmp_path):
    err = error_of(tmp_path, "heating = [gas, oil]\nheating == gas -> year >= 3000\nheating == oil -> area <= 1\n")
    assert err.code == "E0710"
    named = {err.span.line} | {n.span.line for n in err.notes if n.span is not None and n.span.path.endswith("rules.txt")}
    assert {2, 3} <= named


@pytest.mark.parametrize("text, code, line, col, message", [
    ("heating = [gas, oil]\nheating in {gas, coal} -> year >= 1950\n", "E0712", 2, 18,
     "`coal` is no category of `heating`"),
    ("heating = [gas, oil]\nheating == electric -> year >= 1950\n", "E0712", 2, 12,
     "`electric` is no category of `heating`"),
    ("heating = [gas, oil]\nyear in {gas} -> area >= 30\n", "E0713", 2, 1, "`year` is no categorical variable"),
    ("heating = [gas, oil]\nheating >= 1\n", "E0715", 2, 1, "`heating` is a categorical variable, not a number"),
    ("heating = [gas, coal]\n", "E0714", 1, 17, "category `coal` of `heating` is not a column"),
    ("heating = [gas]\n", "E0714", 1, 1, "needs at least two categories"),
    ("heating = [gas, oil]\nfuel = [oil, electric]\n", "E0714", 2, 9, "column `oil` is already a category"),
    ("year = [gas, oil]\n", "E0714", 1, 1, "has the name of a column"),
    ("heating = [gas, oil]\nheating in {gas, gas} -> year >= 1950\n", "E0716", 2, 18, "appears twice in the set"),
    ("heating = [gas, oil]\nheating in {} -> year >= 1950\n", "E0706", 2, 13, "expected a category name"),
    ("heating = [gas, oil]\nheating in gas -> year >= 1950\n", "E0706", 2, 12, "expected `{`"),
    ("heating = [gas, oil\n", "E0706", 1, 20, "expected `,` or `]`"),
])
def test_errors_are_located(tmp_path, text, code, line, col, message):
    # a rule first: an error on a file's first rules-like line does not quote it (it may be no rules file)
    err = error_of(tmp_path, "chimney >= 0\n" + text)
    assert err.code == code, err.message
    assert message in err.message
    assert err.span is not None and err.span.path.endswith("rules.txt")
    assert (err.span.line, err.span.col) == (line + 1, col)
    assert err.span.source.quotable


def test_an_order_naming_one_category_is_an_error(tmp_path):
    err = error_of(tmp_path, "heating = [gas, oil]\norder year gas\n")
    assert err.code == "E0707" and "a category of `heating`" in err.message


# ------------------------------------------------------------------ the same, declared in a `constrain` block
BLOCK_SPEC = """model m() {{
    input x: f32[B, 4]
    columns (a, gas, oil, b) = x
    output y = constrain(x) {{
{lines}
    }}
}}
"""
BLOCK_LINES = """        heating = [gas, oil]
        heating in {gas} -> a >= 1
        not heating == oil or b <= 2
        heating != gas or b >= 0
        a <= 5"""


def block_spec(tmp_path, lines: str = BLOCK_LINES):
    path = tmp_path / f"b{next(_counter)}.nnspec"
    path.write_text(BLOCK_SPEC.format(lines=lines))
    return path


def test_a_block_declares_categorical_variables(tmp_path):
    """Repair order a, heating, b: gas needs a >= 1 (else oil), oil needs b <= 2, gas b >= 0."""
    graph = compile_graph(block_spec(tmp_path))
    x = torch.tensor([[0.0, 0.9, 0.1, 3.0], [0.0, 0.1, 0.9, 3.0], [2.0, 0.6, 0.4, -3.0], [7.0, 0.1, 0.2, 1.0],
                      [1.0, 0.5, 0.5, -1.0]])
    expected = torch.tensor([[0.0, 0, 1, 2], [0, 0, 1, 2], [2, 1, 0, 0], [5, 0, 1, 1], [1, 1, 0, 0]])
    got = outputs_on_every_target(graph, [x], None, tmp_path)
    for target, (y,) in got.items():
        torch.testing.assert_close(y, expected, rtol=0, atol=0, msg=target)


@pytest.mark.parametrize("line, code, col, message", [
    ("heating in {gas, coal} -> a >= 1", "E0712", 26, "`coal` is no category of `heating`"),
    ("heating == coal -> a >= 1", "E0712", 20, "`coal` is no category of `heating`"),
    ("a in {gas} -> b >= 1", "E0713", 9, "`a` is no categorical variable (a column)"),
    ("heating + a >= 1", "E0715", 9, "`heating` is a categorical variable, not a number"),
    ("fuel = [oil, b]", "E0714", 17, "column `oil` is already a category of `heating`"),
    ("heating in {} -> a >= 1", "E0101", 21, ""),
])
def test_block_errors_are_located(tmp_path, line, code, col, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(block_spec(tmp_path, "        heating = [gas, oil]\n        " + line))
    err = info.value
    assert err.code == code or (code == "E0101" and err.code.startswith("E01")), (err.code, err.message)
    assert message in err.message
    assert (err.span.line, err.span.col) == (6, col)


def test_fmt_writes_a_set_of_categories_tight():
    from specc.fmt import format_text

    text = BLOCK_SPEC.format(lines="        heating = [gas,oil]\n        heating in { gas,oil } -> a >= 1")
    formatted = format_text(text)
    assert "heating = [gas, oil]\n" in formatted and "heating in {gas, oil} -> a >= 1\n" in formatted
    assert format_text(formatted) == formatted


def test_leading_dims_on_every_target(tmp_path):
    text = BLOCK_SPEC.format(lines=BLOCK_LINES).replace("f32[B, 4]", "f32[B, T, 4]")
    path = tmp_path / "lead.nnspec"
    path.write_text(text)
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(7)) * 3
    got = outputs_on_every_target(compile_graph(path), [x], None, tmp_path)
    flat = compile_graph(block_spec(tmp_path))
    _, model = python_module(flat, "torch")
    with torch.no_grad():
        expected = model(x.reshape(15, 4)).reshape(3, 5, 4)
    for target, (y,) in got.items():
        torch.testing.assert_close(y, expected, rtol=0, atol=0, msg=target)
    assert ((expected[..., 1:3] == 0) | (expected[..., 1:3] == 1)).all() and (expected[..., 1:3].sum(-1) == 1).all()


# ------------------------------------------------------------------ random rule sets (hypothesis)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CATS = ["r", "g", "b"]


@st.composite
def rule_sets(draw):
    """Implications between a category set and a bound on p (before the group) or q (after it)."""
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(CATS), min_size=1, max_size=2, unique=True))
        column, op, c = draw(st.sampled_from(["p", "q"])), draw(st.sampled_from([">=", "<="])), draw(st.integers(-3, 3))
        negate = draw(st.booleans())
        rules.append((chosen, negate, column, op, c, draw(st.booleans())))
    return rules


def render_rule(rule) -> str:
    chosen, negate, column, op, c, member_first = rule
    member = f"{'not ' if negate else ''}color in {{{', '.join(chosen)}}}"
    bound = f"{column} {op} {c}"
    return f"{member} -> {bound}" if member_first else f"{bound} -> {member}"


def rule_holds(rule, y: np.ndarray) -> np.ndarray:
    chosen, negate, column, op, c, member_first = rule
    k = y[:, 1:4].argmax(1)
    member = np.isin(k, [CATS.index(n) for n in chosen]) != negate
    value = y[:, 0] if column == "p" else y[:, 4]
    bound = (value >= c - 1e-5) if op == ">=" else (value <= c + 1e-5)
    # `bound -> member` is `not bound or member`; `not x >= c` is `x < c`, which the layer repairs to its
    # closure `x <= c` (as every strict inequality)
    not_bound = (value <= c + 1e-5) if op == ">=" else (value >= c - 1e-5)
    return ~member | bound if member_first else not_bound | member


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(rule_sets(), st.integers(0, 2**31 - 1))
def test_random_rule_sets_leave_no_violations(tmp_path, rules, seed):
    lines = "        color = [r, g, b]\n" + "\n".join(f"        {render_rule(r)}" for r in rules)
    text = BLOCK_SPEC.format(lines=lines).replace("(a, gas, oil, b)", "(p, r, g, b, q)").replace("[B, 4]", "[B, 5]")
    path = tmp_path / f"h{next(_counter)}.nnspec"
    path.write_text(text)
    try:
        graph = compile_graph(path)
    except SpeccError as err:  # unsatisfiable whatever the category: rejected at compile time
        assert err.code == "E0710", err.message
        return
    _, model = python_module(graph, "torch")
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(seed)) * 4
    with torch.no_grad():
        y = model(x)
        again = model(y)
    hot = y[:, 1:4]
    assert ((hot == 0) | (hot == 1)).all() and (hot.sum(1) == 1).all()
    for rule in rules:
        assert rule_holds(rule, y.double().numpy()).all(), render_rule(rule)
    assert torch.equal(again, y)
    # the category: the largest input score among those allowed given p (some q then satisfies the rules).
    # p is given: a strict literal on it holds to its closure at run time, as the layer evaluates it; the
    # room left for q is decided exactly at compile time (strict bounds count).
    p = y[:, 0].double().numpy()
    scores = x[:, 1:4].double().numpy().copy()
    for k in range(3):
        ok = np.ones(len(p), dtype=bool)
        lo, hi = (-np.inf, False), (np.inf, False)  # (bound, strict)
        for chosen, negate, column, op, c, member_first in rules:
            member = (CATS[k] in chosen) != negate
            if member_first and member:  # the bound must hold
                need, strict = op, False
            elif not member_first and not member:  # the bound must fail: strictly
                need, strict = ("<=" if op == ">=" else ">="), True
            else:
                continue
            if column == "p":
                ok &= (p >= c) if need == ">=" else (p <= c)
            elif need == ">=":
                lo = max(lo, (c, strict))
            else:
                hi = min(hi, (c, not strict))  # at an equal bound the strict one is smaller
        room = lo[0] < hi[0] or (lo[0] == hi[0] and not lo[1] and hi[1])
        scores[~ok | (not room), k] = -np.inf
    np.testing.assert_array_equal(hot.numpy().argmax(1), scores.argmax(1))


def test_a_block_order_names_the_variable(tmp_path):
    path = tmp_path / "ord.nnspec"
    path.write_text(BLOCK_SPEC.format(lines=BLOCK_LINES).replace("constrain(x)", "constrain(x, order=[heating, a])"))
    _, model = python_module(compile_graph(path), "torch")
    x = torch.tensor([[0.0, 0.9, 0.1, 3.0], [0.0, 0.1, 0.9, 3.0]])
    with torch.no_grad():  # gas is kept (a moves up to 1), oil too (b moves down to 2)
        torch.testing.assert_close(model(x), torch.tensor([[1.0, 1, 0, 3], [0, 0, 1, 2]]), rtol=0, atol=0)
    path.write_text(BLOCK_SPEC.format(lines=BLOCK_LINES).replace("constrain(x)", "constrain(x, order=[gas, a])"))
    with pytest.raises(SpeccError) as info:
        compile_graph(path)
    assert info.value.code == "E0707" and "`gas` is a category of `heating`" in info.value.message
