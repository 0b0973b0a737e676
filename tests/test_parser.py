"""The parser: the syntax tree of the whole example language, positions, and newline rules."""

from __future__ import annotations

import pytest

from specc import ast
from specc.diagnostics import SourceFile, SpeccError
from specc.parser import parse

# The language tour from the README: every construct the grammar knows, including
# ones the lowering does not support yet (`compress`, fixed_point, ...), which
# must still parse.
EXAMPLE = """\
// blocks, repetition, imports
import "blocks.nnspec"
block residual(x, width: int) {
    h = gelu(linear(layernorm(x), 4 * width))
    return x + linear(h, width)
}
model encoder(width: int = 256, depth: int = 6) {
    input x: f32[B, T, width]
    h = repeat depth { residual(_, width) } (x)
    output y = layernorm(h)
}
model mdbm(d: int = 784, hidden: int = 256, classes: int = 10) {
    input x: f32[B, d]
    q = fixed_point(x, state=[hidden, classes], weight=monotone(m=0.05),
                    activation=prox_softmax(groups=...), solver=peaceman_rachford(alpha=0.5, tol=1e-5, max_iter=100))
    output y = q.classes
}
model tab_gen(latent: int = 32) {
    input z: f32[B, latent]
    raw = linear(relu(linear(z, 128)), 4)
    columns (age, income, debt, loan) = raw
    output sample = constrain(raw, order=[age, income, debt, loan]) {
        age >= 18
        age <= 100
        debt <= income
        loan - 0.5 * income - debt <= 0
    }
}
compress mlp_small = mlp {
    lowrank(rank=32)              on linear where out_features >= 128
    sparsity(pattern=2:4)         on "h*"
    quantize(int4, group=128)     on linear except "logits"
}
"""


def parse_text(text: str) -> ast.Module:
    return parse(SourceFile("t.nnspec", text))


