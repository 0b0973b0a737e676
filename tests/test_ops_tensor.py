"""Shape inference, errors and flops of concat, slice, transpose, permute, mean and sum.

Numerical agreement across targets is in the op matrix (tests/op_samples/tensor.py);
here: the types each op infers, that every bad input is reported with the operands
and shapes involved, and what the generated code computes where the matrix cannot
feed the inputs (i32).
"""

from __future__ import annotations

import pytest
import torch

from specc import ops
from specc.codegen import backends
from specc.diagnostics import SpeccError
from specc.ir import Graph
from targets import compile_graph, outputs_on_every_target, python_module, run_onnx


def _compile(tmp_path, expr: str, *inputs: str) -> Graph:
    lines = ["model m() {"] + [f"    input {decl}" for decl in inputs] + [f"    output y = {expr}", "}"]
    spec = tmp_path / "m.nnspec"
    spec.write_text("\n".join(lines) + "\n")
    return compile_graph(spec)


def _type(tmp_path, expr: str, *inputs: str) -> str:
    graph = _compile(tmp_path, expr, *inputs)
    return str(graph.node(graph.outputs["y"]).type)


def _error(tmp_path, expr: str, *inputs: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        _compile(tmp_path, expr, *inputs)
    return info.value


@pytest.mark.parametrize("expr,inputs,expected", [
    ("concat([a, b])", ("a: f32[B, 8]", "b: f32[B, 3]"), "f32[B, 11]"),
    ("concat([a, b, a], dim=1)", ("a: f32[B, T, 4]", "b: f32[B, 2*T, 4]"), "f32[B, 4*T, 4]"),
    ("concat([a, b], dim=0)", ("a: i64[B, 4]", "b: i64[2, 4]"), "i64[B + 2, 4]"),
    ("concat([a])", ("a: f32[B, 4]",), "f32[B, 4]"),
    ("slice(x, 1, 2, 6)", ("x: f32[B, 8]",), "f32[B, 4]"),
    ("slice(x, -1, -5, 100, step=2)", ("x: f32[B, T, 8]",), "f32[B, T, 3]"),
    ("slice(x, 0, -100, 3)", ("x: f32[4, B]",), "f32[3, B]"),
    ("slice(x, 1, 0, 5, step=3)", ("x: f32[B, 5]",), "f32[B, 2]"),
    ("slice(x, 1, 7, 8)", ("x: f32[B, 8]",), "f32[B, 1]"),
    ("transpose(x, 0, -1)", ("x: f32[B, T, 8]",), "f32[8, T, B]"),
    ("transpose(x, 1, 1)", ("x: f32[B, T]",), "f32[B, T]"),
    ("permute(x, [2, 0, 1])", ("x: f32[B, T, 8]",), "f32[8, B, T]"),
    ("permute(x, [0, -1, 1])", ("x: f32[B, T, 8]",), "f32[B, 8, T]"),
    ("mean(x, 1)", ("x: f32[B, T, 8]",), "f32[B, 8]"),
    ("mean(x, -1, keepdim=true)", ("x: f32[B, T, 8]",), "f32[B, T, 1]"),
    ("mean(x, [0, 1])", ("x: f32[B, T, 8]",), "f32[8]"),
    ("mean(x, [0, 1])", ("x: f32[B, T]",), "f32[]"),
    ("sum(x, [2, -3], keepdim=true)", ("x: f32[B, T, 8]",), "f32[1, T, 1]"),
    ("sum(x, 0)", ("x: i32[B, 8]",), "i32[8]"),
])
def test_inferred_types(tmp_path, expr, inputs, expected):
    assert _type(tmp_path, expr, *inputs) == expected


@pytest.mark.parametrize("expr,inputs,code,parts", [
    # concat: the offending operand and the first one, both with their types
    ("concat([a, b])", ("a: f32[B, 8]", "b: f32[T, 3]"), "E0402",
     ["`b` (f32[T, 3])", "`a` (f32[B, 8])", "dim 0 is T vs B"]),
    ("concat([a, b, c], dim=0)", ("a: f32[2, 8]", "b: f32[3, 8]", "c: f32[4, 7]"), "E0402",
     ["`c` (f32[4, 7])", "`a` (f32[2, 8])", "dim 1 is 7 vs 8"]),
    ("concat([a, b])", ("a: f32[B, 8]", "b: f32[8]"), "E0402", ["`b` (f32[8]) has rank 1", "`a` (f32[B, 8]) has rank 2"]),
    ("concat([a, b])", ("a: f32[B, 8]", "b: f64[B, 8]"), "E0403", ["`a` (f32[B, 8])", "`b` (f64[B, 8])"]),
    ("concat([a, b], dim=2)", ("a: f32[B, 8]", "b: f32[B, 8]"), "E0404", ["dim=2", "`a` (f32[B, 8])"]),
    # slice
    ("slice(x, 0, 0, 2)", ("x: f32[B, 8]",), "E0401", ["sliced dim (dim=0)", "static", "`x` (f32[B, 8])"]),
    ("slice(x, 1, 5, 5)", ("x: f32[B, 8]",), "E0404", ["start=5, end=5 select nothing", "size 8", "`x` (f32[B, 8])"]),
    ("slice(x, 1, -1, 2)", ("x: f32[B, 8]",), "E0404", ["select nothing"]),
    ("slice(x, 2, 0, 1)", ("x: f32[B, 8]",), "E0404", ["dim=2 is out of range", "`x` (f32[B, 8])"]),
    ("slice(x, 1, 0, 4, step=0)", ("x: f32[B, 8]",), "E0302", ["step"]),
    # transpose / permute
    ("transpose(x, 0, 3)", ("x: f32[B, 8]",), "E0404", ["dim1=3 is out of range", "`x` (f32[B, 8])"]),
    ("permute(x, [0, 0])", ("x: f32[B, 8]",), "E0404", ["not a permutation of [0, 1]", "`x` (f32[B, 8])"]),
    ("permute(x, [1, -1])", ("x: f32[B, 8]",), "E0404", ["dims=[1, -1] is not a permutation"]),
    ("permute(x, [1, 0, 2])", ("x: f32[B, 8]",), "E0404", ["3 entries", "`x` (f32[B, 8]) has rank 2"]),
    ("permute(x, [1, 2])", ("x: f32[B, 8]",), "E0404", ["dims entry=2 is out of range"]),
    # reductions
    ("mean(x, [1, -1])", ("x: f32[B, 8]",), "E0404", ["same dim", "`x` (f32[B, 8])"]),
    ("sum(x, [])", ("x: f32[B, 8]",), "E0404", ["dim=[] names no dim", "`x` (f32[B, 8])"]),
    ("sum(x, 2)", ("x: f32[B, 8]",), "E0404", ["dim=2 is out of range"]),
    ("mean(x, 0)", ("x: i64[B, 8]",), "E0403", ["floating-point", "`x` (i64[B, 8])"]),
    ("sum(x, 0)", ("x: bool[B, 8]",), "E0403", ["bool", "`x` (bool[B, 8])"]),
])
def test_errors_name_operands_and_shapes(tmp_path, expr, inputs, code, parts):
    err = _error(tmp_path, expr, *inputs)
    assert err.code == code, err.message
    for part in parts:
        assert part in err.message, err.message


def _flops(graph: Graph) -> object:
    node = graph.node(graph.outputs["y"])
    return ops.get(node.op).flops(ops.InferContext(graph, node))


@pytest.mark.parametrize("expr,inputs,expected", [
    ("mean(x, 1)", ("x: f32[B, 8]",), "8*B"),
    ("sum(x, [0, 2])", ("x: f32[B, T, 2]",), "2*B*T"),
    ("concat([a, a])", ("a: f32[B, 8]",), "0"),
    ("slice(x, 1, 0, 4)", ("x: f32[B, 8]",), "0"),
    ("transpose(x, 0, 1)", ("x: f32[B, 8]",), "0"),
    ("permute(x, [1, 0])", ("x: f32[B, 8]",), "0"),
])
def test_flops(tmp_path, expr, inputs, expected):
    assert str(_flops(_compile(tmp_path, expr, *inputs))) == expected


def test_slices_that_partition_a_dim_concat_back_to_the_input(tmp_path):
    """What `split` will lower to: adjacent slices, including negative and clamped bounds."""
    graph = _compile(tmp_path, "concat([slice(x, 1, 0, 3), slice(x, 1, 3, -2), slice(x, 1, -2, 99)], dim=1)",
                     "x: f32[B, 7]")
    x = torch.randn(3, 7)
    _, model = python_module(graph, "torch")
    torch.testing.assert_close(model(x), x)
    onnx_out = run_onnx(backends()["onnx"].emit(graph).data, graph, [x])[0]
    torch.testing.assert_close(torch.from_numpy(onnx_out), x)


def test_i32_sum_keeps_its_dtype_on_every_target(tmp_path):
    graph = _compile(tmp_path, "sum(x, [0, 1])", "x: i32[B, 3, 4]")
    x = torch.randint(-50, 50, (3, 3, 4), dtype=torch.int32)
    expected = x.sum(dim=(0, 1), dtype=torch.int32)
    for target, (got,) in outputs_on_every_target(graph, [x], None, tmp_path).items():
        assert got.dtype == torch.int32, target
        torch.testing.assert_close(got, expected)


def test_generated_torch_code_reads_like_the_spec(tmp_path):
    graph = _compile(tmp_path, "permute(transpose(slice(concat([a, b], dim=-1), 2, 1, 9, step=2), 0, 1), [1, 0, 2])",
                     "a: f32[B, T, 8]", "b: f32[B, T, 4]")
    source = backends()["torch"].emit(graph).data.decode()
    for line in ("torch.cat([a, b], dim=-1)", "[:, :, 1:9:2]", ".transpose(0, 1)", ".permute(1, 0, 2)"):
        assert line in source, source


def test_concat_signature_shows_the_list():
    assert ops.get("concat").signature() == "concat([xs, ...], dim=-1)"
    assert ops.get("slice").signature() == "slice(x, dim, start, end, step=1)"
