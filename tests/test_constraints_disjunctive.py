"""Disjunctive constraints (QFLRA): `or`, `and`, `not`, `->` between linear inequalities in a `constrain` block.

Random formulas over 2-4 columns are drawn by hypothesis and rendered as spec text. Whether one is
satisfiable is decided independently of specc: its negation-normal form is expanded into a
disjunction of conjunctions, each checked by a linear program (scipy's linprog, maximizing the slack
of the strict inequalities). Satisfiable formulas must compile, and the layer must leave 0 violations
on random rows on every target (torch; triton under TRITON_INTERPRET=1; onnxruntime), keep rows that
satisfy them (with a margin) unchanged, and be idempotent; unsatisfiable ones must be E0710, naming a
conflicting subset of the lines that is minimal (the independent check: each proper subset is
satisfiable).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specc.codegen import backends
from specc.compiler import compile_graph
from specc.constraints.disjunctive import satisfied
from specc.diagnostics import SpeccError
from targets import python_module, run_onnx
from test_constraints import _jacobians, compile_text, error_of

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_counter = itertools.count()


# ------------------------------------------------------------------ formulas, and an independent oracle
@dataclass(frozen=True)
class Atom:
    """`sum(coeffs[j] * c_j) OP rhs`, OP one of <=, <, >=, >."""

    coeffs: tuple[tuple[int, int], ...]
    op: str
    rhs: int

    def text(self) -> str:
        terms = " + ".join(f"{a} * c{j}" if a != 1 else f"c{j}" for j, a in self.coeffs)
        return f"{terms} {self.op} {self.rhs}"

    def difference(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lhs - rhs signed so that the atom holds where it is <= 0 (< 0 if strict), its scale)."""
        terms = np.stack([a * x[:, j] for j, a in self.coeffs], 1)
        sign = 1 if self.op in ("<=", "<") else -1
        return sign * (terms.sum(1) - self.rhs), 1 + abs(self.rhs) + np.abs(terms).sum(1)


@dataclass(frozen=True)
class Op:
    op: str  # "or", "and", "not", "->"
    operands: tuple


def render(f, top: bool = True) -> str:
    if isinstance(f, Atom):
        return f.text()
    if f.op == "not":
        text = "not " + render(f.operands[0], False)
    else:
        text = f" {f.op} ".join(render(o, False) for o in f.operands)
    return text if top or f.op == "not" else f"({text})"


def nnf(f, positive: bool = True):
    """Negations pushed onto atoms: a list-free tree of ("or"|"and", [..]) and (Atom, positive)."""
    if isinstance(f, Atom):
        return ("atom", f, positive)
    if f.op == "not":
        return nnf(f.operands[0], not positive)
    left, right = f.operands
    if f.op == "->":
        left, right, op = nnf(left, not positive), nnf(right, positive), "or" if positive else "and"
    else:
        left, right = nnf(left, positive), nnf(right, positive)
        op = f.op if positive else {"or": "and", "and": "or"}[f.op]
    return (op, left, right)


def holds(tree, x: np.ndarray, tol: float) -> np.ndarray:
    """Rows where the formula holds, each atom up to `tol` relative to its terms (negative: a margin).
    Strict atoms get the tolerance too (the layer repairs to the closure)."""
    kind = tree[0]
    if kind == "atom":
        _, atom, positive = tree
        d, scale = atom.difference(x)
        return d <= tol * scale if positive else d >= -tol * scale
    left, right = holds(tree[1], x, tol), holds(tree[2], x, tol)
    return left | right if kind == "or" else left & right


def dnf(tree) -> list[list[tuple[Atom, bool]]]:
    if tree[0] == "atom":
        return [[(tree[1], tree[2])]]
    left, right = dnf(tree[1]), dnf(tree[2])
    return left + right if tree[0] == "or" else [a + b for a in left for b in right]


