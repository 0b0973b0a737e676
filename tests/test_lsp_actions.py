"""`specc lsp` quick fixes and range formatting end to end, through pytest-lsp's client as in
tests/test_lsp.py: "add a missing import" (an unknown block that a spec in the document's directory or
below defines), "fill in missing arguments" (of an op, and of a block whose error points at its
definition), and textDocument/rangeFormatting, which must never touch a line outside the range.
Each fix is applied and the document re-checked: a fix must make the error go away, not just edit.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.workspace import TextDocument
from pytest_lsp import LanguageClient

from specc.fmt import format_text
from test_lsp import DiskDoc, client  # noqa: F401  (the fixture: one server per module)
from specc.lsp import actions

ROOT = Path(__file__).resolve().parent.parent
served = pytest.mark.asyncio(loop_scope="module")  # the async tests share one server


def apply(text: str, edits: list[lsp.TextEdit]) -> str:
    """`text` with `edits` applied (positions in code points: these texts are ASCII)."""
    lines = text.split("\n")

    def offset(p: lsp.Position) -> int:
        return sum(len(line) + 1 for line in lines[:p.line]) + p.character

    for edit in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[:offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


class Doc(DiskDoc):
    """An open document kept in step with the server, its text also on disk."""

    async def actions(self, diagnostic: lsp.Diagnostic) -> list[lsp.CodeAction]:
        result = await self.client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=self.uri), range=diagnostic.range,
            context=lsp.CodeActionContext(diagnostics=[diagnostic])))
        return list(result or [])

    async def fix(self, diagnostic: lsp.Diagnostic, title_part: str) -> tuple[lsp.CodeAction, list[lsp.Diagnostic]]:
        """Apply the one action whose title has `title_part`; the diagnostics of the fixed text."""
        (action,) = [a for a in await self.actions(diagnostic) if title_part in a.title]
        assert action.kind == lsp.CodeActionKind.QuickFix and list(action.diagnostics) == [diagnostic]
        assert list(action.edit.changes) == [self.uri]
        return action, await self.change(apply(self.text, action.edit.changes[self.uri]))


BLOCKS = """\
block residual(x, width: int) {
    return x + linear(relu(x), width)
}
"""

MODEL = """\
model m(width: int = 8) {
    input x: f32[B, width]
    h = residual(x, width)
    output y = relu(h)
}
"""


# ------------------------------------------------------------------ add a missing import
@served
async def test_missing_import_goes_after_the_imports_and_fixes_the_error(client: LanguageClient, tmp_path: Path):
    Doc(client, tmp_path / "nn" / "blocks.nnspec", BLOCKS)
    Doc(client, tmp_path / "other.nnspec", "block unrelated(x) {\n    return x\n}\n")
    Doc(client, tmp_path / "deep" / "er" / "residual.nnspec", "model residual() {\n    input x: f32[2]\n"
                                                                 "    output y = x\n}\n")  # a model: no block
    doc = Doc(client, tmp_path / "main.nnspec", '// main\nimport "other.nnspec"\n\n' + MODEL)
    (d,) = await doc.open()
    assert d.code == "E0201" and "`residual`" in d.message
    action, after = await doc.fix(d, "Import")
    assert action.title == 'Import "nn/blocks.nnspec" (defines block `residual`)' and action.is_preferred
    assert doc.text == '// main\nimport "other.nnspec"\nimport "nn/blocks.nnspec"\n\n' + MODEL
    assert after == []
    doc.close()


@served
async def test_missing_import_without_imports_goes_below_the_leading_comment(client: LanguageClient, tmp_path: Path):
    Doc(client, tmp_path / "blocks.nnspec", BLOCKS)
    Doc(client, tmp_path / "copy" / "blocks.nnspec", BLOCKS)
    doc = Doc(client, tmp_path / "main.nnspec", "// a model\r\n// that uses residual\r\n" + MODEL.replace("\n", "\r\n"))
    (d,) = await doc.open()
    titles = [a.title for a in await doc.actions(d) if a.title.startswith("Import")]
    assert titles == ['Import "blocks.nnspec" (defines block `residual`)',  # nearest first
                      'Import "copy/blocks.nnspec" (defines block `residual`)']
    _, after = await doc.fix(d, '"blocks.nnspec"')
    assert doc.text.startswith('// a model\r\n// that uses residual\r\nimport "blocks.nnspec"\r\n\r\nmodel m(')
    assert after == []
    doc.close()


@served
async def test_no_import_offered_that_would_be_a_cycle_or_is_outside(client: LanguageClient, tmp_path: Path):
    """A spec that imports this document, or one above its directory, is not offered."""
    Doc(client, tmp_path / "blocks.nnspec", BLOCKS)  # above main's directory: imports cannot reach it
    Doc(client, tmp_path / "app" / "lib.nnspec", 'import "main.nnspec"\n' + BLOCKS)
    doc = Doc(client, tmp_path / "app" / "main.nnspec", MODEL)
    (d,) = await doc.open()
    assert d.code == "E0201"
    assert [a.title for a in await doc.actions(d) if a.title.startswith("Import")] == []
    doc.close()


@served
async def test_missing_compress_base_model_is_imported(client: LanguageClient, tmp_path: Path):
    Doc(client, tmp_path / "specs" / "mlp.nnspec", (ROOT / "specs" / "mlp.nnspec").read_text())
    doc = Doc(client, tmp_path / "small.nnspec",
              "compress small = mlp {\n    lowrank(rank=8) on linear where out_features >= 128\n}\n")
    (d,) = await doc.open()
    assert d.code == "E0806"
    action, after = await doc.fix(d, "Import")
    assert action.title == 'Import "specs/mlp.nnspec" (defines model `mlp`)'
    assert doc.text.startswith('import "specs/mlp.nnspec"\n\ncompress small')
    assert after == []
    doc.close()


# ------------------------------------------------------------------ fill in missing arguments
@served
async def test_missing_op_arguments_are_filled_in_with_placeholders(client: LanguageClient, tmp_path: Path):
    doc = Doc(client, tmp_path / "conv.nnspec", "model m(out_channels: int = 4, kernel: int = 3) {\n"
                                                "    input x: f32[1, 3, 8, 8]\n"
                                                "    output y = relu(conv2d(x, stride=1,))\n}\n")
    (d,) = await doc.open()
    assert d.code == "E0303" and "`out_channels`" in d.message
    action, after = await doc.fix(d, "Fill in")
    assert action.title == ("Fill in the missing arguments of `conv2d`: out_channels=out_channels, kernel=kernel "
                            "(placeholders: each value is its parameter's name)")
    assert "relu(conv2d(x, stride=1, out_channels=out_channels, kernel=kernel,))" in doc.text
    assert after == []  # the model's parameters of those names make the placeholders compile
    doc.close()


@served
async def test_missing_argument_placeholder_is_reported_until_replaced(client: LanguageClient, tmp_path: Path):
    doc = Doc(client, tmp_path / "lin.nnspec", "model m() {\n    input x: f32[B, 4]\n    output y = linear(x)\n}\n")
    (d,) = await doc.open()
    _, after = await doc.fix(d, "Fill in")
    assert "linear(x, out_features=out_features)" in doc.text
    assert [(e.code, "`out_features`" in e.message) for e in after] == [("E0202", True)]
    doc.close()


@served
async def test_missing_block_arguments_are_filled_in_at_the_call(client: LanguageClient, tmp_path: Path):
    """E0209 points at the block's parameter; the fix edits the call its related information names."""
    text = ("block two(x, width: int, hidden: int, scale: int = 2) {\n"
            "    return linear(linear(x, hidden * scale), width)\n}\n"
            "model m(width: int = 8, hidden: int = 16) {\n    input x: f32[B, width]\n"
            "    h = two(x, scale=1)\n    output y = relu(h)\n}\n")
    doc = Doc(client, tmp_path / "two.nnspec", text)
    (d,) = await doc.open()
    assert d.code == "E0209" and d.range.start.line == 0  # at `width: int`
    action, after = await doc.fix(d, "Fill in")
    assert action.title.startswith("Fill in the missing arguments of `two`: width=width, hidden=hidden ")
    assert "h = two(x, scale=1, width=width, hidden=hidden)" in doc.text
    assert after == []
    doc.close()


