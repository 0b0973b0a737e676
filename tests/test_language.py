"""Blocks, repeat, imports, tuples: what the lowering builds and how it reports mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from specc.compiler import compile_graph
from specc.diagnostics import SpeccError

BLOCKS = """\
block residual(x, width: int) {
    h = gelu(linear(layernorm(x), 4 * width))
    return x + linear(h, width)
}
block pair(x, n: int = 4) {
    a = linear(x, n)
    b = relu(x)
    return a, b
}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def model(tmp_path: Path, body: str, header: str = "model m(width: int = 8, depth: int = 3)",
          extra: str = BLOCKS) -> Path:
    return write(tmp_path, "m.nnspec", f"{extra}{header} {{\n{body}}}\n")


def error(path: Path) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        compile_graph(path)
    return info.value


def test_repeat_unrolls_the_block_depth_times(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, T, width]\n"
                                      "    output y = repeat depth { residual(_, width) } (x)\n"))
    linears = [n.name for n in g.nodes() if n.op == "linear"]
    assert linears == ["y_0_h_linear", "y_0_out_linear", "y_1_h_linear", "y_1_out_linear", "y_2_h_linear",
                       "y_2_out_linear"]
    assert [n.key for n in g.nodes() if n.op == "linear"][:2] == ["y.0.h_linear", "y.0.out_linear"]
    assert g.node(g.outputs["y"]).type.shape[-1] == 8


def test_repeat_zero_times_is_the_identity(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, width]\n"
                                      "    output y = relu(repeat 0 { residual(_, width) } (x))\n"))
    assert [n.op for n in g.nodes()] == ["input", "relu"]


def test_multiple_returns_unpack_and_pick_by_name(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, width]\n"
                                      "    a, b = pair(x, n=3)\n"
                                      "    p = pair(x)\n"
                                      "    output u = a\n"
                                      "    output v = p.a\n"
                                      "    output s, t = pair(b)\n"))
    shapes = {name: g.node(v).type.shape[-1] for name, v in g.outputs.items()}
    assert shapes == {"u": 3, "v": 4, "s": 4, "t": 8}


def test_block_defaults_and_keyword_arguments(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, width]\n    output y = residual(width=width, x=x)\n"))
    assert g.node(g.outputs["y"]).type.shape[-1] == 8


def test_conditional_expression_on_parameters(tmp_path):
    path = model(tmp_path, "    input x: f32[B, width]\n    output y = linear(x, 16 if width > 4 else 2)\n")
    assert compile_graph(path).node("y").type.shape[-1] == 16
    assert compile_graph(path, params={"width": 4}).node("y").type.shape[-1] == 2


def test_error_inside_a_block_points_at_the_block_and_the_call(tmp_path):
    err = error(model(tmp_path, "    input x: f32[B, width]\n    output y = residual(x, 5)\n"))
    assert err.code == "E0402" and err.span.line == 3  # `x + linear(h, width)` inside the block
    assert "cannot broadcast `x` (f32[B, 8]) with `linear(h, width)` (f32[B, 5])" in err.message
    assert [(n.message, n.span.line) for n in err.notes] == [("in block `residual`, called here", 12)]


def test_nested_block_errors_list_every_call_site(tmp_path):
    extra = BLOCKS + "block outer(x) {\n    return residual(x, 3)\n}\n"
    err = error(model(tmp_path, "    input x: f32[B, width]\n    output y = outer(x)\n", extra=extra))
    assert [n.message for n in err.notes] == ["in block `residual`, called here", "in block `outer`, called here"]


@pytest.mark.parametrize("body,code,message", [
    ("    input x: f32[B, width]\n    output y = pair(x)\n", "E0213", "output `y` must be a tensor, got 2 values"),
    ("    input x: f32[B, width]\n    a, b, c = pair(x)\n    output y = a\n", "E0223",
     "cannot unpack 2 values into 3 names"),
    ("    input x: f32[B, width]\n    output y = pair(x).c\n", "E0225", "2 values has no part named `c`"),
    ("    input x: f32[B, width]\n    output y = residual(x)\n", "E0209",
     "parameter `width` of block `residual` has no default"),
    ("    input x: f32[B, width]\n    output y = residual(x, 2.5)\n", "E0210",
     "parameter `width` is declared `int` but its value is a float (2.5)"),
    ("    input x: f32[B, width]\n    output y = residual(x, wide=2)\n", "E0301", "has no parameter `wide`"),
    ("    input x: f32[B, width]\n    output y = relu(_)\n", "E0224", "`_` is only defined inside a `repeat`"),
    ("    input x: f32[B, width]\n    output y = repeat -1 { relu(_) } (x)\n", "E0226", "non-negative int"),
    ("    input x: f32[B, width]\n    output y = m(x)\n", "E0227", "`m` is a model; only blocks can be called"),
])
def test_block_misuse_is_reported(tmp_path, body, code, message):
    err = error(model(tmp_path, body))
    assert err.code == code and message in err.message, err.render()