def satisfiable(formulas, n: int) -> bool:
    """Independently of specc: some conjunction of the DNF has a point (strict atoms with slack > 0)."""
    from scipy.optimize import linprog

    conjunctions = [[]]
    for f in formulas:
        conjunctions = [c + d for c in conjunctions for d in dnf(nnf(f))]
    for conj in conjunctions:
        if not conj:  # no formulas at all
            return True
        rows, rhs = [], []
        for atom, positive in conj:
            a = np.zeros(n + 1)
            for j, c in atom.coeffs:
                a[j] += c
            sign = 1 if atom.op in ("<=", "<") else -1
            strict = atom.op in ("<", ">")
            b = atom.rhs
            if not positive:  # not (s*(a.x - b) <= 0) is -s*(a.x - b) < 0 (and not strict is non-strict)
                sign, strict = -sign, not strict
            a[:n] *= sign
            a[n] = 1.0 if strict else 0.0  # the slack t, needed > 0
            rows.append(a)
            rhs.append(sign * b)
        res = linprog(np.eye(n + 1)[n] * -1, A_ub=np.array(rows), b_ub=np.array(rhs),
                      bounds=[(None, None)] * n + [(None, 1)], method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            return True
    return False


@st.composite
def atoms(draw, n: int):
    cols = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2, unique=True))
    coeffs = tuple(sorted((j, draw(st.sampled_from([-3, -2, -1, 1, 2, 3]))) for j in cols))
    return Atom(coeffs, draw(st.sampled_from(["<=", "<", ">=", ">"])), draw(st.integers(-6, 6)))


def formulas(n: int, depth: int = 2):
    leaf = atoms(n)
    return st.recursive(leaf, lambda inner: st.one_of(
        st.builds(lambda a: Op("not", (a,)), inner),
        st.builds(lambda a, b, op: Op(op, (a, b)), inner, inner, st.sampled_from(["or", "and", "->"]))),
        max_leaves=4)


@st.composite
def systems(draw, max_columns: int = 4, max_lines: int = 4):
    n = draw(st.integers(2, max_columns))
    lines = draw(st.lists(formulas(n), min_size=1, max_size=max_lines))
    order = draw(st.permutations(range(n)))
    return n, lines, order


def spec_text(n: int, lines, order=None, dtype: str = "f32") -> str:
    names = ", ".join(f"c{i}" for i in range(n))
    order_arg = f", order=[{', '.join(f'c{i}' for i in order)}]" if order is not None else ""
    body = "".join(f"        {render(f)}\n" for f in lines)
    return (f"model m() {{\n    input x: {dtype}[B, {n}]\n    columns ({names}) = x\n"
            f"    output y = constrain(x{order_arg}) {{\n{body}    }}\n}}\n")


