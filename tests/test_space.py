"""Search spaces in specs (specc/space.py): choice syntax, located errors, exact uniform sampling over valid
points (chi-square against the enumerated valid points), sampled specs on every target, and the commands."""

from __future__ import annotations

import itertools
import re
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from specc.cli import app
from specc.compiler import compile_graph
from specc.diagnostics import SourceFile, SpeccError
from specc.fmt import format_text, syntax_shape
from specc.lower import OpRef
from specc.parser import parse
from specc.space import Distribution, Space
from targets import ROOT, example_inputs, outputs_on_every_target

pytestmark = pytest.mark.usefixtures("one_thread")

# `b`'s range depends on `a`, a `where` reads both, and attention needs `a % h == 0`: 48 points pass every
# `where`, 8 of them fail to type-check (h=3 with a=2 or 4), so sampling must reject them. Valid points: 40
# (a=2: 4, a=4: 12, a=6: 24).
SMALL = """\
model small(a: int in [2, 4, 6] = 2, b: int in 1..a = 2 where (a + b) % 3 != 0, h: int in [1, 2, 3] = 1,
            act: op in {relu, tanh} = relu) {
    input x: f32[B, T, a]
    output y = linear(act(attention(x, h)), b)
}
"""

EVERY_FORM = """\
block mix_a(x, width: int) {
    return linear(x, width)
}

block mix_b(x, width: int) {
    return x + linear(relu(linear(x, 2 * width)), width)
}

model every(width: int in [8, 16] = 8, depth: int in 1..2 = 1, act: op in {relu, gelu, silu} = gelu,
            norm: bool in {true, false} = true, mixer: block in {mix_a, mix_b} = mix_b,
            ffn: int in [width, 2 * width] = 2 * width, heads: int in [2, 4] = 2 where width % heads == 0,
            p: float ~ uniform(0.0, 0.3) = 0.1, lr: float ~ loguniform(0.0001, 0.1) = 0.001) {
    input x: f32[B, T, width]
    h = repeat depth { mixer(_, width) } (x)
    h = layernorm(h) if norm else h
    h = h + attention(h, heads)
    output y = dropout(linear(act(linear(h, ffn)), width), p=p)
}
"""


def write(tmp_path: Path, text: str, name: str = "space.nnspec") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def valid_points_by_compiling(path: Path) -> set[tuple]:
    """The valid points of SMALL found without specc.space: every combination, compiled with -p values."""
    found = set()
    for a, h, act in itertools.product([2, 4, 6], [1, 2, 3], ["relu", "tanh"]):
        for b in range(1, a + 1):
            try:
                compile_graph(path, params={"a": a, "b": b, "h": h, "act": act})
            except SpeccError:
                continue
            found.add((a, b, h, act))
    return found


def key(point: dict) -> tuple:
    return (point["a"], point["b"], point["h"], str(point["act"]))


def test_sampling_is_uniform_over_valid_points(tmp_path):
    path = write(tmp_path, SMALL)
    valid = valid_points_by_compiling(path)
    assert valid == {(a, b, h, act) for a in (2, 4, 6) for b in range(1, a + 1) for h in (1, 2, 3)
                     for act in ("relu", "tanh") if (a + b) % 3 and a % h == 0}  # the spec means what it says
    assert len(valid) == 40
    space = Space.load(path)
    assert space.size() == 48  # the points satisfying every `where`; 8 of them fail to type-check
    rng = random.Random(1)
    n = 4000
    counts = Counter(key(space.sample(rng)) for _ in range(n))
    assert set(counts) == valid
    observed = [counts[p] for p in sorted(valid)]
    uniform = stats.chisquare(observed)
    assert uniform.pvalue > 1e-3, uniform
    # the test has power: drawing each choice uniformly given the earlier ones (the naive sampler) puts
    # 1/3 of the mass on a=2's 4 points, and is rejected by the same test at this n
    naive = {}
    for a, b, h, act in valid:
        where_ok = [bb for bb in range(1, a + 1) if (a + bb) % 3]
        naive[(a, b, h, act)] = 1 / 3 * 1 / len(where_ok) * 1 / 3 * 1 / 2
    total = sum(naive.values())
    expected_naive = [n * naive[p] / total for p in sorted(valid)]
    assert stats.chisquare([n / len(valid)] * len(valid), expected_naive).pvalue < 1e-6


