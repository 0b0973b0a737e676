"""Shape inference and errors of the math ops: pointwise functions, clamp, gelu's forms, max/min,
argmax, cumsum, topk, gather, arange and expand.

Numerical agreement across targets is in the op matrix (tests/op_samples/math.py); here: the
types each op infers, that every bad input is reported with its operands and a location, and
what the generated code computes where the matrix cannot feed the inputs (i32).
"""

from __future__ import annotations

import pytest
import torch

from specc.codegen import backends
from specc.codegen.onnx_backend import onnx_text
from specc.diagnostics import SpeccError
from specc.ir import Graph
from targets import compile_graph, outputs_on_every_target, python_module, run_onnx


def _compile(tmp_path, expr: str, *inputs: str) -> Graph:
    lines = ["model m() {"] + [f"    input {decl}" for decl in inputs] + [f"    output y = {expr}", "}"]
    spec = tmp_path / "m.nnspec"
    spec.write_text("\n".join(lines) + "\n")
    return compile_graph(spec)


@pytest.mark.parametrize("expr,inputs,expected", [
    ("rsqrt(x)", ("x: f32[B, 8]",), "f32[B, 8]"),
    ("clamp(x, max=2)", ("x: f64[B, 8]",), "f64[B, 8]"),
    ("max(x, [0, 2])", ("x: f32[B, T, 8]",), "f32[T]"),
    ("min(x, 1, keepdim=true)", ("x: i64[B, 8]",), "i64[B, 1]"),
    ("argmax(x, -1)", ("x: f32[B, T, 8]",), "i64[B, T]"),
    ("argmax(x, 1, keepdim=true)", ("x: f32[B, T, 8]",), "i64[B, 1, 8]"),
    ("cumsum(x, 0)", ("x: i32[B, 8]",), "i32[B, 8]"),
    ("topk(x, 3, dim=1)", ("x: f32[B, 8, T]",), "f32[B, 3, T]"),
    ("topk_indices(x, 2)", ("x: f32[B, T]",), "i64[B, 2]"),  # k against a symbolic dim: checked at run time
    ("gather(x, 0, i)", ("x: f32[B, 8]", "i: i64[T, 8]"), "f32[T, 8]"),
    ("arange(5)", ("x: f32[B]",), "i64[5]"),
    ("arange(-3, 8, 4, dtype=\"f32\")", ("x: f32[B]",), "f32[3]"),
    ("arange(10, 0, -3)", ("x: f32[B]",), "i64[4]"),
    ("expand(x, [2, B, -1, 5])", ("x: f32[B, T, 1]",), "f32[2, B, T, 5]"),
])
def test_inferred_types(tmp_path, expr, inputs, expected):
    graph = _compile(tmp_path, expr, *inputs)
    assert str(graph.node(graph.outputs["y"]).type) == expected


@pytest.mark.parametrize("expr,inputs,code,parts", [
    ("exp(i)", ("i: i64[B, 8]",), "E0403", ["floating-point", "`i` (i64[B, 8])"]),
    ("clamp(x)", ("x: f32[B, 8]",), "E0401", ["`min=`, `max=`", "`x` (f32[B, 8])"]),
    ("clamp(x, min=1, max=0.5)", ("x: f32[B, 8]",), "E0401", ["min=1.0 is greater than max=0.5", "`x`"]),
    ("clamp(x, min=true)", ("x: f32[B, 8]",), "E0302", ["`min`"]),
    ("gelu(x, approximate=\"fast\")", ("x: f32[B, 8]",), "E0302", ["'none' or 'tanh'"]),
    ("max(b, 0)", ("b: bool[B, 8]",), "E0403", ["maximum", "`b` (bool[B, 8])"]),
    ("min(x, [1, -1])", ("x: f32[B, 8]",), "E0404", ["same dim", "`x` (f32[B, 8])"]),
    ("argmax(x, 2)", ("x: f32[B, 8]",), "E0404", ["dim=2", "`x` (f32[B, 8])"]),
    ("argmax(x, 1)", ("x: f32[B, 0]",), "E0401", ["empty", "`x` (f32[B, 0])"]),
    ("cumsum(x, -3)", ("x: f32[B, 8]",), "E0404", ["dim=-3", "`x`"]),
    ("topk(x, 9)", ("x: f32[B, 8]",), "E0401", ["k=9 is larger", "`x` (f32[B, 8])"]),
    ("topk_indices(x, 0)", ("x: f32[B, 8]",), "E0401", ["k=0", "`x` (f32[B, 8])"]),
    ("gather(x, 1, i)", ("x: f32[B, 8]", "i: i32[B, 8]"), "E0403", ["i64", "`i` (i32[B, 8])"]),
    ("gather(x, 1, i)", ("x: f32[B, 8]", "i: i64[B, 8, 1]"), "E0402", ["rank", "`i`", "`x`"]),
    ("gather(x, 1, i)", ("x: f32[B, 8]", "i: i64[T, 8]"), "E0402", ["dim 0", "`i` (i64[T, 8])", "`x`"]),
    ("gather(x, 0, i)", ("x: f32[4, 8]", "i: i64[2, 9]"), "E0402", ["dim 1", "9", "`x` (f32[4, 8])"]),
    ("gather(x, i, 1)", ("x: f32[B, 8]", "i: i64[B, 8]"), "E0304", ["`index`", "an int"]),
    ("arange(4, 4)", ("x: f32[B]",), "E0401", ["empty"]),
    ("arange(0, 4, 0)", ("x: f32[B]",), "E0401", ["step=0"]),
    ("arange(step=2)", ("x: f32[B]",), "E0401", ["needs an end"]),
    ("arange(2.5)", ("x: f32[B]",), "E0302", ["integer"]),
    ("arange(3000000000)", ("x: f32[B]",), "E0010", ["dim"]),
    ("expand(x, [8])", ("x: f32[B, 8]",), "E0405", ["fewer dims", "`x` (f32[B, 8])"]),
    ("expand(x, [B, 4])", ("x: f32[B, 8]",), "E0405", ["from 8 to 4", "`x` (f32[B, 8])"]),
    ("expand(x, [B, T])", ("x: f32[B, 1]",), "E0405", ["symbolic size T", "no model input has a dim T", "`x`"]),
    ("expand(x, [T, B, 8])", ("x: f32[B, 8]",), "E0405", ["symbolic size T", "no model input has a dim T", "`x`"]),
    ("expand(x, [B, 1.5])", ("x: f32[B, 1]",), "E0302", ["ints"]),
])
def test_errors_are_located_and_name_operands(tmp_path, expr, inputs, code, parts):
    with pytest.raises(SpeccError) as info:
        _compile(tmp_path, expr, *inputs)
    err = info.value
    assert err.code == code, err.message
    assert err.span is not None and err.span.line == len(inputs) + 2
    for part in parts:
        assert part in err.message, (part, err.message)