def inputs(seed: int, n: int, rows: int = 256, scale: float = 5.0, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(rows, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale).to(dtype)


def all_hold(lines, x: torch.Tensor, tol: float = 1e-5) -> np.ndarray:
    x = x.double().numpy()
    out = np.ones(x.shape[0], dtype=bool)
    for f in lines:
        out &= holds(nnf(f), x, tol)
    return out


# ------------------------------------------------------------------ the bars, as properties
@settings(max_examples=40, **SETTINGS)
@given(systems(), st.integers(0, 2**31 - 1))
def test_random_formulas_repaired_or_rejected(tmp_path, system, seed):
    """Satisfiable: 0 violations, satisfying rows unchanged, idempotent. Unsatisfiable: E0710 naming a
    minimal unsatisfiable subset of the lines."""
    n, lines, order = system
    text = spec_text(n, lines, order)
    if not satisfiable(lines, n):
        err = error_of(tmp_path, text)
        # E0705 where every line is a conjunction (the linear layer's error, whose conflict is minimal
        # over the inequalities, two of which may share a line)
        assert err.code in ("E0710", "E0705"), err.message
        named = [err.span.line] + [note.span.line for note in err.notes if note.span is not None]
        core = [lines[line - 5] for line in sorted(set(named))]  # line 5 is the block's first
        assert not satisfiable(core, n)
        if err.code == "E0710":
            assert len(set(named)) == len(named)
            for i in range(len(core)):  # minimal: every proper subset is satisfiable
                assert satisfiable(core[:i] + core[i + 1:], n)
        return
    graph = compile_text(tmp_path, text)
    _, model = python_module(graph, "torch")
    x = inputs(seed, n)
    with torch.no_grad():
        y = model(x)
        again = model(y)
    assert all_hold(lines, y).all(), f"violations in {(~all_hold(lines, y)).sum()} rows"
    keep = torch.from_numpy(all_hold(lines, x, tol=-1e-3))
    assert torch.equal(y[keep], x[keep])
    assert torch.equal(again, y)
    # specc's own check (on the clauses it compiled) agrees
    node = next(v for v in graph.nodes() if v.op == "constrain")
    if node.attrs.disjunctive:
        assert satisfied(node.attrs.all_formulas, y.numpy()).all()


@settings(max_examples=5, **SETTINGS)
@given(systems(max_columns=3, max_lines=3), st.integers(0, 2**31 - 1))
def test_torch_triton_and_onnx_agree(tmp_path, system, seed):
    n, lines, order = system
    if not satisfiable(lines, n):
        return
    graph = compile_text(tmp_path, spec_text(n, lines, order))
    x = inputs(seed, n, rows=40)
    _, reference = python_module(graph, "torch")
    _, kernel = python_module(graph, "triton")
    with torch.no_grad():
        expected, got = reference(x), kernel(x)
    onnx_out = torch.from_numpy(run_onnx(backends()["onnx"].emit(graph).data, graph, [x])[0])
    for out in (got, onnx_out):
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert all_hold(lines, out).all()


# ------------------------------------------------------------------ fixed cases
A_OR = [Op("or", (Atom(((0, 1),), "<=", -1), Atom(((0, 1),), ">=", 1))),  # c0 outside (-1, 1)
        Op("->", (Atom(((0, 1),), ">=", 0), Atom(((0, 1), (1, -1)), "<=", -2))),  # c0 >= 0 -> c1 >= c0 + 2
        Op("or", (Op("not", (Op("and", (Atom(((2, 1),), ">=", 1), Atom(((2, 1),), "<=", 2))),)),
                  Atom(((1, 1),), "<=", 0))),
        Op("or", (Atom(((0, 1), (1, 1), (2, -1)), ">=", 0), Atom(((2, 1),), ">=", 5)))]
SPEC = spec_text(3, A_OR)


def test_the_layer_moves_to_the_nearest_point_of_the_union(tmp_path):
    graph = compile_text(tmp_path, SPEC)
    _, model = python_module(graph, "torch")
    x = torch.tensor([[0.25, 9.0, 0.0], [-0.5, 1.0, 0.0], [-0.75, -1.0, 1.5], [3.0, 1.0, 1.25], [0.0, -7.0, 4.0]])
    with torch.no_grad():
        y = model(x)
    assert y[0, 0] == 1 and y[1, 0] == -1  # nearer end of (-1, 1); on a tie (0.0 below) the lower end
    assert y[4, 0] == -1
    assert y[2].tolist() == [-1.0, -1.0, -2.0]  # c1 <= 0: c2 may sit in (1, 2), but not in (c0 + c1, 5)
    assert y[3].tolist() == [3.0, 5.0, 1.0]  # c1 up to c0 + 2; c2 out of (1, 2), to the nearer end
    assert all_hold(A_OR, y).all()


def test_gradients_follow_the_chosen_bound():
    """Autograd against central finite differences (float64) at rows off the switching points."""
    graph = compile_graph_text(SPEC.replace("f32", "f64"))
    _, model = python_module(graph, "torch")
    x = inputs(7, 3, rows=200, dtype=torch.float64)
    auto, numeric, smooth = _jacobians(model, x)
    assert smooth.sum() > 150
    torch.testing.assert_close(auto[smooth], numeric[smooth], rtol=1e-5, atol=1e-5)
    # a moved c1 = c0 + 2 has gradient 1 w.r.t. c0 and 0 w.r.t. itself
    moved = smooth & (x[:, 0] >= 1) & (x[:, 1] < x[:, 0] + 2)
    assert moved.any()
    assert (auto[moved][:, 1, 0] == 1).all() and (auto[moved][:, 1, 1] == 0).all()


def compile_graph_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.nnspec"
        path.write_text(text)
        return compile_graph(path)


def test_triton_kernel_runs_and_backward_matches_torch(tmp_path):
    graph = compile_text(tmp_path, SPEC)
    module, kernel = python_module(graph, "triton")
    _, reference = python_module(graph, "torch")
    launches = []
    original = module._ConstrainOrFunction.apply
    module._ConstrainOrFunction.apply = lambda *a: launches.append(1) or original(*a)
    try:
        x = inputs(3, 3, rows=150).requires_grad_()
        got = kernel(x)
    finally:
        module._ConstrainOrFunction.apply = original
    assert launches
    expected = reference(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    g1, = torch.autograd.grad(got.sum(), x)
    g2, = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g1, g2)


def test_non_finite_rows_are_the_same_on_every_target(tmp_path):
    """As the linear layer: NaN in a constrained column poisons the row's constrained columns; inf is a
    value (`c0 >= 0 -> c1 >= c0 + 2` with c0 = inf lifts c1 to inf)."""
    from targets import outputs_on_every_target

    spec = spec_text(4, A_OR)  # c3 is free
    nan, inf = float("nan"), float("inf")
    rows = []
    for value in (nan, inf, -inf):
        for j in range(4):
            for base in ([0.5, 1, 1.5, 0], [2, 5, 1, 3]):
                rows.append(base[:j] + [value] + base[j + 1:])
    x = torch.tensor(rows, dtype=torch.float32)
    got = outputs_on_every_target(compile_text(tmp_path, spec), [x], None, tmp_path)
    expected = got["torch"][0]
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], expected, rtol=0, atol=0, equal_nan=True, msg=target)
    poisoned = x[:, :3].isnan().any(1)
    assert expected[poisoned][:, :3].isnan().all() and not expected[~poisoned][:, :3].isnan().any()
    torch.testing.assert_close(expected[:, 3], x[:, 3], equal_nan=True)  # the free column: as it came
    inf_c0 = x[:, 0] == inf
    assert (expected[inf_c0 & ~poisoned][:, 1] == inf).all()