def test_size_counts_dependent_choices_exactly(tmp_path):
    space = Space.load(write(tmp_path, SMALL))
    every = [space.unrank(k) for k in range(space.points())]
    assert len({key(p) for p in every}) == 48
    assert all((p["a"] + p["b"]) % 3 for p in every)
    assert space.choice("b").depends == ("a",)
    assert space.domain("b", {"a": 4}) == (1, 2, 3, 4)
    assert space.domain("act", {}) == (OpRef("relu", "op"), OpRef("tanh", "op"))
    assert not space.is_valid({"a": 4, "b": 1, "h": 3, "act": "relu"})
    with pytest.raises(SpeccError) as err:
        space.check({"a": 4, "b": 1, "h": 3, "act": "relu"})
    assert err.value.span.line == 4 and "a=4, b=1, h=3, act=relu" in err.value.render()


def test_independent_choices_are_counted_once(tmp_path):
    """Counting memoizes on what later domains read: 12 independent choices of 10 values are 10^12 points,
    counted without enumerating them (the space_states limit is 100,000)."""
    params = ", ".join(f"c{i}: int in 1..10 = 1" for i in range(12))
    space = Space.load(write(tmp_path, f"model wide({params}) {{\n    input x: f32[B, 4]\n    output y = x * c0\n}}\n"))
    assert space.size() == 10 ** 12
    assert all(1 <= v <= 10 for v in space.sample(random.Random(0)).values())


def test_every_form_round_trips_through_the_formatter(tmp_path):
    formatted = format_text(EVERY_FORM)
    assert format_text(formatted) == formatted
    assert "depth: int in 1..2 = 1" in formatted and "act: op in {relu, gelu, silu}" in formatted
    assert "= 2 where (a + b) % 3 != 0," in format_text(SMALL)  # a `where` clause, not the op `where(...)`
    assert syntax_shape(parse(SourceFile("a", EVERY_FORM))) == syntax_shape(parse(SourceFile("b", formatted)))
    space = Space.load(write(tmp_path, EVERY_FORM))
    assert [c.kind for c in space.choices] == ["int", "int", "op", "bool", "block", "int", "int", "float", "float"]
    assert space.size() is None and space.points() == 2 * 2 * 3 * 2 * 2 * 2 * 2  # heads 2 and 4 divide 8 and 16
    assert space.domain("mixer", {}) == (OpRef("mix_a", "block"), OpRef("mix_b", "block"))
    assert space.domain("ffn", {"width": 16}) == (16, 32)
    assert space.domain("lr", {}) == Distribution("loguniform", 0.0001, 0.1)
    rng = random.Random(0)
    draws = [space.sample(rng) for _ in range(30)]
    assert all(0.0 <= d["p"] <= 0.3 and 0.0001 <= d["lr"] <= 0.1 for d in draws)
    assert all(d["width"] % d["heads"] == 0 and d["ffn"] in (d["width"], 2 * d["width"]) for d in draws)


def test_continuous_draws_follow_their_distributions(tmp_path):
    space = Space.load(write(tmp_path, EVERY_FORM))
    dist_p, dist_lr = space.domain("p", {}), space.domain("lr", {})
    rng = random.Random(3)
    p = [dist_p.sample(rng) for _ in range(2000)]
    lr = [dist_lr.sample(rng) for _ in range(2000)]
    assert stats.kstest(p, stats.uniform(0.0, 0.3).cdf).pvalue > 1e-3
    assert stats.kstest(lr, stats.loguniform(0.0001, 0.1).cdf).pvalue > 1e-3


def test_the_defaults_compile_as_a_concrete_model(tmp_path):
    path = write(tmp_path, EVERY_FORM)
    graph = compile_graph(path)
    assert graph.constants["act"] == OpRef("gelu", "op") and graph.constants["ffn"] == 16
    assert any(n.op == "gelu" for n in graph.nodes())
    relu = compile_graph(path, params={"act": "relu", "mixer": "mix_a", "norm": False})
    ops = {n.op for n in relu.nodes()}
    assert "relu" in ops and "gelu" not in ops and "layernorm" not in ops