def syntax_error(text: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        parse_text(text)
    return info.value


def where(node) -> tuple[int, int, int, int]:
    s = node.span
    return s.line, s.col, s.end_line, s.end_col


def names(exprs: list[ast.Expr]) -> list[str]:
    assert all(isinstance(e, ast.Name) for e in exprs), exprs
    return [e.id for e in exprs]


@pytest.fixture(scope="module")
def example() -> ast.Module:
    return parse_text(EXAMPLE)


def defn(module: ast.Module, name: str) -> ast.Definition:
    return next(d for d in module.definitions if d.name == name)


# ------------------------------------------------------------------ the example
def test_top_level_items(example):
    assert [(i.path, where(i)) for i in example.imports] == [("blocks.nnspec", (2, 1, 2, 23))]
    assert [(d.kind, d.name) for d in example.definitions] == [
        ("block", "residual"), ("model", "encoder"), ("model", "mdbm"), ("model", "tab_gen")]
    assert [(c.name, c.base) for c in example.compressions] == [("mlp_small", "mlp")]


def test_statement_kinds(example):
    kinds = {d.name: [type(s).__name__ for s in d.body] for d in example.definitions}
    assert kinds == {
        "residual": ["Assign", "Return"],
        "encoder": ["Input", "Assign", "Output"],
        "mdbm": ["Input", "Assign", "Output"],
        "tab_gen": ["Input", "Assign", "Columns", "Output"],
    }


def test_parameters_with_types_and_defaults(example):
    residual = defn(example, "residual")
    assert [(p.name, p.type, p.default) for p in residual.params] == [("x", None, None), ("width", "int", None)]
    encoder = defn(example, "encoder")
    assert [(p.name, p.type, p.default.value) for p in encoder.params] == [("width", "int", 256), ("depth", "int", 6)]


def test_block_body(example):
    assign, ret = defn(example, "residual").body
    assert assign.targets == ["h"]
    gelu = assign.value
    assert isinstance(gelu, ast.Call) and gelu.func == "gelu" and gelu.kwargs == [] and gelu.constraints is None
    linear = gelu.args[0]
    assert linear.func == "linear"
    layernorm, width = linear.args
    assert layernorm.func == "layernorm" and names(layernorm.args) == ["x"]
    assert isinstance(width, ast.BinOp) and width.op == "*"
    assert width.left.value == 4 and width.right.id == "width"
    (value,) = ret.values
    assert isinstance(value, ast.BinOp) and value.op == "+" and value.left.id == "x"
    assert value.right.func == "linear" and names(value.right.args) == ["h", "width"]


def test_input_type(example):
    inp = defn(example, "encoder").body[0]
    assert (inp.name, inp.dtype) == ("x", "f32")
    assert names(inp.dims) == ["B", "T", "width"]
    assert where(inp) == (8, 5, 8, 30)
    assert (inp.dtype_span.line, inp.dtype_span.col, inp.dtype_span.end_col) == (8, 14, 17)


def test_repeat_expression(example):
    rep = defn(example, "encoder").body[1].value
    assert isinstance(rep, ast.Repeat)
    assert rep.count.id == "depth"
    assert isinstance(rep.body, ast.Call) and rep.body.func == "residual"
    placeholder, width = rep.body.args
    assert isinstance(placeholder, ast.Placeholder) and width.id == "width"
    assert names(rep.args) == ["x"] and rep.kwargs == []
    assert where(rep) == (9, 9, 9, 48)
    assert where(placeholder) == (9, 33, 9, 34)


def test_call_arguments_over_two_lines(example):
    q = defn(example, "mdbm").body[1]
    call = q.value
    assert call.func == "fixed_point" and names(call.args) == ["x"]
    assert [k.name for k in call.kwargs] == ["state", "weight", "activation", "solver"]
    state, weight, activation, solver = (k.value for k in call.kwargs)
    assert isinstance(state, ast.ListExpr) and names(state.items) == ["hidden", "classes"]
    assert weight.func == "monotone" and [(k.name, k.value.value) for k in weight.kwargs] == [("m", 0.05)]
    assert activation.func == "prox_softmax"
    assert isinstance(activation.kwargs[0].value, ast.EllipsisLit)
    assert solver.func == "peaceman_rachford"
    assert [(k.name, k.value.value) for k in solver.kwargs] == [("alpha", 0.5), ("tol", 1e-5), ("max_iter", 100)]
    assert isinstance(solver.kwargs[2].value.value, int)
    # the call spans both lines; the keyword on the second line keeps its own position
    assert where(call) == (14, 9, 15, 118)
    assert where(q) == (14, 5, 15, 118)
    assert (call.kwargs[2].span.line, call.kwargs[2].span.col) == (15, 21)


def test_attribute_access(example):
    out = defn(example, "mdbm").body[2]
    assert out.names == ["y"]
    assert isinstance(out.value, ast.Attribute) and out.value.name == "classes" and out.value.value.id == "q"


def test_columns_and_constraint_block(example):
    _, raw, columns, out = defn(example, "tab_gen").body
    assert raw.value.func == "linear" and raw.value.args[1].value == 4
    assert columns.names == ["age", "income", "debt", "loan"] and columns.value.id == "raw"
    assert out.names == ["sample"]
    call = out.value
    assert call.func == "constrain" and names(call.args) == ["raw"]
    assert [k.name for k in call.kwargs] == ["order"]
    assert names(call.kwargs[0].value.items) == ["age", "income", "debt", "loan"]
    assert [c.op for c in call.constraints] == [">=", "<=", "<=", "<="]
    assert [type(c).__name__ for c in call.constraints] == ["Compare"] * 4
    assert [(c.left.id, c.right.value) for c in call.constraints[:2]] == [("age", 18), ("age", 100)]
    assert (call.constraints[2].left.id, call.constraints[2].right.id) == ("debt", "income")
    # loan - 0.5 * income - debt <= 0 is ((loan - (0.5 * income)) - debt) <= 0
    last = call.constraints[3]
    assert last.right.value == 0
    outer = last.left
    assert outer.op == "-" and outer.right.id == "debt"
    inner = outer.left
    assert inner.op == "-" and inner.left.id == "loan"
    assert inner.right.op == "*" and inner.right.left.value == 0.5 and inner.right.right.id == "income"
    assert [c.span.line for c in call.constraints] == [23, 24, 25, 26]
    assert where(call.constraints[0]) == (23, 9, 23, 18)


def test_compress_section(example):
    (comp,) = example.compressions
    assert (comp.name_span.line, comp.name_span.col) == (29, 10)
    assert len(comp.stages) == 3
    lowrank, sparsity, quantize = comp.stages

    assert lowrank.transform.func == "lowrank"
    assert [(k.name, k.value.value) for k in lowrank.transform.kwargs] == [("rank", 32)]
    assert names(lowrank.selectors) == ["linear"] and lowrank.excepts == []
    assert isinstance(lowrank.where, ast.Compare) and lowrank.where.op == ">="
    assert (lowrank.where.left.id, lowrank.where.right.value) == ("out_features", 128)

    pattern = sparsity.transform.kwargs[0]
    assert pattern.name == "pattern" and isinstance(pattern.value, ast.Ratio)
    assert (pattern.value.n, pattern.value.m) == (2, 4)
    assert [type(s).__name__ for s in sparsity.selectors] == ["String"]
    assert sparsity.selectors[0].value == "h*" and sparsity.excepts == [] and sparsity.where is None

    assert quantize.transform.func == "quantize" and names(quantize.transform.args) == ["int4"]
    assert [(k.name, k.value.value) for k in quantize.transform.kwargs] == [("group", 128)]
    assert names(quantize.selectors) == ["linear"]
    assert [s.value for s in quantize.excepts] == ["logits"] and quantize.where is None
    assert [s.span.line for s in comp.stages] == [30, 31, 32]
    assert where(quantize.excepts[0]) == (32, 52, 32, 60)


def test_definition_positions(example):
    residual, encoder, mdbm, tab_gen = example.definitions
    assert where(residual) == (3, 1, 6, 2)
    assert (residual.name_span.line, residual.name_span.col, residual.name_span.end_col) == (3, 7, 15)
    assert (encoder.name_span.line, encoder.name_span.col) == (7, 7)
    assert [d.span.line for d in example.definitions] == [3, 7, 12, 18]
    assert where(residual.params[1]) == (3, 19, 3, 29)
    assert where(residual.body[0]) == (4, 5, 4, 46)
    assert (residual.body[0].value.func_span.col, residual.body[0].value.func_span.end_col) == (9, 13)


def test_numbers(example):
    residual, _, mdbm, _ = example.definitions
    four = residual.body[0].value.args[0].args[1].left
    assert four.value == 4 and isinstance(four.value, int)
    tol = mdbm.body[1].value.kwargs[3].value.kwargs[1].value
    assert tol.value == 1e-5 and isinstance(tol.value, float)


# ---------------------------------------------------- comments, blank lines, newlines
def test_comments_and_blank_lines_are_ignored():
    text = (
        "\n\n// leading comment\n\n"
        "model m(n: int = 2) {   // after the brace\n"
        "\n"
        "    // a comment line\n"
        "    input x: f32[B, 4]  // trailing\n"
        "\n\n"
        "    h = relu(x)\n"
        "    // another\n"
        "\n"
        "    output y = h\n"
        "\n"
        "}\n"
        "\n// trailing comment, no newline at the end"
    )
    (m,) = parse_text(text).definitions
    assert [type(s).__name__ for s in m.body] == ["Input", "Assign", "Output"]
    assert [s.span.line for s in m.body] == [8, 11, 14]
    assert where(m.body[0]) == (8, 5, 8, 23)  # the trailing comment is not part of the statement


def test_crlf_line_endings_and_no_final_newline():
    (m,) = parse_text("model m() {\r\n    input x: f32[B, 4]\r\n\r\n    output y = x\r\n}").definitions
    assert [type(s).__name__ for s in m.body] == ["Input", "Output"]
    assert m.body[1].span.line == 4


def test_newlines_inside_brackets_are_ignored():
    text = (
        "model m() {\n"
        "    input x: f32[\n"
        "        B,\n"
        "        4,   // a trailing comma and a comment\n"
        "    ]\n"
        "    h = linear(\n"
        "\n"
        "        x,\n"
        "        (2 +\n"
        "         2),\n"
        "        bias=false,\n"
        "    )\n"
        "    output y = h\n"
        "}\n"
    )
    inp, h, out = parse_text(text).definitions[0].body
    assert names(inp.dims[:1]) == ["B"] and inp.dims[1].value == 4 and len(inp.dims) == 2
    assert h.value.func == "linear" and names(h.value.args[:1]) == ["x"]
    assert h.value.args[1].op == "+" and [k.name for k in h.value.kwargs] == ["bias"]
    assert where(h) == (6, 5, 12, 6)
    assert out.span.line == 13


def test_newlines_inside_repeat_and_constraint_braces():
    text = (
        "model m() {\n"
        "    input x: f32[B, 2]\n"
        "    columns (a, b) = x\n"
        "    h = repeat 2 {\n"
        "        relu(_)\n"
        "    } (x)\n"
        "    output y = constrain(h) {\n"
        "\n"
        "        a <= b\n"
        "\n"
        "        b <= 1\n"
        "    }\n"
        "}\n"
    )
    _, _, h, out = parse_text(text).definitions[0].body
    assert isinstance(h.value, ast.Repeat) and h.value.body.func == "relu"
    assert [(c.left.id, c.op) for c in out.value.constraints] == [("a", "<="), ("b", "<=")]


def test_a_statement_does_not_continue_on_the_next_line():
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n    y = x\n        + 1\n    output y\n}\n")
    assert err.code == "E0100" and err.message.startswith("unexpected `+`")
    assert (err.span.line, err.span.col) == (4, 9)
    assert err.notes == []  # no bracket is open