def test_conjunctive_blocks_compile_to_the_linear_layer(tmp_path):
    """`and` and `not` alone give linear constraints: the same generated code as the lines written apart."""
    joined = ("model m() {\n    input x: f32[B, 2]\n    columns (a, b) = x\n    output y = constrain(x) {\n"
              "        a >= 0 and not b > a\n    }\n}\n")
    apart = ("model m() {\n    input x: f32[B, 2]\n    columns (a, b) = x\n    output y = constrain(x) {\n"
             "        a >= 0\n        b <= a\n    }\n}\n")
    g1, g2 = compile_text(tmp_path, joined), compile_text(tmp_path, apart)
    n1 = next(v for v in g1.nodes() if v.op == "constrain")
    assert not n1.attrs.disjunctive and [c.text for c in n1.attrs.all_constraints] == ["a >= 0", "not b > a"]
    for target in ("torch", "triton"):
        code = backends()[target].emit(g1).data.decode()
        assert "_Constrain(" in code and "_ConstrainOr" not in code
        other = backends()[target].emit(g2).data.decode()
        names = Path(g1.source_path).name, Path(g2.source_path).name
        assert code.replace("not b > a", "b <= a").replace(*names) == other


def test_unsatisfiable_formulas_name_a_minimal_conflict(tmp_path):
    text = ("model m() {\n    input x: f32[B, 3]\n    columns (a, b, c) = x\n    output y = constrain(x) {\n"
            "        c >= 0\n        a <= 0 or b <= 0\n        a >= 1\n        c <= 10 or a <= 5\n"
            "        b > 0\n    }\n}\n")
    err = error_of(tmp_path, text)
    assert err.code == "E0710"
    assert (err.span.line, err.span.col) == (6, 9)
    assert "`a <= 0 or b <= 0`, `a >= 1`, `b > 0`" in err.message
    assert [(n.span.line, n.message) for n in err.notes] == [(7, "conflicts with `a >= 1`"),
                                                             (9, "conflicts with `b > 0`")]


def test_strictness_decides_satisfiability(tmp_path):
    body = "        a < 0 or a > 0\n        a >= 0\n        a <= 0\n"
    text = (f"model m() {{\n    input x: f32[B, 1]\n    columns (a) = x\n    output y = constrain(x) {{\n{body}"
            "    }\n}\n")
    assert error_of(tmp_path, text).code == "E0710"
    compile_text(tmp_path, text.replace("a < 0 or", "a <= 0 or"))