def test_i32_cumsum_keeps_its_dtype_on_every_target(tmp_path):
    graph = _compile(tmp_path, "cumsum(x, 1)", "x: i32[B, 4]")
    x = torch.randint(-50, 50, (3, 4), dtype=torch.int32)
    expected = torch.cumsum(x, 1, dtype=torch.int32)
    for target, (got,) in outputs_on_every_target(graph, [x], None, tmp_path).items():
        assert got.dtype == torch.int32, target
        torch.testing.assert_close(got, expected)


def test_default_gelu_is_the_exact_form_everywhere(tmp_path):
    graph = _compile(tmp_path, "gelu(x)", "x: f32[B, 8]")
    assert "F.gelu(x)" in backends()["torch"].emit(graph).data.decode()
    assert "tl.math.erf(" in backends()["triton"].emit(graph).data.decode()
    assert 'Gelu <approximate = "none">' in onnx_text(graph)[0]
    x = torch.randn(4, 8)
    onnx_out = torch.from_numpy(run_onnx(backends()["onnx"].emit(graph).data, graph, [x])[0])
    torch.testing.assert_close(onnx_out, torch.nn.functional.gelu(x), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(torch.nn.functional.gelu(x, approximate="tanh"), torch.nn.functional.gelu(x),
                              rtol=0, atol=1e-7)


def test_arange_follows_the_module_and_stays_out_of_the_state_dict(tmp_path):
    graph = _compile(tmp_path, "x + arange(4, dtype=\"f32\")", "x: f32[B, 4]")
    for target in ("torch", "triton"):
        _, model = python_module(graph, target)
        assert not model.state_dict(), target
        assert [b.dtype for b in model.buffers()] == [torch.float32]
        assert model.double()(torch.zeros(2, 4, dtype=torch.float64)).dtype == torch.float64


def test_whole_numbers_keep_an_int_tensor_int_on_every_target(tmp_path):
    """`ids * 2 - 1` on i64 stays i64 (torch would make `ids * 2.0` a float tensor; ONNX needs an int
    constant); a fraction, or a division, on an int tensor is a located error."""
    spec = tmp_path / "ints.nnspec"
    spec.write_text("model ints() {\n    input ids: i64[B, T]\n    output y = 3 - ids * 2\n}\n")
    graph = compile_graph(spec)
    ids = torch.arange(12, dtype=torch.int64).reshape(3, 4)
    got = outputs_on_every_target(graph, [ids], None, tmp_path)
    for target, (y,) in got.items():
        assert y.dtype == torch.int64, target
        assert torch.equal(y, 3 - ids * 2), target
    for body, words in [("ids * 0.5", "cannot meet the number 0.5"), ("ids / 2", "division needs floating-point")]:
        spec.write_text(f"model ints() {{\n    input ids: i64[B, T]\n    output y = {body}\n}}\n")
        with pytest.raises(SpeccError) as info:
            compile_graph(spec)
        assert words in str(info.value) and info.value.span.line == 3
