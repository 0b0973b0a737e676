"""The expression syntax over tensors and numbers: `-x`, `**`, comparisons and `where`, indexing,
and `min`/`max`/`sqrt` of compile-time numbers. Numerics on every target are in the op matrix
(tests/op_samples/syntax.py); here: parsing, what each expression lowers to, types, errors, code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from specc import ast, ops
from specc.codegen import backends
from specc.compiler import compile_graph
from specc.diagnostics import SourceFile, SpeccError
from specc.fmt import format_text
from specc.lower import evaluate
from specc.parser import parse


def value_of(text: str) -> ast.Expr:
    module = parse(SourceFile("t.nnspec", f"model m() {{\n    y = {text}\n}}\n"))
    return module.definitions[0].body[0].value


def compile_text(tmp_path: Path, body: str, params: str = "d: int = 16", **kw):
    path = tmp_path / "m.nnspec"
    path.write_text(f"model m({params}) {{\n    input x: f32[B, T, 8]\n    input i: i64[B, 4]\n{body}}}\n")
    return compile_graph(path, **kw)


def error(tmp_path: Path, body: str, params: str = "d: int = 16") -> SpeccError:
    with pytest.raises(SpeccError) as info:
        compile_text(tmp_path, body, params)
    return info.value


def node_ops(graph) -> list[str]:
    return [n.op for n in graph.nodes() if n.op != "input"]


def output_type(graph, name: str = "y") -> str:
    return str(graph.node(graph.outputs[name]).type)


def torch_code(graph) -> str:
    return backends()["torch"].emit(graph).data.decode()


# ------------------------------------------------------------------ parsing
def test_a_list_after_a_value_is_an_index_and_elsewhere_a_list():
    assert isinstance(value_of("x[0]"), ast.Index)
    call = value_of("f(x, [1, 2])")
    assert isinstance(call, ast.Call) and isinstance(call.args[1], ast.ListExpr)
    reshape = value_of("reshape(x, [B, -1])")
    assert [type(a) for a in reshape.args[1].items] == [ast.Name, ast.Neg]
    assert isinstance(value_of("[1, 2][0]"), ast.Index)


def test_power_binds_like_python():
    neg = value_of("-x ** 2")  # -(x ** 2)
    assert isinstance(neg, ast.Neg) and isinstance(neg.operand, ast.BinOp) and neg.operand.op == "**"
    right = value_of("a ** b ** c")  # a ** (b ** c)
    assert isinstance(right.right, ast.BinOp) and right.left == ast.Name(right.left.span, "a")
    exponent = value_of("2 ** -1")
    assert isinstance(exponent.right, ast.Neg)
    product = value_of("a * b ** 2")
    assert product.op == "*" and product.right.op == "**"


@pytest.mark.parametrize("text,parts", [
    ("x[:, 0]", [(None, None, None), 0]),
    ("x[..., 1:]", ["...", (1, None, None)]),
    ("x[1:3]", [(1, 3, None)]),
    ("x[1:3:2]", [(1, 3, 2)]),
    ("x[1:3:]", [(1, 3, None)]),
    ("x[d:2:4]", [("d", 2, 4)]),
    ("x[:2:4, 1:2]", [(None, 2, 4), (1, 2, None)]),
    ("x[:, ::2]", [(None, None, None), (None, None, 2)]),
    ("x[:, :-1]", [(None, None, None), (None, "-1", None)]),
    ("x[42:1e-5]", [(42, 1e-5, None)]),  # not the ratio 42:1
])
def test_subscripts(text, parts):
    def plain(e):
        if e is None:
            return None
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.Neg):
            return f"-{plain(e.operand)}"
        if isinstance(e, ast.EllipsisLit):
            return "..."
        if isinstance(e, ast.Name):
            return e.id
        return tuple(plain(p) for p in (e.start, e.end, e.step))
    assert [plain(item) for item in value_of(text).items] == parts


@pytest.mark.parametrize("text", ["x[1:3:2:4]", "x[1::2:3]", "x[a:b:c:d]"])
def test_a_slice_has_at_most_two_colons(text):
    with pytest.raises(SpeccError) as info:
        value_of(text)
    assert info.value.code == ("E0100" if "a" in text else "E0105")
    assert info.value.span.line == 2


def test_fmt_writes_the_new_syntax_canonically():
    messy = "model m() {\n    y = - x**2 + x[ : , 1 : -1 ]*x[...,::2] ** -0.5\n    z = where(x>0 , x[1 : 3], 2)\n}\n"
    expected = "model m() {\n    y = -x ** 2 + x[:, 1:-1] * x[..., ::2] ** -0.5\n    z = where(x > 0, x[1:3], 2)\n}\n"
    assert format_text(messy) == expected
    assert format_text(expected) == expected


# ------------------------------------------------------------------ compile-time numbers
def number(text: str, **env):
    module = parse(SourceFile("t.nnspec", f"model m() {{\n    y = {text}\n}}\n"))
    return evaluate(module.definitions[0].body[0].value, env, module.definitions[0])


@pytest.mark.parametrize("expr,value", [
    ("d ** -0.5", 0.25), ("d ** 2", 256), ("2 ** 62", 2 ** 62), ("(-2) ** 3", -8), ("2.0 ** 3", 8.0),
    ("-2 ** 2", -4), ("2 ** 3 ** 2", 512), ("2 ** -1", 0.5), ("max(d, 3, 40)", 40), ("min(d, 3.5)", 3.5),
    ("sqrt(d)", 4.0), ("max(d ** 2, sqrt(d))", 256), ("min(2, 1) < max(0, 1)", False),
])
def test_numbers(expr, value):
    got = number(expr, d=16)
    assert got == value and type(got) is type(value)


def test_int_powers_stay_ints(tmp_path):
    graph = compile_text(tmp_path, "    output y = reshape(x, [B, T, d ** 2 / 2])\n", params="d: int = 4")
    assert output_type(graph) == "f32[B, T, 8]"  # 4 ** 2 / 2 is the int 8, a valid dim


@pytest.mark.parametrize("expr,code,words", [
    ("2 ** 64", "E0229", "does not fit an int"),
    ("2 ** 10 ** 18", "E0229", "does not fit an int"),  # refused before computing
    ("10.0 ** 400", "E0229", "too large for a float"),
    ("0 ** -1", "E0218", "division by zero"),
    ("(-8) ** 0.5", "E0216", "not a real number"),
    ("sqrt(-1)", "E0216", "not a real number"),
    ("sqrt(1, 2)", "E0301", "takes 1 argument"),
])
def test_number_errors(tmp_path, expr, code, words):
    start = time.monotonic()
    err = error(tmp_path, f"    output y = x * ({expr})\n")
    assert time.monotonic() - start < 5
    assert err.code == code and words in err.message, err.message
    assert err.span is not None and err.span.line == 4


def test_min_max_sqrt_of_other_values(tmp_path):
    """A string is no number: the call is then the op's (whose argument must be a tensor), if there is one."""
    err = error(tmp_path, '    output y = x * max(2, "a")\n')
    assert (err.code, err.span.line) == (("E0216", 4) if ops.get("max") is None else ("E0304", 4))