def test_sampled_specs_compile_and_agree_on_every_target(tmp_path):
    """Each sampled spec is a fixed, formatted spec that compiles to the point's own model; on torch, triton
    and onnx its outputs equal those of the point's torch module (same weights)."""
    space = Space.load(write(tmp_path, EVERY_FORM))
    rng = random.Random(7)
    for i in range(3):
        point = space.sample(rng)
        text = space.concrete(point)
        header = text.split("model every(")[1].split(") {")[0]
        assert format_text(text) == text and " in " not in header and "~" not in header
        fixed = write(tmp_path, text, f"fixed_{i}.nnspec")
        graph = compile_graph(fixed)
        assert unlocated(graph.dump()) == unlocated(space.graph(point).dump())
        inputs = example_inputs(graph, seed=i)
        reference = space.module(point, seed=i).eval()
        with torch.no_grad():
            expected = reference(*inputs)
        got = outputs_on_every_target(graph, inputs, reference.state_dict(), tmp_path)
        for target in ("torch", "triton", "onnx"):
            torch.testing.assert_close(got[target][0], expected, atol=1e-4, rtol=1e-4, msg=f"{target} at {point}")


def unlocated(dump: str) -> str:
    return re.sub(r"  // \S+:\d+", "", dump)


ERRORS = [
    # (parameters, code, the text the caret is under)
    ("w: int in [8, 16] = 12", "E0950", "12"),
    ("w: int in [8, 16] = 8, h: int in [3, 4] = 3 where w % h == 0", "E0951", "w % h == 0"),
    ("w: int = 8 where w > 2", "E0953", "w > 2"),
    ("w: float ~ normal(0.0, 1.0) = 0.5", "E0954", "normal"),
    ("w: float ~ uniform(1.0, 0.5) = 0.7", "E0954", "uniform(1.0, 0.5)"),
    ("w: float ~ loguniform(0.0, 1.0) = 0.5", "E0954", "loguniform(0.0, 1.0)"),
    ("w: float in 1..4 = 2.0", "E0955", "in 1..4"),
    ("w: int ~ uniform(1.0, 2.0) = 1", "E0955", "~ uniform(1.0, 2.0)"),
    ("w in [1, 2] = 1", "E0955", "in [1, 2]"),
    ("w: int in [8, 16.5] = 8", "E0955", "16.5"),
    ("w: int in 8 = 8", "E0956", "8"),
    ("w: int in [] = 8", "E0957", "in []"),
    ("p: float ~ uniform(1.0, 4.0) = 2.0, w: int in 1..p = 1", "E0958", "in 1..p"),
    ("w: int in 1..100000 = 8", "E0010", "in 1..100000"),
    ("a: op in {relu, gelux} = relu", "E0201", "gelux"),
    ("w: int in [8, 16] where w > 100", "E0957", "m"),
]


@pytest.mark.parametrize("params, code, under", ERRORS, ids=[e[1] + ":" + e[2] for e in ERRORS])
def test_errors_are_located(tmp_path, params, code, under):
    text = f"model m({params}) {{\n    input x: f32[B, 8]\n    output y = x\n}}\n"
    path = write(tmp_path, text)
    with pytest.raises(SpeccError) as err:
        Space.load(path)
        compile_graph(path)
    e = err.value
    assert e.code == code, e.render()
    line = text.splitlines()[e.span.line - 1]
    assert line[e.span.col - 1:e.span.end_col - 1] == under, e.render()
    assert "^" in e.render()


def test_a_choice_on_a_block_parameter_is_located(tmp_path):
    text = "block b(x, w: int in [1, 2]) {\n    return x\n}\n\nmodel m() {\n    input x: f32[B, 8]\n    output y = b(x)\n}\n"
    with pytest.raises(SpeccError) as err:
        Space.load(write(tmp_path, text))
    assert err.value.code == "E0952" and (err.value.span.line, err.value.span.col) == (1, 19)  # at `in [1, 2]`


def invoke(*args: str):
    from specc import limits

    saved = dict(limits._overrides)  # `--limit` sets them for the process: not for the next test
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        limits._overrides.clear()
        limits._overrides.update(saved)