@served
async def test_missing_arguments_of_an_imported_block(client: LanguageClient, tmp_path: Path):
    Doc(client, tmp_path / "blocks.nnspec", BLOCKS)
    doc = Doc(client, tmp_path / "main.nnspec", 'import "blocks.nnspec"\n'
              + MODEL.replace("residual(x, width)", "residual(\n        x\n    )"))
    (d,) = await doc.open()
    assert d.code == "E0209" and d.range.start.line == 3  # the call: the parameter is in another file
    _, after = await doc.fix(d, "Fill in")
    assert "h = residual(\n        x, width=width\n    )" in doc.text
    assert after == []
    doc.close()


def test_without_related_information_every_call_missing_the_argument_is_offered(tmp_path: Path):
    """A client that takes no related information gets the block error at the parameter only: every
    call of the block in the document that misses it is offered, and a complete call is not."""
    text = ("block two(x, width: int) {\n    return linear(x, width)\n}\n"
            "model m() {\n    input x: f32[B, 4]\n    a = two(x)\n    b = two(x, 3)\n    output y = two(a + b)\n}\n")
    document = TextDocument((tmp_path / "t.nnspec").as_uri(), text)
    from specc.lsp.analysis import Workspace
    analysis = Workspace().analyze(tmp_path / "t.nnspec", text)
    at = lsp.Range(start=lsp.Position(line=0, character=13), end=lsp.Position(line=0, character=23))
    diagnostic = lsp.Diagnostic(range=at, message="parameter `width` of block `two` has no default and no value "
                                "was given\nnote: in block `two`, called here", code="E0209", source="specc")
    fixed = [apply(text, a.edit.changes[document.uri]) for a in actions.argument_fixes(document, diagnostic, analysis)]
    assert [f.split("\n")[5:8] for f in fixed] == [
        ["    a = two(x, width=width)", "    b = two(x, 3)", "    output y = two(a + b)"],
        ["    a = two(x)", "    b = two(x, 3)", "    output y = two(a + b, width=width)"]]
    assert actions.argument_fixes(document, diagnostic, None) == []  # parameters unknown: nothing guessed