@pytest.mark.parametrize("line, code, at, message", [
    ("a <= 1 or", "E0100", (6, 18), "expected"),
    ("a or b <= 1", "E0711", (6, 9), "expected an inequality"),
    ("a == 1 or b <= 2", "E0702", (6, 9), "not `==`"),
    ("(a <= 1 or b <= 2", "E0100", (7, 5), "expected `)`"),
    ("a <= 1 or a * b <= 2", "E0702", (6, 19), "linear"),
    ("a <= 1 or c <= 2", "E0703", (6, 19), "another tensor"),
    ("not a <= 1 -> or b <= 2", "E0100", (6, 26), "unexpected `b`"),  # `or` read as a name there
])
def test_errors_are_located(tmp_path, line, code, at, message):
    text = ("model m() {\n    input x: f32[B, 2]\n    columns (a, b) = x\n    columns (c) = x[:, :1]\n"
            f"    output y = constrain(x) {{\n        {line}\n    }}\n}}\n")
    err = error_of(tmp_path, text)
    assert err.code == code, err.message
    assert err.span is not None and (err.span.line, err.span.col) == at, (err.span, err.message)
    assert message in err.message


def test_resolution_is_bounded_by_the_constraints_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECC_LIMIT_CONSTRAINTS", "40")
    lines = [Op("or", (Atom(((0, 1), (1, k % 3 + 1)), "<=", k), Atom(((1, -1), (2, k % 2 + 1)), "<=", -k)))
             for k in range(8)] + [Op("or", (Atom(((2, 1),), ">=", k), Atom(((0, -1),), ">=", k))) for k in range(4)]
    err = error_of(tmp_path, spec_text(3, lines))
    assert err.code == "E0010" and "by resolution" in err.message and "over the limit of 40" in err.message
    assert err.span is not None and err.span.line == 4


def test_rules_files_take_formulas(tmp_path):
    """A rules file's lines may use `or`, `and`, `not`, `->` (parentheses group formulas or expressions);
    its conjunctive lines stay linear constraints, and the file's and the block's formulas are one set."""
    from specc.constraints.files import load_constraints

    (tmp_path / "rules.txt").write_text("order c0 c1 c2\nc0 <= -1 or c0 >= 1   // outside (-1, 1)\n"
                                        "c0 >= 0 -> c1 >= c0 + 2\n(c0 + c1) - c2 >= 0 or c2 >= 5\nc1 <= 100\n")
    loaded = load_constraints(tmp_path / "rules.txt", ("c0", "c1", "c2"))
    assert [f.text for f in loaded.formulas] == ["c0 <= -1 or c0 >= 1", "c0 >= 0 -> c1 >= c0 + 2",
                                                 "(c0 + c1) - c2 >= 0 or c2 >= 5", "c1 <= 100"]
    assert not loaded.constraints and loaded.order == ("c0", "c1", "c2")
    (tmp_path / "linear.txt").write_text("c0 >= 0 and not c1 > c0\n(c0 + c1) <= 3\n")
    linear = load_constraints(tmp_path / "linear.txt", ("c0", "c1", "c2"))
    assert [c.text for c in linear.constraints] == ["c0 >= 0", "not c1 > c0", "(c0 + c1) <= 3"] and not linear.formulas

    spec = spec_text(3, [Op("or", (Atom(((1, 1),), "<=", 0), Atom(((2, 1),), ">=", 1)))])
    path = tmp_path / "m.nnspec"
    path.write_text(spec.replace("constrain(x)", 'constrain(x, file="rules.txt")'))
    graph = compile_graph(path)
    _, model = python_module(graph, "torch")
    x = inputs(5, 3)
    with torch.no_grad():
        y = model(x)
    node = next(v for v in graph.nodes() if v.op == "constrain")
    assert node.attrs.disjunctive and len(node.attrs.all_formulas) == 5
    assert satisfied(node.attrs.all_formulas, y.numpy()).all()
    assert not satisfied(node.attrs.all_formulas, x.numpy()).all()