def test_choice_option_and_p_check_the_domain(tmp_path):
    path = str(write(tmp_path, SMALL))
    out = str(tmp_path / "m.py")
    ok = invoke("compile", path, "--choice", "a=6", "--choice", "b=5", "-c", "h=3", "-c", "act=tanh", "-o", out)
    assert ok.exit_code == 0, ok.output
    for flag in ("--choice", "-p"):
        bad = invoke("compile", path, flag, "a=5", "-o", out)
        assert bad.exit_code == 1
        assert "error[E0950]: 5 is not a choice of `a` (the value given); its choices are {2, 4, 6}" in bad.stderr
        assert "1 | model small(a: int in [2, 4, 6]" in bad.stderr
        where = invoke("compile", path, flag, "a=4", flag, "b=2", "-o", out)
        assert where.exit_code == 1 and "error[E0951]: `b` = 2 breaks its `where` condition (a=4, b=2)" in where.stderr
        op = invoke("compile", path, flag, "act=gelu", "-o", out)
        assert op.exit_code == 1 and "gelu is not a choice of `act`" in op.stderr and "{relu, tanh}" in op.stderr
    typo = invoke("compile", path, "--choice", "hh=2", "-o", out)
    assert typo.exit_code == 1 and "has no choice `hh`" in typo.stderr and "did you mean `h`?" in typo.stderr
    malformed = invoke("compile", path, "--choice", "a", "-o", out)
    assert malformed.exit_code == 2 and "expected NAME=VALUE" in malformed.output
    plain = write(tmp_path, "model p(w: int = 4) {\n    input x: f32[B, w]\n    output y = x\n}\n", "plain.nnspec")
    none = invoke("compile", str(plain), "--choice", "w=4", "-o", out)
    assert none.exit_code == 1 and "`p` has no choices" in none.stderr