def test_min_max_sqrt_of_tensors_are_the_ops(tmp_path):
    """When an argument is a tensor the call is the registry's op of that name (once), never a number."""
    for name in ("max", "min", "sqrt"):
        body = f"    output y = {name}(x{', 1' if name != 'sqrt' else ''})\n"
        if ops.get(name) is None:
            assert error(tmp_path, body).code == "E0216"
            continue
        graph = compile_text(tmp_path, body)
        assert node_ops(graph) == [name]


# ------------------------------------------------------------------ tensors
def test_neg_is_neg(tmp_path):
    graph = compile_text(tmp_path, "    output y = -x\n")
    assert node_ops(graph) == ["neg"]
    assert "y = -x  #" in torch_code(graph)
    assert error(tmp_path, "    b = x > 0\n    output y = -b\n").code == "E0403"


def test_pow_of_tensors(tmp_path):
    graph = compile_text(tmp_path, "    output y = (x * x) ** (d ** -0.5) + 2.0 ** x + x ** x\n")
    pows = [n for n in graph.nodes() if n.op == "pow"]
    assert [(n.attrs.scalar, n.attrs.scalar_first) for n in pows] == [(0.25, False), (2.0, True), (None, False)]
    code = torch_code(graph)
    assert "torch.pow(2.0, x)" in code and "torch.pow(x, x)" in code
    assert error(tmp_path, "    output y = i ** 2\n").code == "E0403"  # floating-point tensors only