def test_a_trailing_operator_does_not_continue_the_line():
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n    y = x +\n        1\n    output y\n}\n")
    assert err.code == "E0100" and err.message.startswith("unexpected end of line")
    assert (err.span.line, err.span.col) == (3, 12)


def test_a_call_cannot_open_its_parenthesis_on_the_next_line():
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n    output y = linear\n        (x, 4)\n}\n")
    assert err.code == "E0100" and err.message.startswith("unexpected `(`")
    assert (err.span.line, err.span.col) == (4, 9)


def test_an_unclosed_parenthesis_points_at_the_opener():
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n    h = relu(linear(x, 4)\n    output y = h\n}\n")
    assert err.code == "E0100" and err.message.startswith("unexpected `output`")
    assert (err.span.line, err.span.col) == (4, 5)
    (note,) = err.notes
    assert note.message == "this bracket is not closed"
    assert (note.span.line, note.span.col) == (3, 13)


def test_positional_argument_after_keyword_is_a_syntax_error():
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n    output y = linear(x, bias=true, 4)\n}\n")
    assert err.code == "E0102"
    assert (err.span.line, err.span.col, err.span.end_col) == (3, 37, 38)


def test_unexpected_character_and_end_of_file():
    err = syntax_error("model m() {\n    output y = x @ x\n}\n")
    assert (err.code, err.message, err.span.line, err.span.col) == ("E0101", "unexpected character `@`", 2, 18)
    err = syntax_error("model m() {\n    input x: f32[B, 4]\n")
    assert err.code == "E0103" and err.message.startswith("unexpected end of file")
    assert err.span.line == 2