def test_space_command_prints_choices_constraints_and_infeasible_points(tmp_path):
    result = invoke("space", str(write(tmp_path, SMALL)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "space of model small: 48 points"
    assert "  b: int in 1..a  (default 2; depends on a)" in lines
    assert "  act: op in {relu, tanh}  (default relu; 2 values)" in lines
    assert "  b: where (a + b) % 3 != 0" in lines
    assert lines[-1] == "infeasible: 8 of 48 points fail to type-check (every point checked)"


def test_check_reports_each_error_once_with_its_choices(tmp_path):
    result = invoke("check", str(write(tmp_path, SMALL)))
    assert result.exit_code == 1
    assert "model small: space of 48 points, 48 type-checked (every point): 1 error" in result.stderr
    assert result.stderr.count("error[") == 1
    assert "4:27: error[E0402]: with a in {2, 4}, h=3: attention" in result.stderr
    assert "8 points checked fail here" in result.stderr
    fixed = SMALL.replace("h: int in [1, 2, 3] = 1", "h: int in [1, 2, 3] = 1 where a % h == 0")
    clean = invoke("check", str(write(tmp_path, fixed, "fixed.nnspec")))
    assert clean.exit_code == 0 and "40 type-checked (every point): ok" in clean.stdout


def test_check_of_a_large_space_takes_a_seeded_subset(tmp_path):
    result = invoke("--limit", "check_points=10", "check", str(ROOT / "specs" / "transformer_encoder_space.nnspec"))
    assert result.exit_code == 0, result.output
    assert "space of 384 points, 11 type-checked (the defaults and a random subset, seed 0" in result.stdout


def test_sample_command_writes_specs_and_assignments(tmp_path):
    path = write(tmp_path, SMALL)
    out = tmp_path / "draws"
    result = invoke("sample", str(path), "--seed", "5", "-n", "4", "-o", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "samples.json").read_text())
    assert record["seed"] == 5 and record["size"] == 48 and len(record["samples"]) == 4
    space = Space.load(path)
    rng = random.Random(5)
    for sample in record["samples"]:
        point = space.sample(rng)  # the same seed draws the same points
        assert sample["assignment"] == {k: (v if isinstance(v, int) else str(v)) for k, v in point.items()}
        graph = compile_graph(out / sample["file"])
        assert graph.constants["a"] == point["a"] and graph.constants["act"] == point["act"]
    again = invoke("sample", str(path), "--seed", "5", "-n", "4", "-o", str(tmp_path / "again"))
    assert again.exit_code == 0
    assert (tmp_path / "again" / "small_3.nnspec").read_text() == (out / "small_3.nnspec").read_text()


def test_sample_rejects_a_space_whose_points_never_type_check(tmp_path):
    text = "model m(w: int in [3, 5] = 3) {\n    input x: f32[B, T, w]\n    output y = attention(x, 2)\n}\n"
    with pytest.raises(SpeccError) as err:
        Space.load(write(tmp_path, text)).sample(random.Random(0))
    assert err.value.code == "E0010" and "sample_tries" in err.value.render()


def test_where_conditions_joined_by_and(tmp_path):
    path = write(tmp_path, SMALL.replace("h: int in [1, 2, 3] = 1", "h: int in [1, 2, 3] = 1 where a % h == 0 and h < a"))
    space = Space.load(path)
    # (a, b) pairs: 1, 3 and 4 for a = 2, 4, 6; h divides a and is below it: 1, 2 and 3 values; act: 2
    assert space.size() == (1 * 1 + 3 * 2 + 4 * 3) * 2 == 38
    with pytest.raises(SpeccError) as err:
        compile_graph(path, params={"a": 2, "h": 2})
    assert err.value.code == "E0951" and err.value.span.source.line(1)[err.value.span.col - 1:].startswith("h < a")


# ---------------------------------------------------------------- the language server
def analyze(tmp_path: Path, text: str):
    from specc.lsp import features
    from specc.lsp.analysis import Workspace

    path = write(tmp_path, text, "editor.nnspec")
    analysis = Workspace().analyze(path, text)
    return analysis, features.Positions(analysis, path.as_uri(), len)


def test_hover_on_a_choice_shows_its_set(tmp_path):
    from specc.lsp import features

    analysis, pos = analyze(tmp_path, EVERY_FORM)
    assert analysis.errors == []
    lines = EVERY_FORM.splitlines()

    def hover(word: str) -> str:
        line = next(i for i, text in enumerate(lines) if word in text)
        return features.hover(analysis, pos, line, lines[line].index(word) + 1).contents.value

    assert "choice of a search space: one of `{relu, gelu, silu}`, 3 values" in hover("act:")
    assert "value: `gelu`" in hover("act:")
    assert "one of `{8, 16}` (with width=8), 2 values" in hover("ffn:")
    assert "`loguniform(0.0001, 0.1)`" in hover("lr:")
    assert "ffn: int in [width, 2 * width] = 2 * width" in hover("ffn:")
    assert "choice of a search space: one of `{relu, gelu, silu}`" in hover("act(")  # the call reads the choice


def test_completion_in_an_op_set_offers_ops_and_blocks(tmp_path):
    from specc.lsp import features

    def labels(old: str, typed: str) -> set[str]:
        text = EVERY_FORM.replace(old, typed)
        analysis, pos = analyze(tmp_path, text)
        line = next(i for i, l in enumerate(text.splitlines()) if typed in l)
        col = text.splitlines()[line].index(typed) + len(typed)  # the cursor right after what was typed
        return {i.label for i in features.completion(analysis, pos, line, col).items}

    ops = labels("act: op in {relu, gelu, silu}", "act: op in {relu, ")
    assert {"gelu", "silu", "tanh"} <= ops and "mix_a" not in ops and "model" not in ops
    assert labels("mixer: block in {mix_a, mix_b}", "mixer: block in {") == {"mix_a", "mix_b"}


def test_editor_diagnostics_of_spaces(tmp_path):
    bad_default = EVERY_FORM.replace("depth: int in 1..2 = 1", "depth: int in 1..2 = 3")
    analysis, _ = analyze(tmp_path, bad_default)
    assert [(e.code, e.span.line) for e in analysis.errors] == [("E0950", 9)]  # the model line
    no_defaults = SMALL.replace(" = 2,", ",").replace(" = 2 where", " where")
    analysis, _ = analyze(tmp_path, no_defaults.replace("h: int in [1, 2, 3] = 1", "h: int in [1, 2, 3]"))
    assert analysis.errors == []  # the space's first point is checked, not "no default"
    empty = SMALL.replace("= 2 where (a + b) % 3 != 0", "where a + b > 20")  # no default to break it first
    analysis, _ = analyze(tmp_path, empty)
    assert [e.code for e in analysis.errors] == ["E0957"]


SHIPPED_SPACES = [p for p in sorted((ROOT / "specs").glob("*.nnspec")) if re.search(r":\s*\w+\s*(\bin\b|~)", p.read_text())]


@pytest.mark.parametrize("spec", SHIPPED_SPACES, ids=lambda p: p.name)
def test_shipped_spaces_sample_specs_that_compile_on_every_target(tmp_path, spec):
    """Each shipped space's defaults are valid, and its sampled specs emit torch, triton and onnx code (imports
    resolved from the shipped directory, with -I)."""
    from specc.codegen import backends

    space = Space.load(spec)
    assert space.is_valid({})
    rng = random.Random(11)
    for i in range(2):
        point = space.sample(rng)
        fixed = write(tmp_path, space.concrete(point), f"{spec.stem}_{i}.nnspec")
        graph = compile_graph(fixed, include=[spec.parent])
        for target in ("torch", "triton", "onnx"):
            assert backends()[target].emit(graph).data


def test_check_includes_the_defaults(tmp_path, monkeypatch):
    from specc import limits
    from specc.space import check_space

    text = SMALL.replace("h: int in [1, 2, 3] = 1", "h: int in [1, 2, 3] = 1 where a % h == 0")
    space = Space.load(write(tmp_path, text))
    monkeypatch.setenv("SPECC_LIMIT_CHECK_POINTS", "3")
    assert limits.value("check_points") == 3
    line, errors = check_space(space, seed=4)
    assert errors == [] and "space of 40 points, 4 type-checked" in line  # 3 drawn and the defaults


def test_continuous_bounds_and_conditions_read_earlier_continuous_choices(tmp_path):
    text = ("model m(w: int in [4, 8] = 4, a: float ~ uniform(0.0, 1.0) = 0.5, top: float = 2 * a,\n"
            "        b: float ~ uniform(a, top + 1.0) = 1.2 where b > a + 0.5, k: int in 1..w = 1) {\n"
            "    input x: f32[B, w]\n    output y = dropout(x * b, p=a / 2)\n}\n")
    space = Space.load(write(tmp_path, text))
    assert space.points() == 4 + 8 and space.size() is None  # k: 4 values with w=4, 8 with w=8
    rng = random.Random(2)
    draws = [space.sample(rng) for _ in range(200)]
    assert all(d["a"] + 0.5 < d["b"] <= 2 * d["a"] + 1.0 and 1 <= d["k"] <= d["w"] for d in draws)
    assert Counter(d["w"] for d in draws)[8] > Counter(d["w"] for d in draws)[4]  # 8 of the 12 points have w=8


def _random_space(rng: random.Random) -> tuple[str, list]:
    """A random space of 2-4 int choices whose lists, ranges and `where`s read earlier choices, as spec text
    and as Python (each choice: its name, a domain function of the earlier values, a condition or None)."""
    params, python = [], []
    for i in range(rng.randint(2, 4)):
        name = f"c{i}"
        j = f"c{rng.randrange(i)}" if i else None
        kind = rng.choice(["list", "dep_list", "range", "dep_range"] if j else ["list", "range"])
        if kind == "list":
            values = sorted(rng.sample(range(1, 6), rng.randint(1, 3)))
            text, domain = f"[{', '.join(map(str, values))}]", (lambda env, v=values: v)
        elif kind == "dep_list":
            k = rng.randint(1, 3)
            text, domain = f"[{j}, {j} + {k}, 2 * {j}]", (lambda env, j=j, k=k: [env[j], env[j] + k, 2 * env[j]])
        elif kind == "range":
            lo, hi = rng.randint(0, 3), rng.randint(2, 5)
            text, domain = f"{lo}..{hi}", (lambda env, lo=lo, hi=hi: list(range(lo, hi + 1)))
        else:
            k = rng.randint(0, 2)
            text, domain = f"{j}..{j} + {k}", (lambda env, j=j, k=k: list(range(env[j], env[j] + k + 1)))
        where, condition = "", None
        if j and rng.random() < 0.5:
            m = rng.randint(2, 3)
            where, condition = f" where ({name} + {j}) % {m} != 0", (lambda env, n=name, j=j, m=m: (env[n] + env[j]) % m != 0)
        params.append(f"{name}: int in {text}{where}")
        python.append((name, domain, condition))
    return f"model r({', '.join(params)}) {{\n    input x: f32[B, 4]\n    output y = x * c0\n}}\n", python


def _brute_force(python: list) -> set[tuple]:
    points = [{}]
    for name, domain, condition in python:
        points = [{**env, name: v} for env in points for v in dict.fromkeys(domain(env))
                  if condition is None or condition({**env, name: v})]
    return {tuple(p.values()) for p in points}


def test_counting_and_unranking_match_brute_force_on_random_spaces(tmp_path):
    rng = random.Random(2024)
    checked = 0
    for n in range(40):
        text, python = _random_space(rng)
        expected = _brute_force(python)
        path = write(tmp_path, text, f"r{n}.nnspec")
        if not expected:
            with pytest.raises(SpeccError) as err:
                Space.load(path)
            assert err.value.code == "E0957"
            continue
        space = Space.load(path)
        assert space.size() == len(expected), text
        assert {tuple(space.unrank(k).values()) for k in range(space.size())} == expected, text
        checked += 1
    assert checked >= 30
