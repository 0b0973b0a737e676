"""`specc lsp` navigation features end to end, through pytest-lsp's client as in tests/test_lsp.py:
inlay hints with inferred types, references, document highlights, code lenses with reference counts
(across an open importer), signature help, folding ranges and workspace symbols. The in-process test at
the end checks that none of them raises on any truncation of a spec.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from test_lsp import DiskDoc, client  # noqa: F401  (the fixture: one server per module)
from specc.lsp import navigation
from specc.lsp.analysis import Workspace
from specc.lsp.features import Positions

ROOT = Path(__file__).resolve().parent.parent
served = pytest.mark.asyncio(loop_scope="module")  # the async tests share one server

LIB = """\
// blocks used by main.nnspec
block proj(x, n: int) {
    y = linear(x, n)
    return relu(y)
}

block same(x) {
    z = relu(x)
    return z
}
"""

MAIN = """\
import "lib.nnspec"

model m(d: int = 8) {
    input x: f32[B, d]
    a = proj(x, 16)
    b = proj(a, n=4)
    c = same(a) as s1
    e = same(c)
    f = repeat 3 { same(_) } (e)
    v, i = topk(f, 2)
    output out = linear(concat([b, v, gather(f, -1, i)], dim=-1),
        2)
}
"""


class Doc(DiskDoc):
    """An open document kept in step with the server, its text also on disk."""

    def line_of(self, needle: str) -> int:
        return self.at(needle).line


def spots(locations: list, doc: Doc) -> list[tuple[str, int, str]]:
    """(file name, line, the word there) of each location or highlight, sorted."""
    out = []
    for loc in locations:
        uri = getattr(loc, "uri", doc.uri)
        text = Path(uri.removeprefix("file://")).read_text() if uri != doc.uri else doc.text
        r = loc.range
        out.append((uri.rsplit("/", 1)[-1], r.start.line, text.split("\n")[r.start.line][r.start.character:r.end.character]))
    return sorted(out)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nav")


async def open_project(client: LanguageClient, project: Path) -> tuple[Doc, Doc]:
    lib, main = Doc(client, project / "lib.nnspec", LIB), Doc(client, project / "main.nnspec", MAIN)
    assert await lib.open() == []
    assert await main.open() == []
    return lib, main


# ------------------------------------------------------------------ tests
@served
async def test_capabilities_are_advertised(client: LanguageClient):
    caps = client.capabilities  # type: ignore[attr-defined]
    assert caps.inlay_hint_provider and caps.references_provider and caps.document_highlight_provider
    assert caps.code_lens_provider is not None and caps.folding_range_provider and caps.workspace_symbol_provider
    assert set(caps.signature_help_provider.trigger_characters) == {"(", ","}


@served
async def test_inlay_hints_show_inferred_types(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)
    whole = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=100, character=0))
    hints = await client.text_document_inlay_hint_async(lsp.InlayHintParams(text_document=main.ident(), range=whole))
    lines = main.text.split("\n")
    shown = [lines[h.position.line][:h.position.character].strip() + h.label for h in hints]
    assert shown == ["a: f32[B, 16]", "b: f32[B, 4]", "c: f32[B, 16]", "e: f32[B, 16]", "f: f32[B, 16]",
                     "v: f32[B, 2]", "v, i: i64[B, 2]", "output out: f32[B, 2]"]
    assert all(h.kind == lsp.InlayHintKind.Type for h in hints)

    # lib.nnspec has no model of its own: it shows the types the open importer's model gives its values.
    # `z` is f32[B, 16] in every call (two calls and a repeat of three); `y` is f32[B, 16] in one call and
    # f32[B, 4] in the other, so it gets no hint
    hints = await client.text_document_inlay_hint_async(lsp.InlayHintParams(text_document=lib.ident(), range=whole))
    lib_lines = lib.text.split("\n")
    assert [lib_lines[h.position.line][:h.position.character].strip() + h.label for h in hints] == ["z: f32[B, 16]"]
    main.close()  # no importer open: nothing typed lib's values
    await asyncio.sleep(0.05)
    hints = await client.text_document_inlay_hint_async(lsp.InlayHintParams(text_document=lib.ident(), range=whole))
    assert not hints
    main = Doc(client, main.path, MAIN)
    assert await main.open() == []

    # only the requested lines
    part = lsp.Range(start=main.at("b = proj"), end=main.at("e = same"))
    hints = await client.text_document_inlay_hint_async(lsp.InlayHintParams(text_document=main.ident(), range=part))
    assert [h.position.line for h in hints] == [main.line_of("b = proj"), main.line_of("c = same"),
                                                main.line_of("e = same")]
    lib.close()
    main.close()


@served
async def test_inlay_hints_in_blocks_join_equal_types_only(client: LanguageClient, project: Path):
    text = LIB.replace("// blocks used by main.nnspec\n", "") + MAIN.split("\n", 1)[1]
    doc = Doc(client, project / "one.nnspec", text)
    assert await doc.open() == []
    whole = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=100, character=0))
    hints = await client.text_document_inlay_hint_async(lsp.InlayHintParams(text_document=doc.ident(), range=whole))
    lines = doc.text.split("\n")
    block_hints = [lines[h.position.line][:h.position.character].strip() + h.label for h in hints
                   if h.position.line < doc.line_of("model m")]
    assert block_hints == ["z: f32[B, 16]"]  # `y` differs between proj's two calls: no hint
    doc.close()


@served
async def test_references_and_highlights(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)

    async def refs(doc: Doc, position: lsp.Position, declaration: bool = True) -> list[tuple[str, int, str]]:
        found = await client.text_document_references_async(lsp.ReferenceParams(
            text_document=doc.ident(), position=position,
            context=lsp.ReferenceContext(include_declaration=declaration)))
        return spots(found, doc)

    # a block, from its declaration in the imported file: the calls in the open importer
    calls = [("lib.nnspec", 1, "proj"), ("main.nnspec", 4, "proj"), ("main.nnspec", 5, "proj")]
    assert await refs(lib, lib.at("proj")) == calls
    assert await refs(main, main.at("proj", nth=1)) == calls
    assert await refs(main, main.at("proj"), declaration=False) == calls[1:]
    # a parameter: its declaration, its use and the keyword argument that sets it
    assert await refs(lib, lib.at("n: int")) == [("lib.nnspec", 1, "n"), ("lib.nnspec", 2, "n"),
                                                 ("main.nnspec", 5, "n")]
    # a value, reassigned nowhere: its declaration and its uses
    assert await refs(main, main.at("a = proj")) == [("main.nnspec", 4, "a"), ("main.nnspec", 5, "a"),
                                                     ("main.nnspec", 6, "a")]
    # ops and types have no references
    assert await refs(main, main.at("linear")) == []
    assert await refs(main, main.at("f32")) == []

    highlights = await client.text_document_document_highlight_async(lsp.DocumentHighlightParams(
        text_document=main.ident(), position=main.at("f = repeat")))
    kinds = sorted((h.range.start.line, h.kind) for h in highlights)
    assert kinds == [(main.line_of("f = repeat"), lsp.DocumentHighlightKind.Write),
                     (main.line_of("topk(f"), lsp.DocumentHighlightKind.Read),
                     (main.line_of("gather(f"), lsp.DocumentHighlightKind.Read)]
    lib.close()
    main.close()


@served
async def test_code_lenses_count_references(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)
    want = {"block proj": "2 references", "block same": "3 references"}
    deadline = time.monotonic() + 10  # the importer's references count once its analysis is in (a re-check
    while True:                       # of an importer opened earlier may still be on its way)
        lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(text_document=lib.ident()))
        titles = {lib.text.split("\n")[c.range.start.line].split("(")[0]: c.command.title for c in lenses}
        if titles == want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert titles == want
    proj = next(c for c in lenses if c.range.start.line == 1)
    assert proj.command.command == navigation.SHOW_REFERENCES
    assert proj.command.arguments[0] == lib.uri and len(proj.command.arguments[2]) == 2

    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(text_document=main.ident()))
    assert [c.command.title for c in lenses] == ["0 references"]
    main.close()  # the importer's calls are not counted once it is closed
    await asyncio.sleep(0.05)
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(text_document=lib.ident()))
    assert [c.command.title for c in lenses] == ["0 references", "0 references"]
    lib.close()


@served
async def test_signature_help(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)

    async def active(text: str) -> tuple[str, str | None]:
        """(signature, active parameter) with the cursor at the end of `text`, typed into the model."""
        edited = main.text.replace("    output out", text + "\n    output out")
        await main.change(edited)
        at = main.at(text, len(text))
        help = await client.text_document_signature_help_async(lsp.SignatureHelpParams(
            text_document=main.ident(), position=at))
        if help is None:
            return "", None
        signature = help.signatures[help.active_signature or 0]
        params = signature.parameters or []
        k = help.active_parameter
        name = signature.label[params[k].label[0]:params[k].label[1]] if k is not None and k < len(params) else None
        return signature.label, name

    assert await active("    g = linear(x, ") == ("linear(x, out_features, bias=True)", "out_features")
    assert await active("    g = linear(x, 3, bias=") == ("linear(x, out_features, bias=True)", "bias=True")
    assert await active("    g = dropout(h, p") == ("dropout(x, p=0.5)", "p=0.5")  # `p` alone: the 2nd argument
    assert await active("    g = linear(relu(x), ") == ("linear(x, out_features, bias=True)", "out_features")
    label, name = await active("    g = relu(linear(")
    assert (label, name) == ("linear(x, out_features, bias=True)", "x")
    assert await active("    g = concat([a, b], ") == ("concat([xs, ...], dim=-1)", "dim=-1")
    assert await active("    g = concat([a, ") == ("", None)  # inside the list: no argument of concat's
    assert await active("    g = proj(a, n=") == ("block proj(x, n: int)", "n: int")
    assert await active("    g = proj(a, n=3, ") == ("block proj(x, n: int)", None)  # nothing left to bind
    assert await active("    g = nosuch(a, ") == ("", None)
    lib.close()
    main.close()


@served
async def test_folding_ranges(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)
    text = "// one\n// two\n" + MAIN.replace("model m(d: int = 8) {", "model m(\n    d: int = 8) {")
    await main.change(text)
    folds = await client.text_document_folding_range_async(lsp.FoldingRangeParams(text_document=main.ident()))
    got = [(f.start_line, f.end_line, f.kind) for f in folds]
    model = main.line_of("model m")
    assert got == [(0, 1, lsp.FoldingRangeKind.Comment),
                   (model, main.line_of("output out") + 1, lsp.FoldingRangeKind.Region),  # the header with it
                   (main.line_of("output out"), main.line_of("output out") + 1, lsp.FoldingRangeKind.Region)]
    # a document that does not parse still folds
    await main.change(text.replace("2)\n}", "2\n}"))
    folds = await client.text_document_folding_range_async(lsp.FoldingRangeParams(text_document=main.ident()))
    assert (model, main.line_of("output out") + 1) in [(f.start_line, f.end_line) for f in folds]
    lib.close()
    main.close()


@served
async def test_workspace_symbols(client: LanguageClient, project: Path):
    lib, main = await open_project(client, project)
    lib.close()  # lib.nnspec is still found: main imports it

    async def query(q: str) -> list[tuple[str, str, str]]:
        found = await client.workspace_symbol_async(lsp.WorkspaceSymbolParams(query=q))
        return sorted((s.name, s.container_name, s.location.uri.rsplit("/", 1)[-1]) for s in found)

    assert await query("") == [("m", "model", "main.nnspec"), ("proj", "block", "lib.nnspec"),
                               ("same", "block", "lib.nnspec")]
    assert await query("PRJ") == [("proj", "block", "lib.nnspec")]
    assert await query("zz") == []
    main.close()


# ------------------------------------------------------------------ in process
def test_features_never_raise_on_truncated_text(tmp_path: Path):
    """Every navigation feature answers at every line of every truncation of a spec."""
    (tmp_path / "lib.nnspec").write_text(LIB)
    path = tmp_path / "main.nnspec"
    workspace = Workspace()
    lines = MAIN.split("\n")
    for cut in range(len(lines) + 1):
        text = "\n".join(lines[:cut]) + ("\n    h = linear(x, " if cut % 2 else "")
        analysis = workspace.analyze(path, text)
        pos = Positions(analysis, path.as_uri(), len)
        navigation.inlay_hints(analysis, pos)
        navigation.folding_ranges(analysis)
        navigation.code_lenses(analysis, pos)
        navigation.workspace_symbols([(analysis, pos)], "m")
        for line, content in enumerate(text.split("\n")):
            for col in range(0, len(content) + 1, 3):
                navigation.references(analysis, pos, line, col)
                navigation.document_highlights(analysis, pos, line, col)
                navigation.signature_help(analysis, pos, line, col)