# ------------------------------------------------------------------ range formatting
SCRAMBLED = """\
model   m(width:int=8) {
    input x :f32[B,width]
    h=relu( x )
    g  =  relu(h)
    k = relu(  g)
    output y=h+g+k
}
"""


async def range_format(client: LanguageClient, doc: Doc, first: int, last: int, end_char: int = 0) -> list:
    result = await client.text_document_range_formatting_async(lsp.DocumentRangeFormattingParams(
        text_document=lsp.TextDocumentIdentifier(uri=doc.uri),
        range=lsp.Range(start=lsp.Position(line=first, character=0), end=lsp.Position(line=last, character=end_char)),
        options=lsp.FormattingOptions(tab_size=4, insert_spaces=True)))
    return list(result or [])


@served
async def test_range_formatting_edits_only_the_lines_in_range(client: LanguageClient, tmp_path: Path):
    assert client.capabilities.document_range_formatting_provider  # type: ignore[attr-defined]
    doc = Doc(client, tmp_path / "scrambled.nnspec", SCRAMBLED)
    await doc.open()
    old, formatted = SCRAMBLED.split("\n"), format_text(SCRAMBLED).split("\n")
    edits = await range_format(client, doc, 2, 3, end_char=len(old[3]))  # lines 2 and 3, to the end of 3
    assert all(2 <= e.range.start.line and e.range.end.line <= 4 for e in edits)
    result = apply(SCRAMBLED, edits).split("\n")
    assert result[2:4] == formatted[2:4] == ["    h = relu(x)", "    g = relu(h)"]
    assert result[:2] + result[4:] == old[:2] + old[4:]
    edits = await range_format(client, doc, 2, 4)  # ending at column 0 of line 4: line 4 is not in it
    assert apply(SCRAMBLED, edits).split("\n") == old[:2] + formatted[2:4] + old[4:]
    # the whole document as a range is exactly the document formatted
    assert apply(SCRAMBLED, await range_format(client, doc, 0, len(old))) == format_text(SCRAMBLED)
    doc.close()


@served
async def test_range_formatting_keeps_crlf_and_leaves_broken_files_alone(client: LanguageClient, tmp_path: Path):
    text = SCRAMBLED.replace("\n", "\r\n")
    doc = Doc(client, tmp_path / "crlf.nnspec", text)
    await doc.open()
    edits = await range_format(client, doc, 0, 1, end_char=3)
    assert [e.new_text for e in edits] == ["model m(width: int = 8) {\r\n", "    input x: f32[B, width]\r\n"]
    broken = Doc(client, tmp_path / "broken.nnspec", SCRAMBLED.replace("relu( x )", "relu( x "))
    await broken.open()
    assert await range_format(client, broken, 0, 6) == []
    doc.close()
    broken.close()


def test_range_edits_never_reach_outside_the_range():
    """A change that removes or adds lines across the range's edge is left out; inside it, applied."""
    text = "model m() {\n    input x: f32[4]\n\n\n\n    output y = relu( x )\n}\n"
    document = TextDocument("file:///t.nnspec", text)
    formatted = format_text(text)
    assert formatted.count("\n") < text.count("\n")  # the formatter folds the blank lines
    for first in range(text.count("\n")):
        for last in range(first, text.count("\n")):
            selection = lsp.Range(start=lsp.Position(line=first, character=0),
                                  end=lsp.Position(line=last, character=1))
            edits = actions.range_edits(document, formatted, selection)
            for edit in edits:
                assert first <= edit.range.start.line and (edit.range.end.line <= last or (
                    edit.range.end.line == last + 1 and edit.range.end.character == 0))
            result = apply(text, edits).split("\n")
            old = text.split("\n")
            assert result[:first] == old[:first]
            kept = len(old) - last - 1
            assert result[len(result) - kept:] == old[len(old) - kept:]
    whole = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=99, character=0))
    assert apply(text, actions.range_edits(document, formatted, whole)) == formatted
