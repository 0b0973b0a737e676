"""Shape inference through the whole front end, and the symbolic dim algebra under it."""

from __future__ import annotations

from math import prod
from pathlib import Path

import pytest

from specc.compiler import compile_graph
from specc.ir import Graph
from specc.types import Sym, TensorType, dim_add, dim_div, dim_mul, dim_str

B, T = Sym.of("B"), Sym.of("T")


def compile_spec(tmp_path: Path, text: str, **params) -> Graph:
    path = tmp_path / "m.nnspec"
    path.write_text(text)
    return compile_graph(path, params=params)


def output_type(tmp_path: Path, expr: str, *inputs: str) -> str:
    """The type of `output y = expr` in a model with the given input declarations."""
    lines = ["model m() {", *(f"    input {decl}" for decl in inputs), f"    output y = {expr}", "}", ""]
    graph = compile_spec(tmp_path, "\n".join(lines))
    return str(graph.node(graph.outputs["y"]).type)


def param_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    return {f"{n.name}.{k}": p.shape for n in graph.nodes() for k, p in n.params.items()}


def param_count(graph: Graph) -> int:
    return sum(prod(p.shape) for n in graph.nodes() for p in n.params.values() if p.trainable)


# ------------------------------------------------------------------ per op
@pytest.mark.parametrize("expr,inputs,expected", [
    # linear replaces the last dim, whatever the symbolic dims before it
    ("linear(x, 16)", ("x: f32[B, 8]",), "f32[B, 16]"),
    ("linear(x, 16)", ("x: f32[B, T, 8]",), "f32[B, T, 16]"),
    ("linear(x, 3, bias=false)", ("x: f16[8]",), "f16[3]"),
    # broadcasting in elementwise arithmetic
    ("x + b", ("x: f32[B, T, 8]", "b: f32[8]"), "f32[B, T, 8]"),
    ("b + x", ("x: f32[B, T, 8]", "b: f32[8]"), "f32[B, T, 8]"),
    ("x * b", ("x: f32[B, 1, 8]", "b: f32[T, 1]"), "f32[B, T, 8]"),
    ("x - b", ("x: f32[B, T]", "b: f32[1, 1]"), "f32[B, T]"),
    ("x / 2 + 1", ("x: f32[B, 3]",), "f32[B, 3]"),
    # matmul: batch broadcasting and 1-D promotion, as torch.matmul
    ("matmul(a, b)", ("a: f32[B, 3, 4]", "b: f32[4, 5]"), "f32[B, 3, 5]"),
    ("matmul(a, b)", ("a: f32[B, 1, 3, 4]", "b: f32[H, 4, 5]"), "f32[B, H, 3, 5]"),
    ("matmul(a, b)", ("a: f32[1, T, 4]", "b: f32[B, 4, T]"), "f32[B, T, T]"),
    ("matmul(a, b)", ("a: f32[4]", "b: f32[B, 4, 5]"), "f32[B, 5]"),
    ("matmul(a, b)", ("a: f32[B, 3, 4]", "b: f32[4]"), "f32[B, 3]"),
    ("matmul(a, b)", ("a: f32[4]", "b: f32[4]"), "f32[]"),
    # reshape: -1 inferred from a symbolic element count
    ("reshape(x, [B, 4, 4])", ("x: f32[B, 16]",), "f32[B, 4, 4]"),
    ("reshape(x, [B, -1])", ("x: f32[B, 4, 4]",), "f32[B, 16]"),
    ("reshape(x, [B, 2, -1])", ("x: f32[B, 16]",), "f32[B, 2, 8]"),
    ("reshape(x, [B, T, -1, 2])", ("x: f32[B, T, 6]",), "f32[B, T, 3, 2]"),
    ("reshape(x, [-1, 6])", ("x: f32[2, 3, 4]",), "f32[4, 6]"),
    # flatten: merges start..end
    ("flatten(x)", ("x: f32[B, 2, 3, 4]",), "f32[B, 24]"),
    ("flatten(x, start=1, end=2)", ("x: f32[B, 2, 3, 4]",), "f32[B, 6, 4]"),
    ("flatten(x, start=0)", ("x: f32[B, 3, 4]",), "f32[12*B]"),
    # shape-preserving ops
    ("softmax(x)", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("softmax(x, dim=1)", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("layernorm(x)", ("x: f32[B, T, 8]",), "f32[B, T, 8]"),
    ("dropout(gelu(x), p=0.2)", ("x: bf16[B, 8]",), "bf16[B, 8]"),
])
def test_inferred_output_type(tmp_path, expr, inputs, expected):
    assert output_type(tmp_path, expr, *inputs) == expected


def test_types_are_dims_not_just_strings(tmp_path):
    graph = compile_spec(tmp_path, "model m() {\n    input x: f32[B, T, 8]\n    output y = linear(x, 16)\n}\n")
    assert graph.node(graph.outputs["y"]).type == TensorType("f32", (B, T, 16))
    assert graph.node("x").type == TensorType("f32", (B, T, 8))


def test_symbolic_arithmetic_in_input_declarations(tmp_path):
    graph = compile_spec(tmp_path, "model m(width: int = 3) {\n"
                                   "    input x: f32[B, 2 * T, width * 2]\n"
                                   "    input z: f32[T + 1, B * T, 8 / 2]\n"
                                   "    output y = reshape(x, [B, 2, -1])\n"
                                   "    output w = relu(z)\n"
                                   "}\n")
    assert graph.node("x").type.shape == (B, dim_mul(2, T), 6)
    assert graph.node("z").type.shape == (dim_add(T, 1), dim_mul(B, T), 4)
    assert str(graph.node("z").type) == "f32[T + 1, B*T, 4]"
    # 12*B*T elements over [B, 2, -1]: the hole is 6*T
    assert graph.node(graph.outputs["y"]).type.shape == (B, 2, dim_mul(6, T))


def test_symbolic_dims_that_are_equal_polynomials_broadcast(tmp_path):
    assert output_type(tmp_path, "a + b", "a: f32[B, 2 * T]", "b: f32[B, T + T]") == "f32[B, 2*T]"


# ---------------------------------------------------------- parameters
def test_linear_and_layernorm_parameters(tmp_path):
    graph = compile_spec(tmp_path, "model m() {\n"
                                   "    input x: f32[B, T, 8]\n"
                                   "    h = layernorm(x)\n"
                                   "    g = layernorm(h, affine=false)\n"
                                   "    output y = linear(g, 16, bias=false) + linear(h, 16)\n"
                                   "}\n")
    shapes = param_shapes(graph)
    assert shapes == {"h.weight": (8,), "h.bias": (8,),
                      "y_linear.weight": (16, 8),
                      "y_linear_1.weight": (16, 8), "y_linear_1.bias": (16,)}
    assert param_count(graph) == 8 + 8 + 128 + 128 + 16


MLP = """\
model mlp(d_in: int = 784, hidden: int = 256, classes: int = 10) {
    input x: f32[B, d_in]
    h = relu(linear(x, hidden))
    output logits = linear(h, classes)
}
"""


def test_parameter_count_of_an_mlp(tmp_path):
    graph = compile_spec(tmp_path, MLP)
    assert param_shapes(graph) == {"h_linear.weight": (256, 784), "h_linear.bias": (256,),
                                   "logits.weight": (10, 256), "logits.bias": (10,)}
    assert param_count(graph) == 784 * 256 + 256 + 256 * 10 + 10 == 203530
    assert graph.constants == {"d_in": 784, "hidden": 256, "classes": 10}


def test_model_parameter_overrides(tmp_path):
    graph = compile_spec(tmp_path, MLP, hidden=512, d_in=32)
    assert str(graph.node("h_linear").type) == "f32[B, 512]"
    assert str(graph.node("x").type) == "f32[B, 32]"
    assert param_shapes(graph)["logits.weight"] == (10, 512)
    assert param_count(graph) == 32 * 512 + 512 + 512 * 10 + 10
    assert graph.constants["hidden"] == 512


def test_defaults_may_use_earlier_parameters_and_follow_overrides(tmp_path):
    text = ("model m(width: int = 8, hidden: int = 4 * width) {\n"
            "    input x: f32[B, width]\n"
            "    output y = linear(x, hidden)\n"
            "}\n")
    assert str(compile_spec(tmp_path, text).node("y").type) == "f32[B, 32]"
    assert str(compile_spec(tmp_path, text, width=2).node("y").type) == "f32[B, 8]"
    assert str(compile_spec(tmp_path, text, width=2, hidden=5).node("y").type) == "f32[B, 5]"


def test_a_parameter_used_as_a_dim_is_a_number_not_a_symbol(tmp_path):
    text = "model m(T: int = 7) {\n    input x: f32[B, T]\n    output y = softmax(x)\n}\n"
    assert str(compile_spec(tmp_path, text).node("y").type) == "f32[B, 7]"
    assert str(compile_spec(tmp_path, text, T=3).node("y").type) == "f32[B, 3]"


# ------------------------------------------------------- the dim algebra
def test_symbols_and_constants():
    assert Sym.of("T") == T and T != B
    assert str(T) == "T" and T.symbols == {"T"}
    assert dim_mul(B, T).symbols == {"B", "T"}
    assert dim_add(3, 4) == 7 and isinstance(dim_add(3, 4), int)
    assert dim_mul(3, 4) == 12


def test_canonical_equality():
    assert dim_mul(2, T) == dim_add(T, T)
    assert dim_mul(T, 2) == dim_mul(2, T)
    assert dim_mul(B, T) == dim_mul(T, B)
    assert dim_add(dim_add(T, 1), B) == dim_add(B, dim_add(1, T))
    assert hash(dim_mul(2, T)) == hash(dim_add(T, T))
    assert {dim_mul(2, T): "x"}[dim_add(T, T)] == "x"
    assert dim_mul(2, T) != dim_mul(3, T)
    assert dim_mul(T, T) != dim_mul(2, T)


def test_cancellation_gives_back_an_int():
    zero = dim_add(T, T, -1)
    assert zero == 0 and isinstance(zero, int)
    five = dim_add(dim_add(T, 5), T, -1)
    assert five == 5 and isinstance(five, int)


def test_polynomial_products():
    square = dim_mul(dim_add(T, 1), dim_add(T, -1))  # (T + 1)(T - 1) = T*T - 1
    assert square == dim_add(dim_mul(T, T), -1)
    assert str(square) == "T*T - 1"
    assert str(dim_mul(B, dim_mul(3, T))) == "3*B*T"
    assert str(dim_add(dim_mul(4, T), 1)) == "4*T + 1"
    assert str(dim_add(2, T, -1)) == "-T + 2"
    assert dim_mul(0, T) == 0


def test_exact_division():
    assert dim_div(dim_mul(B, 784), B) == 784 and isinstance(dim_div(dim_mul(B, 784), B), int)
    assert dim_div(dim_mul(4, T), 2) == dim_mul(2, T)
    assert dim_div(dim_add(dim_mul(T, T), T), T) == dim_add(T, 1)
    assert dim_div(dim_mul(dim_mul(6, B), T), dim_mul(2, B)) == dim_mul(3, T)
    assert dim_div(12, 4) == 3
    assert dim_div(T, T) == 1


def test_symbolic_division_is_rational_and_constants_must_divide():
    half = dim_div(T, 2)
    assert str(half) == "T/2" and dim_mul(half, 2) == T and dim_add(half, half) == T
    assert str(dim_div(dim_mul(3, T), 2)) == "3*T/2"


def test_inexact_division_is_none():
    assert dim_div(T, B) is None
    assert dim_div(dim_add(T, 1), T) is None  # the constant term has no T
    assert dim_div(B, dim_add(B, 1)) is None  # only single-term divisors
    assert dim_div(7, 2) is None
    assert dim_div(T, 0) is None
    assert dim_div(8, 0) is None


def test_dim_str_and_tensor_types():
    assert dim_str(dim_add(T, 1)) == "(T + 1)"
    assert dim_str(dim_mul(2, T)) == "2*T"
    assert dim_str(5) == "5"
    t = TensorType("f32", (B, dim_mul(2, T), 3))
    assert str(t) == "f32[B, 2*T, 3]" and t.rank == 3
    assert t.numel() == dim_mul(dim_mul(6, B), T)
    assert TensorType("f32", ()).numel() == 1
    assert str(t.with_shape((4,))) == "f32[4]"