def test_recursion_is_rejected_with_its_chain(tmp_path):
    extra = "block a(x) {\n    return b(x)\n}\nblock b(x) {\n    return a(x)\n}\n"
    err = error(model(tmp_path, "    input x: f32[B, 4]\n    output y = a(x)\n", extra=extra))
    assert err.code == "E0228" and "(a -> b -> a)" in err.message


def test_imports_are_relative_to_the_importing_file(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", "blocks.nnspec", BLOCKS)
    write(tmp_path / "lib", "more.nnspec", 'import "blocks.nnspec"\nblock twice(x, w: int) {\n'
                                           '    return residual(residual(x, w), w)\n}\n')
    path = write(tmp_path, "m.nnspec", 'import "lib/more.nnspec"\nmodel m() {\n    input x: f32[B, 4]\n'
                                       '    output y = twice(x, 4)\n}\n')
    assert sum(n.op == "linear" for n in compile_graph(path).nodes()) == 4


def test_import_cycles_are_reported_with_the_chain(tmp_path):
    write(tmp_path, "a.nnspec", 'import "b.nnspec"\nblock fa(x) {\n    return x\n}\n')
    write(tmp_path, "b.nnspec", 'import "a.nnspec"\nblock fb(x) {\n    return x\n}\n')
    path = write(tmp_path, "m.nnspec", 'import "a.nnspec"\nmodel m() {\n    input x: f32[B, 4]\n'
                                       '    output y = relu(x)\n}\n')
    err = error(path)
    assert err.code == "E0501" and err.message == "import cycle: a.nnspec -> b.nnspec -> a.nnspec"
    assert err.span.path.endswith("b.nnspec") and err.span.line == 1


def test_missing_import_and_duplicate_definitions(tmp_path):
    err = error(write(tmp_path, "m.nnspec", 'import "nope.nnspec"\nmodel m() {\n    input x: f32[B]\n'
                                            '    output y = relu(x)\n}\n'))
    assert err.code == "E0502" and err.span.line == 1
    write(tmp_path, "lib.nnspec", BLOCKS)
    err = error(write(tmp_path, "m.nnspec", 'import "lib.nnspec"\n' + BLOCKS + 'model m() {\n'
                                            '    input x: f32[B]\n    output y = relu(x)\n}\n'))
    assert err.code == "E0221" and err.notes[0].span.path.endswith("lib.nnspec")


def test_errors_in_imported_files_point_into_them(tmp_path):
    write(tmp_path, "lib.nnspec", "block bad(x) {\n    return relu(x, 3)\n}\n")
    err = error(write(tmp_path, "m.nnspec", 'import "lib.nnspec"\nmodel m() {\n    input x: f32[B]\n'
                                            '    output y = bad(x)\n}\n'))
    assert err.span.path.endswith("lib.nnspec") and err.span.line == 2
    assert err.notes[0].span.path.endswith("m.nnspec")


def test_split_into_sizes_and_equal_parts(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, 12]\n    a, b, c = split(x, [2, 4, 6])\n"
                                      "    u, v = split(x, 2, dim=1)\n    output p, q = pair(c)\n"
                                      "    output r = a\n    output s = b\n    output t = v\n"))
    assert [g.node(g.outputs[k]).type.shape[-1] for k in ("r", "s", "p", "t")] == [2, 4, 4, 6]
    # `u` is dead and eliminated; `v` is elements 6:12 of dim 1
    assert [(n.attrs.start, n.attrs.end) for n in g.nodes() if n.op == "slice"] == [(0, 2), (2, 6), (6, 12), (6, 12)]


@pytest.mark.parametrize("call,code,message", [
    ("split(x, [2, 4])", "E0402", "sizes [2, 4] add up to 6, but dim -1 of f32[B, 12] has 12"),
    ("split(x, 5)", "E0401", "12 elements of dim -1 do not split into 5 equal parts"),
    ("split(x, [3, 9], dim=0)", "E0401", "dim 0 of f32[B, 12] must be static"),
    ("split(x, [12], dim=2)", "E0404", "dim=2 is out of range"),
    ("split(x, [0, 12])", "E0302", "sizes must be positive ints"),
])
def test_split_errors(tmp_path, call, code, message):
    err = error(model(tmp_path, f"    input x: f32[B, 12]\n    a = {call}\n    output y = relu(x)\n"))
    assert err.code == code and message in err.message, err.render()


def test_an_empty_tensor_list_is_an_error(tmp_path):
    err = error(model(tmp_path, "    input x: f32[B, 4]\n    output y = concat([], dim=0)\n"))
    assert err.code == "E0304" and "needs at least one tensor, got an empty list" in err.message


def test_symbolic_dims_with_division(tmp_path):
    g = compile_graph(model(tmp_path, "    input x: f32[B, H, 8]\n    input v: f32[B, H / 2, 8]\n"
                                      "    output z = concat([v, v], dim=1) + x\n"))
    assert str(g.node(g.outputs["z"]).type) == "f32[B, H, 8]"
    assert str(g.node("v").type) == "f32[B, H/2, 8]"