@pytest.mark.parametrize("line, at, message", [
    ("c0 <= 1 or", (2, 11), "expected a column or a number"),
    ("c0 <= 1 or (c1 >= 2", (2, 20), "expected `)`"),
    ("c0 == 1 or c1 <= 2", (2, 4), "not `==`"),
    ("c0 <= 1 -> z >= 2", (2, 12), "unknown column `z`"),
])
def test_rules_file_formula_errors_point_into_the_file(tmp_path, line, at, message):
    (tmp_path / "rules.txt").write_text(f"c1 >= 0\n{line}\n")
    path = tmp_path / "m.nnspec"
    path.write_text(spec_text(3, [Atom(((0, 1),), ">=", -9)]).replace("constrain(x)", 'constrain(x, file="rules.txt")'))
    with pytest.raises(SpeccError) as info:
        compile_graph(path)
    err = info.value
    assert err.span.path.endswith("rules.txt") and (err.span.line, err.span.col) == at, (err.span, err.message)
    assert message in err.message


def test_the_rental_generator_spec_samples_satisfy_its_rules():
    """specs/rental_generator.nnspec: a block and a rules file with disjunctions; every sample satisfies
    every rule (flags 0 or 1, leases 6, 12 or >= 24 months, ...), where the untrained raw output does not."""
    from targets import ROOT

    graph = compile_graph(ROOT / "specs" / "rental_generator.nnspec")
    _, model = python_module(graph, "torch")
    torch.manual_seed(0)
    with torch.no_grad():
        sample, raw = model(torch.randn(512, 16) * 3)
    formulas = next(v for v in graph.nodes() if v.op == "constrain").attrs.all_formulas
    assert satisfied(formulas, sample.numpy()).all()
    assert not satisfied(formulas, raw.numpy()).all(1).any()
    assert set(sample[:, 3].tolist()) <= {0.0, 1.0} and set(sample[:, 4].tolist()) <= {0.0, 1.0}
    lease = sample[:, 5]
    assert ((lease == 6) | (lease == 12) | ((lease >= 24) & (lease <= 60))).all()


@settings(max_examples=6, **SETTINGS)
@given(systems(max_columns=3, max_lines=3), st.integers(0, 2**31 - 1))
def test_gradients_match_finite_differences_on_random_formulas(system, seed):
    n, lines, order = system
    if not satisfiable(lines, n):
        return
    graph = compile_graph_text(spec_text(n, lines, order, dtype="f64"))
    _, model = python_module(graph, "torch")
    x = inputs(seed, n, rows=64, dtype=torch.float64)
    auto, numeric, smooth = _jacobians(model, x)
    torch.testing.assert_close(auto[smooth], numeric[smooth], rtol=1e-5, atol=1e-5)


def test_leading_dims_on_every_target(tmp_path):
    """A [B, T, columns] input (the layer works on the last dim) gives the same rows on every target."""
    from targets import outputs_on_every_target

    spec = SPEC.replace("f32[B, 3]", "f32[B, T, 3]")
    x = inputs(11, 3, rows=24).reshape(4, 6, 3)
    got = outputs_on_every_target(compile_text(tmp_path, spec), [x], None, tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=0, atol=0, msg=target)
    assert all_hold(A_OR, got["torch"][0].reshape(-1, 3)).all()


def test_the_normal_form_is_bounded_by_the_constraints_limit(tmp_path, monkeypatch):
    """`(p1 and q1) or (p2 and q2) or ...` distributes into 2^k clauses: over the limit, a located error."""
    monkeypatch.setenv("SPECC_LIMIT_CONSTRAINTS", "50")
    line = Op("or", (Op("and", (Atom(((0, 1),), "<=", 0), Atom(((1, 1),), "<=", 0))),
                     Op("and", (Atom(((0, 1),), ">=", 1), Atom(((1, 1),), ">=", 1)))))
    for k in range(2, 6):
        line = Op("or", (line, Op("and", (Atom(((0, 1),), ">=", 2 * k), Atom(((1, 1),), ">=", 2 * k)))))
    err = error_of(tmp_path, spec_text(2, [Atom(((0, 1),), ">=", -5), line]))
    assert err.code == "E0010" and "conjunctive normal form" in err.message
    assert (err.span.line, err.span.col) == (6, 9)