def test_comparisons_of_tensors_are_bool_tensors(tmp_path):
    graph = compile_text(tmp_path, "    m = x > 0.5\n    k = 1 <= i\n    e = x[:, 0] != x[:, -1]\n"
                                   "    output y = where(m, x, 0.0)\n    output z = where(k, i, 0)\n"
                                   "    output w = where(e, 1.5, x[..., 0, :])\n")
    by_name = {n.name: n for n in graph.nodes()}
    assert str(by_name["m"].type) == "bool[B, T, 8]" and by_name["m"].op == "gt"
    assert by_name["k"].op == "le" and by_name["k"].attrs.number == 1 and by_name["k"].attrs.number_first
    assert by_name["e"].op == "ne" and str(by_name["e"].type) == "bool[B, 8]"
    assert output_type(graph, "z") == "i64[B, 4]"  # the number 0 keeps the int tensor int
    assert output_type(graph, "w") == "f32[B, 8]"
    code = torch_code(graph)
    assert "torch.where(k, i, 0)" in code and "= x > 0.5" in code and "= 1 <= i" in code


def test_compile_time_comparisons_stay_values(tmp_path):
    graph = compile_text(tmp_path, "    output y = x * (2.0 if d >= 16 else 3.0)\n")
    assert graph.node(graph.outputs["y"]).attrs.scalar == 2.0


@pytest.mark.parametrize("body,code,words", [
    ("    output y = where(x, x, 0.0)\n", "E0403", "must be a bool tensor"),
    ("    output y = where(i > 0, i, 0.5)\n", "E0403", "cannot meet the number 0.5"),
    ("    output y = where(x > 0, 1, 2)\n", "E0304", "needs a tensor"),
    ("    output y = where(x > 0, x)\n", "E0301", "three arguments"),
    ("    output y = where(x > 0, x, i)\n", "E0403", "dtype mismatch"),
    ("    output y = where(x > 0, x, \"s\")\n", "E0304", "a tensor or a number"),
    ("    output y = x < \"s\"\n", "E0216", "cannot compare a tensor"),
    ("    output y = x * (1 if \"a\" < 2 else 2)\n", "E0216", "cannot compare"),
    ("    output y = x[:, 0] > i\n", "E0403", "dtype mismatch"),
])
def test_comparison_errors(tmp_path, body, code, words):
    err = error(tmp_path, body)
    assert err.code == code and words in err.message, err.message
    assert err.span.line == 4


@pytest.mark.parametrize("index,ops_,type_", [
    ("x[:, 0]", ["select"], "f32[B, 8]"),
    ("x[..., -1]", ["select"], "f32[B, T]"),
    ("x[:, 1:]", ["slice"], "f32[B, T - 1, 8]"),
    ("x[:, :-1]", ["slice"], "f32[B, T - 1, 8]"),
    ("x[:, 2:-3]", ["slice"], "f32[B, T - 5, 8]"),
    ("x[..., 1:7:3]", ["slice"], "f32[B, T, 2]"),
    ("x[:, ::1, :]", [], "f32[B, T, 8]"),
    ("x[0, 1:, ::2]", ["slice", "slice", "select"], "f32[T - 1, 4]"),
    ("x[...]", [], "f32[B, T, 8]"),
])
def test_indexing_lowers_to_slice_and_select(tmp_path, index, ops_, type_):
    graph = compile_text(tmp_path, f"    output y = {index} * 2.0\n")
    assert node_ops(graph)[:-1] == ops_
    assert output_type(graph) == type_


def test_indexing_prints_python_slices(tmp_path):
    graph = compile_text(tmp_path, "    output y = x[:, 1:, ::2]\n    output z = x[..., :-1][:, 0]\n"
                                   "    output w = x[..., 0:2]\n")
    code = torch_code(graph)
    for line in ("= x[:, :, ::2]", "[:, 1:]", "= x[:, :, :-1]", "[:, 0]", "= x[:, :, 0:2]"):
        assert line in code
    assert "1000000000" not in code and "9223372036854775807" not in code


@pytest.mark.parametrize("index,code,words", [
    ("x[0, 0, 0, 0]", "E0404", "4 indices for a tensor of rank 3"),
    ("x[..., 0, ...]", "E0404", "at most one `...`"),
    ("x[:, ::0]", "E0404", "step must be positive"),
    ("x[:, ::-1]", "E0404", "step must be positive"),
    ("x[0.5]", "E0404", "must be an int"),
    ("x[:, :, 8]", "E0404", "out of range"),
    ("x[:, :, -9]", "E0404", "out of range"),
    ("x[:, ::2]", "E0401", "must be a static size"),
    ("x[:, -2:]", "E0401", "must be a static size"),  # min(T, 2) elements
    ("x[:, :2]", "E0401", "must be a static size"),
    ("x[:, :, 3:3]", "E0404", "select nothing"),
    ("d[0]", "E0216", "only tensors can be indexed"),
])
def test_indexing_errors(tmp_path, index, code, words):
    err = error(tmp_path, f"    output y = {index}\n")
    assert err.code == code and words in err.message, err.message
    assert err.span.line == 4
