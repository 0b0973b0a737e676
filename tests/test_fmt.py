"""`specc fmt`: canonical, idempotent, comment-preserving, and never changes what a spec means."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specc.diagnostics import SourceFile, SpeccError
from specc.fmt import LINE_WIDTH, format_text, lex, syntax_shape
from specc.parser import parse
from test_parser import EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))
DIAGNOSTIC_SPECS = sorted((ROOT / "tests" / "diagnostics").glob("*.nnspec"))


def shape(text: str):
    return syntax_shape(parse(SourceFile("t.nnspec", text)))


def comments(text: str) -> list[str]:
    return [t.text.rstrip() for t in lex(text) if t.type == "COMMENT"]


def assert_canonical(text: str, line_width: int = LINE_WIDTH) -> str:
    once = format_text(text, line_width=line_width)
    assert format_text(once, line_width=line_width) == once, "not idempotent"
    assert shape(once) == shape(text), "the syntax tree changed"
    assert comments(once) == comments(text), "comments changed"
    assert all(line == line.rstrip() and "\t" not in line[:len(line) - len(line.lstrip())]
               for line in once.splitlines())
    return once


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_every_spec(spec: Path):
    assert_canonical(spec.read_text())


def test_every_diagnostic_case_that_parses():
    checked = 0
    for spec in DIAGNOSTIC_SPECS:
        try:
            parse(SourceFile(spec.name, spec.read_text()))
        except SpeccError:
            continue
        assert_canonical(spec.read_text())
        checked += 1
    assert checked >= 20


def test_the_language_tour():
    assert_canonical(EXAMPLE)


MESSY = """\


// header comment
import   "blocks.nnspec"
block residual( x,width:int ) {

      h=gelu( linear(layernorm(x),4*width) )   // expand
  return x+linear(h,width)

}
// the encoder
model encoder(width: int=256, depth :int = 6) {
\tinput x : f32[ B,T,width ]
    h = repeat depth {residual(_,width)}(x)
    y = - h * -2 + (3 - -x) if depth>2 else h.part
    z = f(
   a,
          b,
    )
    output y = layernorm(h)                  // aligned
    output z = dropout(z, p = 0.1)           // comments
}
compress small = encoder {
    lowrank(rank=32)              on linear where out_features >= 128
    sparsity(pattern=2:4)         on "h*"   except   "x"
}
"""

CANONICAL = """\
// header comment
import "blocks.nnspec"

block residual(x, width: int) {
    h = gelu(linear(layernorm(x), 4 * width))  // expand
    return x + linear(h, width)
}

// the encoder
model encoder(width: int = 256, depth: int = 6) {
    input x: f32[B, T, width]
    h = repeat depth { residual(_, width) } (x)
    y = -h * -2 + (3 - -x) if depth > 2 else h.part
    z = f(
        a,
        b,
    )
    output y = layernorm(h)  // aligned
    output z = dropout(z, p=0.1)  // comments
}