def test_empty_file_is_an_empty_module():
    module = parse_text("// nothing here\n\n")
    assert (module.imports, module.definitions, module.compressions) == ([], [], [])


def test_the_shipped_parser_tables_are_the_grammars():
    """`lark_parser` loads specc/parser_tables.json instead of building the LALR tables (0.1-0.3 s at every
    start): they must be generated from this grammar, and give the trees and positions building gives."""
    import json
    from pathlib import Path

    from lark import Lark

    from specc import parser
    from specc.resources import data_dir

    grammar = (data_dir("grammar") / "nnspec.lark").read_text(encoding="utf-8")
    tables = json.loads(parser._TABLES.read_text(encoding="utf-8"))
    assert tables["key"] == list(parser._tables_key(grammar)), \
        'grammar/nnspec.lark changed: regenerate the tables with `python -c "import specc.parser as p; p.write_tables()"`'
    loaded = parser.lark_parser()
    built = Lark(grammar, postlex=parser._NewlinePostLex(), **parser._LARK_OPTIONS)
    parser._pass_through(built)
    root = Path(__file__).resolve().parent.parent
    texts = [p.read_text(encoding="utf-8") + "\n" for p in sorted((root / "specs").glob("*.nnspec"))]
    assert len(texts) > 10
    for text in texts + [EXAMPLE]:
        a, b = loaded.parse(text), built.parse(text)
        assert a == b
        assert [(t.meta.line, t.meta.column, t.meta.end_line, t.meta.end_column) for t in a.iter_subtrees()] \
            == [(t.meta.line, t.meta.column, t.meta.end_line, t.meta.end_column) for t in b.iter_subtrees()]
    for bad in ("model m( {", "model m() { x = }"):  # the same syntax errors too
        errors = []
        for p in (loaded, built):
            try:
                p.parse(bad + "\n")
            except Exception as exc:  # noqa: BLE001 - compared, not handled
                errors.append((type(exc).__name__, getattr(exc, "line", None), getattr(exc, "column", None),
                               sorted(getattr(exc, "expected", ()) or ())))
        assert errors[0] == errors[1] and len(errors) == 2