compress small = encoder {
    lowrank(rank=32) on linear where out_features >= 128
    sparsity(pattern=2:4) on "h*" except "x"
}
"""


def test_canonical_layout():
    assert assert_canonical(MESSY) == CANONICAL
    assert format_text(CANONICAL) == CANONICAL


def test_continuation_lines_indent_one_level_per_opening_line():
    text = ("model m() {\n    input x: f32[B, 4]\n    y = concat([relu(\nx),\n x], dim=-1)\n"
            "    output z = linear(concat([\nx,\nx]), 2\n)\n}\n")
    assert assert_canonical(text) == (
        "model m() {\n    input x: f32[B, 4]\n    y = concat([relu(\n        x),\n        x], dim=-1)\n"
        "    output z = linear(concat([\n        x,\n        x]), 2\n    )\n}\n")


def test_syntax_errors_are_reported_not_formatted():
    with pytest.raises(SpeccError) as info:
        format_text("model m( {\n}\n")
    assert info.value.code == "E0100"


def test_empty_and_comment_only_files():
    assert format_text("") == ""
    assert format_text("\n\n") == ""
    assert format_text("  // only a comment  \n\n\n// another\n") == "// only a comment\n\n// another\n"


# ----------------------------------------------------------------- random specs
# Specs built from the grammar's statement forms, laid out at random: random
# blanks between tokens (a space where two words would merge), line breaks inside
# brackets, blank lines, and comments at line ends and between items.
NAMES = st.sampled_from(["x", "h", "width", "B", "T", "y2", "q_k", "_tmp", "layer"])
FUNCS = st.sampled_from(["relu", "linear", "f", "conv2d", "monotone", "residual", "where"])
NUMBERS = st.sampled_from(["0", "1", "42", "0.5", ".5", "2.", "1e-5", "3E+2"])
_BOUND = st.one_of(st.just([]), NAMES.map(lambda n: [n]), NUMBERS.map(lambda n: [n]), NUMBERS.map(lambda n: ["-", n]))
SLICES = st.tuples(_BOUND, _BOUND, st.one_of(st.just([]), _BOUND.map(lambda b: [":"] + b))).map(
    lambda t: t[0] + [":"] + t[1] + t[2])  # `:`, `1:`, `::2`, `x:-1:2`, ...


def expr(depth: int = 0) -> st.SearchStrategy[list[str]]:
    atoms = st.one_of(NAMES.map(lambda n: [n]), NUMBERS.map(lambda n: [n]), st.just(['"a b"']),
                      st.just(["2:4"]), st.just(["_"]), st.just(["..."]))
    if depth >= 2:
        return atoms
    sub = st.deferred(lambda: expr(depth + 1))
    args = st.lists(sub, max_size=3)
    kwargs = st.lists(st.tuples(NAMES, sub), max_size=2)
    return st.one_of(
        atoms,
        st.tuples(FUNCS, args, kwargs).map(
            lambda t: [t[0], "("] + _commas([a for a in t[1]] + [[k, "="] + v for k, v in t[2]]) + [")"]),
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%", "**"]), sub).map(lambda t: t[0] + [t[1]] + t[2]),
        st.tuples(sub, st.sampled_from(["<", "<=", "==", "!="]), sub).map(
            lambda t: ["("] + t[0] + [t[1]] + t[2] + [")"]),
        st.tuples(sub, st.lists(st.one_of(sub, SLICES), min_size=1, max_size=3)).map(
            lambda t: t[0] + ["["] + _commas(t[1]) + ["]"]),
        sub.map(lambda e: ["-"] + e),
        sub.map(lambda e: ["("] + e + [")"]),
        st.lists(sub, max_size=3).map(lambda items: ["["] + _commas(items) + ["]"]),
        st.tuples(NAMES, NAMES).map(lambda t: [t[0], ".", t[1]]),
        st.tuples(sub, sub, sub, sub).map(
            lambda t: ["("] + t[0] + ["if"] + t[1] + ["<="] + t[2] + ["else"] + t[3] + [")"]),
        st.tuples(sub, FUNCS, sub).map(lambda t: ["repeat"] + t[0] + ["{", t[1], "(", "_", ")", "}", "("] + t[2]
                                       + [")"]),
    )


def _commas(items: list[list[str]]) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        out += ([","] if i else []) + item
    return out


def statement() -> st.SearchStrategy[list[str]]:
    dims = st.lists(st.one_of(NAMES.map(lambda n: [n]), st.just(["4"]), st.just(["2", "*", "T"])), max_size=3)
    return st.one_of(
        st.tuples(NAMES, dims).map(lambda t: ["input", t[0], ":", "f32", "["] + _commas(t[1]) + ["]"]),
        st.tuples(st.lists(NAMES, min_size=1, max_size=2), expr()).map(lambda t: _commas([[n] for n in t[0]])
                                                                          + ["="] + t[1]),
        st.tuples(NAMES, expr()).map(lambda t: ["output", t[0], "="] + t[1]),
        NAMES.map(lambda n: ["output", n]),
        st.lists(expr(), min_size=1, max_size=2).map(lambda es: ["return"] + _commas(es)),
        st.tuples(st.lists(NAMES, min_size=1, max_size=3), NAMES).map(
            lambda t: ["columns", "("] + _commas([[n] for n in t[0]]) + [")", "=", t[1]]),
        st.tuples(NAMES, NAMES, NAMES).map(lambda t: [t[0], "=", "constrain", "(", t[1], ")", "{", t[1], ">=", "0",
                                                      "\n", t[2], "<", "1", "}"]),
    )


def item() -> st.SearchStrategy[list[str]]:
    param = st.tuples(NAMES, st.sampled_from([[], [":", "int"], [":", "float"]]),
                      st.one_of(st.just([]), expr(2).map(lambda e: ["="] + e))).map(lambda t: [t[0]] + t[1] + t[2])
    body = st.lists(statement(), max_size=4).map(lambda ss: [tok for s in ss for tok in ["\n"] + s] + ["\n"])
    stage = st.tuples(FUNCS, NAMES, st.booleans()).map(
        lambda t: [t[0], "(", "rank", "=", "8", ")", "on", t[1]] + (["except", '"x*"'] if t[2] else [])
        + ["where", "out_features", ">=", "128"])
    return st.one_of(
        st.tuples(st.sampled_from(["model", "block"]), NAMES, st.lists(param, max_size=3, unique_by=lambda p: p[0]),
                  body).map(
            lambda t: [t[0], t[1], "("] + _commas(t[2]) + [")", "{"] + t[3] + ["}"]),
        st.just(["import", '"lib.nnspec"']),
        st.tuples(NAMES, NAMES, st.lists(stage, min_size=1, max_size=2)).map(
            lambda t: ["compress", t[0], "=", t[1], "{"] + [tok for s in t[2] for tok in ["\n"] + s] + ["\n", "}"]),
    )


@st.composite
def layouts(draw, tokens: list[str]) -> str:
    """Lay tokens out with random blanks, line breaks inside brackets, blank lines and comments."""
    out: list[str] = []
    depth = 0
    for i, tok in enumerate(tokens):
        if tok == "\n":
            if draw(st.booleans()):
                out.append("  // note " + draw(st.sampled_from(["a", "b c", "(x", "é"])))
            out.append("\n" * draw(st.integers(1, 3)) + " " * draw(st.integers(0, 6)))
            continue
        prev = out[-1] if out else "\n"
        word = (prev[-1:].isalnum() or prev[-1:] in "_.\"") and (tok[0].isalnum() or tok[0] in "_.\"")
        choices = ["", " ", "  ", "\t"] if not word else [" ", "   ", "\t"]
        if depth > 0:
            choices += ["\n", "\n        ", " // inside\n  "]
        if not prev.endswith("\n"):
            out.append(draw(st.sampled_from(choices)))
        out.append(tok)
        depth += tok in ("(", "[")
        depth -= tok in (")", "]")
    return "".join(out)


@st.composite
def random_specs(draw) -> str:
    items = draw(st.lists(item(), min_size=1, max_size=4))
    tokens: list[str] = []
    for it in items:
        tokens += (["\n"] if draw(st.booleans()) else []) + it + ["\n"]
    text = draw(layouts(tokens))
    if draw(st.booleans()):
        text = "// leading comment\n" + text
    return text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_specs(), st.sampled_from([LINE_WIDTH, 60, 30, 12]))
def test_random_specs(text: str, line_width: int):
    parse(SourceFile("t.nnspec", text))  # the generator makes valid specs only
    assert_canonical(text, line_width)


# ----------------------------------------------------------------- the command
def specc(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specc.cli", *args], capture_output=True, text=True, input=input)


def test_fmt_check_and_rewrite(tmp_path: Path):
    messy = tmp_path / "messy.nnspec"
    messy.write_text(MESSY)
    result = specc("fmt", str(messy), "--check")
    assert result.returncode == 1
    assert "+    y = -h * -2 + (3 - -x) if depth > 2 else h.part" in result.stdout
    assert messy.read_text() == MESSY  # --check writes nothing

    result = specc("fmt", str(messy))
    assert result.returncode == 0, result.stderr
    assert messy.read_text() == CANONICAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.nnspec"]  # no temporary file left

    result = specc("fmt", str(messy), "--check")
    assert (result.returncode, result.stdout) == (0, "")


def test_fmt_errors(tmp_path: Path):
    broken = tmp_path / "broken.nnspec"
    broken.write_text("model m( {\n}\n")
    result = specc("fmt", str(broken))
    assert result.returncode == 1 and "error[E0100]" in result.stderr
    assert broken.read_text() == "model m( {\n}\n"
    assert specc("fmt", str(tmp_path / "missing.nnspec")).returncode == 2


# ----------------------------------------------------- layout-independent output
_SPACEABLE = frozenset({"LPAR", "RPAR", "LSQB", "RSQB", "COMMA", "LBRACE", "RBRACE", "EQUAL"})


def scramble(text: str, rng: random.Random, crlf: bool = False) -> str:
    """`text` with its horizontal whitespace laid out at random: every run of blanks replaced, blanks added
    next to brackets, commas and `=`, random indentation, trailing blanks; line breaks kept (the formatter
    keeps them), as CRLF if asked."""
    out: list[str] = []
    prev = None
    for tok in lex(text):
        if tok.type == "WS":
            out.append(rng.choice([" ", "  ", "\t", "     "]))
        elif tok.type == "_NL":
            for _ in range(tok.text.count("\n")):
                out.append(rng.choice(["", " ", "\t "]) + ("\r\n" if crlf else "\n") + rng.choice(["", "  ", "\t", "       "]))
        else:
            if prev is not None and prev.type not in ("WS", "_NL") and (
                    prev.type in _SPACEABLE or tok.type in _SPACEABLE) and rng.random() < 0.5:
                out.append(rng.choice([" ", "\t"]))
            out.append(tok.text)
        prev = tok
    return "".join(out)


def _significant(text: str) -> list[tuple[str, str]]:
    return [(t.type, t.text.rstrip()) for t in lex(text) if t.type not in ("WS", "_NL")]


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_scrambled_specs_format_like_the_original(spec: Path):
    text = spec.read_text()
    canonical = format_text(text)
    rng = random.Random(spec.stem)
    for i in range(4):
        messy = scramble(text, rng, crlf=i % 2 == 1)
        assert messy != text and _significant(messy) == _significant(text)
        expected = canonical.replace("\n", "\r\n") if i % 2 else canonical
        assert format_text(messy) == expected


def test_every_spec_is_a_fixed_point():
    changed = [spec.name for spec in SPECS if format_text(spec.read_text()) != spec.read_text()]
    assert not changed, f"run `specc fmt specs/`: {changed}"


def test_trailing_comments_are_two_spaces_after_the_code():
    text = "model m() {\n    input x: f32[B]// a\n    output y = relu(x)                 // b\n}\n"
    assert format_text(text) == "model m() {\n    input x: f32[B]  // a\n    output y = relu(x)  // b\n}\n"


# --------------------------------------------------------------- line endings
def test_crlf_stays_crlf_and_lf_stays_lf():
    lf = format_text(MESSY)
    crlf = format_text(MESSY.replace("\n", "\r\n"))
    assert crlf == lf.replace("\n", "\r\n")
    assert format_text(crlf) == crlf and "\r\r" not in crlf
    # the first line decides: a mixed file is written with its first line's ending throughout
    assert format_text("model m() {\n    input x: f32[B]\r\n}\r\n") == "model m() {\n    input x: f32[B]\n}\n"
    assert format_text("// c\r\nmodel m() {\n}\n") == "// c\r\nmodel m() {\r\n}\r\n"


# ------------------------------------------------------------------- wrapping
LONG = ("model m(width: int = 256, depth: int = 6) {\n    input x: f32[B, width]\n"
        "    y = linear(concat([relu(x), gelu(x), tanh(x)], dim=-1), width, bias=false)  // the mix\n"
        "    output z = layernorm(y, eps=1e-5)\n}\n")


def test_long_lines_wrap_at_the_outermost_comma_that_fits():
    assert format_text(LONG) == LONG  # fits in the default width
    assert format_text(LONG, line_width=40) == (
        "model m(width: int = 256,\n    depth: int = 6) {\n    input x: f32[B, width]\n"
        "    y = linear(concat([relu(x), gelu(x),\n        tanh(x)], dim=-1), width,\n        bias=false)  // the mix\n"
        "    output z = layernorm(y, eps=1e-5)\n}\n")
    assert format_text(LONG, line_width=60) == (
        "model m(width: int = 256, depth: int = 6) {\n    input x: f32[B, width]\n"
        "    y = linear(concat([relu(x), gelu(x), tanh(x)], dim=-1),\n        width, bias=false)  // the mix\n"
        "    output z = layernorm(y, eps=1e-5)\n}\n")


def test_a_line_with_no_comma_to_break_at_stays_long():
    text = "model m() {\n    input x: f32[B]\n    output y = relu(relu(relu(relu(x))))\n}\n"
    assert format_text(text, line_width=10) == text


@pytest.mark.parametrize("width", [80, 50, 20])
def test_every_spec_wraps_canonically(width: int):
    for spec in SPECS:
        once = assert_canonical(spec.read_text(), width)
        assert format_text(once.replace("\n", "\r\n"), line_width=width) == once.replace("\n", "\r\n")


def test_fmt_stdin_to_stdout():
    result = specc("fmt", "-", input=MESSY)
    assert (result.returncode, result.stdout) == (0, CANONICAL), result.stderr
    crlf = subprocess.run([sys.executable, "-m", "specc.cli", "fmt", "-"], capture_output=True,
                          input=MESSY.replace("\n", "\r\n").encode())
    assert crlf.stdout == CANONICAL.replace("\n", "\r\n").encode()
    result = specc("fmt", "-", "--check", input=MESSY)
    assert result.returncode == 1 and "+    output y = layernorm(h)  // aligned" in result.stdout
    assert specc("fmt", "-", "--check", input=CANONICAL).returncode == 0
    result = specc("fmt", "-", "--stdin-filename", "mine.nnspec", input="model m( {\n}\n")
    assert (result.returncode, result.stdout) == (1, "")  # nothing half-formatted on stdout
    assert "mine.nnspec:1:10: error[E0100]" in result.stderr


def test_fmt_several_files_and_directories(tmp_path: Path):
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    files = {"a.nnspec": MESSY, "sub/b.nnspec": MESSY.replace("\n", "\r\n"), "sub/ok.nnspec": CANONICAL,
             "sub/broken.nnspec": "model m( {\n}\n", "sub/.git/c.nnspec": MESSY, "sub/notes.txt": MESSY}
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode())
    result = specc("fmt", "--check", str(tmp_path))
    assert result.returncode == 1
    # every file that would change is reported, the broken one located, the others still checked
    assert "would reformat " + str(tmp_path / "a.nnspec") in result.stderr
    assert "would reformat " + str(tmp_path / "sub" / "b.nnspec") in result.stderr
    assert "broken.nnspec:1:10: error[E0100]" in result.stderr
    assert "2 files would be reformatted, 1 left unchanged, 1 failed" in result.stderr
    assert all((tmp_path / name).read_bytes() == text.encode() for name, text in files.items())

    result = specc("fmt", str(tmp_path / "a.nnspec"), str(tmp_path / "sub"), str(tmp_path / "missing.nnspec"))
    assert result.returncode == 2  # the worst: a file that cannot be read
    assert "missing.nnspec: no such file" in result.stderr and "broken.nnspec:1:10" in result.stderr
    assert (tmp_path / "a.nnspec").read_text() == CANONICAL
    assert (tmp_path / "sub" / "b.nnspec").read_bytes() == CANONICAL.replace("\n", "\r\n").encode()
    assert (tmp_path / "sub" / ".git" / "c.nnspec").read_text() == MESSY  # hidden directories are skipped
    assert (tmp_path / "sub" / "notes.txt").read_text() == MESSY  # only *.nnspec in a directory
    assert specc("fmt", "--check", str(tmp_path / "a.nnspec"), str(tmp_path / "sub" / "b.nnspec")).returncode == 0


def test_fmt_line_width(tmp_path: Path):
    spec = tmp_path / "long.nnspec"
    spec.write_text(LONG)
    assert specc("fmt", "--check", str(spec)).returncode == 0
    assert specc("fmt", "--line-width", "60", str(spec)).returncode == 0
    assert spec.read_text() == format_text(LONG, line_width=60) != LONG
    result = specc("fmt", "--line-width", "0", str(spec))
    assert result.returncode == 2 and "--line-width" in result.stderr
