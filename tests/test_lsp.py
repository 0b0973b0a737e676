"""`specc lsp` end to end: the server in a subprocess, driven by pytest-lsp's client.

Diagnostics must be exactly `specc check`'s (tests/diagnostics/*.expected), for
the editor's unsaved text; then hover, completion, definition, rename, symbols,
semantic tokens and formatting; and the server must survive 1,000 random edits.
The in-process tests at the end check that incremental analysis always agrees
with compiling the file from scratch.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import sys
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from specc import compiler
from specc.diagnostics import SpeccError, render
from specc.fmt import format_text
from specc.lsp import features
from specc.lsp.analysis import Workspace

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))
CASES = sorted((ROOT / "tests" / "diagnostics").glob("*.nnspec"))

served = pytest.mark.asyncio(loop_scope="module")  # the async tests share one server


def make_client() -> LanguageClient:
    """pytest-lsp's client, also keeping every publishDiagnostics in order (with its version)."""
    def record(ls: LanguageClient, params: lsp.PublishDiagnosticsParams) -> None:
        ls.diagnostics[params.uri] = params.diagnostics
        ls.published.append(params)  # type: ignore[attr-defined]

    def register(ls: LanguageClient, params: lsp.RegistrationParams) -> None:
        ls.registrations.extend(params.registrations)  # type: ignore[attr-defined]

    client = LanguageClient(converter_factory=default_converter)
    client.published = []  # type: ignore[attr-defined]
    client.registrations = []  # type: ignore[attr-defined]
    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: record,
                                   lsp.CLIENT_REGISTER_CAPABILITY: register})
    return client


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=[sys.executable, "-m", "specc.cli", "lsp"], client_factory=make_client))
async def client(lsp_client: LanguageClient):
    """`specc lsp` as VS Code starts it, one server per test module (the other LSP test files import this
    fixture); the server's capabilities are kept on the client for the tests that check them."""
    result = await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=ROOT.as_uri()))
    lsp_client.capabilities = result.capabilities  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


# ------------------------------------------------------------------ helpers
VERSIONS = itertools.count(1)  # every opening and every edit, of any document, takes the next one


class Doc:
    """An open document: its uri, text and version, kept in step with the server.

    Versions are never reused, also across openings of the same file: diagnostics the server still
    publishes for an earlier opening (a re-check of it that started before it was closed) are then
    never taken for this opening's."""

    def __init__(self, client: LanguageClient, path: Path, text: str | None = None) -> None:
        self.client, self.path, self.uri = client, path, path.as_uri()
        self.text = path.read_text() if text is None else text
        self.version = next(VERSIONS)
        self.seen = len(client.published)  # type: ignore[attr-defined]

    async def open(self) -> list[lsp.Diagnostic]:
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(text_document=lsp.TextDocumentItem(
            uri=self.uri, language_id="nnspec", version=self.version, text=self.text)))
        return await self.diagnostics()

    async def change(self, text: str) -> list[lsp.Diagnostic]:
        self.text, self.version = text, next(VERSIONS)
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))
        return await self.diagnostics()

    async def diagnostics(self, version: int | None = None) -> list[lsp.Diagnostic]:
        """The next diagnostics published for this document's version (or `version`)."""
        want = self.version if version is None else version
        published = self.client.published  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for i in range(self.seen, len(published)):
                if published[i].uri == self.uri and published[i].version == want:
                    self.seen = i + 1
                    return list(published[i].diagnostics)
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no diagnostics for {self.uri} version {want}")

    def close(self) -> None:
        self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(
            text_document=lsp.TextDocumentIdentifier(uri=self.uri)))

    def at(self, needle: str, offset: int = 0, nth: int = 0) -> lsp.Position:
        """The position of the nth `needle` (plus `offset` characters) in the text."""
        index = -1
        for _ in range(nth + 1):
            index = self.text.index(needle, index + 1)
        index += offset
        line = self.text.count("\n", 0, index)
        return lsp.Position(line=line, character=index - (self.text.rfind("\n", 0, index) + 1))

    def ident(self) -> lsp.TextDocumentIdentifier:
        return lsp.TextDocumentIdentifier(uri=self.uri)

    async def hover(self, needle: str, offset: int = 0, nth: int = 0) -> str:
        result = await self.client.text_document_hover_async(
            lsp.HoverParams(text_document=self.ident(), position=self.at(needle, offset, nth)))
        return result.contents.value if result is not None else ""

    async def complete(self, position: lsp.Position) -> dict[str, lsp.CompletionItem]:
        result = await self.client.text_document_completion_async(
            lsp.CompletionParams(text_document=self.ident(), position=position))
        items = result.items if isinstance(result, lsp.CompletionList) else result or []
        return {i.label: i for i in items}

    async def definition(self, needle: str, offset: int = 0, nth: int = 0) -> list[lsp.Location]:
        result = await self.client.text_document_definition_async(
            lsp.DefinitionParams(text_document=self.ident(), position=self.at(needle, offset, nth)))
        return list(result or [])

    def text_at(self, r: lsp.Range) -> str:
        line = self.text.split("\n")[r.start.line]
        return line[r.start.character:r.end.character]


class DiskDoc(Doc):
    """A document whose text is also written to its path first (for imports and fixes that read disk)."""

    def __init__(self, client: LanguageClient, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + ".part")  # replaced whole: the server never reads half a file
        staged.write_bytes(text.encode())
        staged.replace(path)
        super().__init__(client, path, text)


def expected(case: Path) -> tuple[int, int, str, str]:
    """(line, col, code, message) of the first diagnostic `specc check` prints for a case (0-based)."""
    first = case.with_suffix(".expected").read_text().splitlines()[0]
    m = re.match(r"[^:]+:(\d+):(\d+): error\[(E\d+)\]: (.*)", first)
    assert m, first
    return int(m[1]) - 1, int(m[2]) - 1, m[3], m[4]


# ------------------------------------------------------------------ diagnostics
@served
async def test_diagnostics_are_the_clis(client: LanguageClient):
    for case in CASES:
        doc = Doc(client, case)
        diagnostics = await doc.open()
        line, col, code, message = expected(case)
        assert diagnostics, case.name
        first = diagnostics[0]
        assert (first.range.start.line, first.range.start.character) == (line, col), case.name
        assert first.code == code and first.message.splitlines()[0] == message, case.name
        assert first.severity == lsp.DiagnosticSeverity.Error and first.source == "specc"
        doc.close()


@served
async def test_notes_become_related_information(client: LanguageClient):
    doc = Doc(client, ROOT / "tests" / "diagnostics" / "error_inside_block.nnspec")
    (diagnostic,) = await doc.open()
    assert doc.text_at(diagnostic.range) == "x + linear(x, w)"
    (note,) = diagnostic.related_information
    assert note.message == "in block `r`, called here" and doc.text_at(note.location.range) == "r(x, 5)"
    doc.close()


@served
async def test_specs_have_no_diagnostics(client: LanguageClient):
    for spec in SPECS:
        if spec.stem == "mlp_int4":  # not ours to judge; see test_analysis_agrees_with_the_compiler
            continue
        doc = Doc(client, spec)
        assert await doc.open() == [], spec.name
        doc.close()


@served
async def test_the_unsaved_buffer_is_checked(client: LanguageClient, tmp_path: Path):
    path = tmp_path / "m.nnspec"
    path.write_text("model m() {\n    input x: f32[B, 4]\n    output y = relu(x)\n}\n")
    doc = Doc(client, path)
    assert await doc.open() == []
    (d,) = await doc.change(doc.text.replace("relu(x)", "relu(xx)"))
    assert d.code == "E0202" and doc.text_at(d.range) == "xx"
    assert d.message == "undefined name `xx`\nhelp: did you mean `x`?"
    assert await doc.change(doc.text.replace("relu(xx)", "relu(x)")) == []
    doc.close()


@served
async def test_every_model_is_checked(client: LanguageClient, tmp_path: Path):
    text = ("model a() {\n    input x: f32[B, 4]\n    output y = relu(q)\n}\n\n"
            "model b() {\n    input x: f32[B, 4]\n    output y = linear(x, 0)\n}\n\n"
            "model c() {\n    input x: f32[B, 4]\n    output y = relu(x)\n}\n")
    doc = Doc(client, tmp_path / "three.nnspec", text)
    diagnostics = await doc.open()
    assert [(d.code, d.range.start.line) for d in diagnostics] == [("E0202", 2), ("E0302", 7)]
    doc.close()


@served
async def test_imports_resolve_next_to_the_document_and_use_open_buffers(client: LanguageClient, tmp_path: Path):
    (tmp_path / "lib.nnspec").write_text("block widen(x, n: int) {\n    return linear(x, n)\n}\n")
    main = Doc(client, tmp_path / "main.nnspec",
               'import "lib.nnspec"\n\nmodel m() {\n    input x: f32[B, 4]\n    output y = widen(x, 8) + x\n}\n')
    (d,) = await main.open()  # f32[B, 8] + f32[B, 4]
    assert d.code == "E0402" and main.text_at(d.range) == "widen(x, 8) + x"

    lib = Doc(client, tmp_path / "lib.nnspec")
    assert await lib.open() == []
    await main.diagnostics(main.version)  # opening lib re-checks main
    await lib.change("block widen(x, n: int) {\n    return linear(x, n) + y\n}\n")  # unsaved, broken
    (d,) = await main.diagnostics(main.version)
    assert d.code == "E0202" and main.text_at(d.range) == "widen(x, 8)"  # where main calls into lib
    assert any(info.location.uri == lib.uri for info in d.related_information)
    await lib.change("block widen(x, n: int) {\n    return linear(x, 4)\n}\n")
    assert await main.diagnostics(main.version) == []
    lib.close()
    main.close()


@served
async def test_an_import_changed_on_disk_rechecks_its_importers(client: LanguageClient, tmp_path: Path):
    """The server registers a watcher for .nnspec files; when the editor reports one changed on disk,
    the open documents that import it get fresh diagnostics (not stale ones until their next edit)."""
    deadline = time.monotonic() + 30  # the server registers the watcher once initialized, asynchronously
    while not client.registrations and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    (watch,) = [r for r in client.registrations if r.method == lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES]
    assert [w["globPattern"] for w in watch.register_options["watchers"]] == ["**/*.nnspec"]
    lib = tmp_path / "lib.nnspec"
    lib.write_text("block widen(x, n: int) {\n    return linear(x, n)\n}\n")
    main = Doc(client, tmp_path / "main.nnspec",
               'import "lib.nnspec"\n\nmodel m() {\n    input x: f32[B, 4]\n    output y = widen(x, 4) + x\n}\n')
    assert await main.open() == []
    lib.write_text("block widen(x, n: int) {\n    return linear(x, 2 * n)\n}\n")  # another program saves it
    client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(
        changes=[lsp.FileEvent(uri=lib.as_uri(), type=lsp.FileChangeType.Changed)]))
    (d,) = await main.diagnostics(main.version)
    assert d.code == "E0402"  # f32[B, 8] + f32[B, 4]
    main.close()


@served
async def test_did_you_mean_is_a_quick_fix(client: LanguageClient, tmp_path: Path):
    """An error that suggests a name offers a code action writing it in place of the misspelled one."""
    doc = Doc(client, tmp_path / "typo.nnspec", "model m() {\n    input x: f32[B, 4]\n    output y = relux(x)\n}\n")
    (d,) = await doc.open()
    assert d.code == "E0201"
    (action,) = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=doc.ident(), range=d.range, context=lsp.CodeActionContext(diagnostics=[d])))
    assert action.kind == lsp.CodeActionKind.QuickFix and "relu" in action.title
    (edit,) = action.edit.changes[doc.uri]
    assert doc.text_at(edit.range) == "relux" and edit.new_text == "relu"
    doc.close()


# ------------------------------------------------------------------ hover
@served
async def test_hover(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "mlp.nnspec")
    await doc.open()
    text = await doc.hover("h = relu")
    assert "h: f32[B, 256]" in text and "200,960 parameters" in text  # 784 * 256 + 256
    assert "logits: f32[B, 10]" in await doc.hover("logits")
    assert "x: f32[B, 784]" in await doc.hover("x: f32")
    text = await doc.hover("linear(x", 2)
    assert "linear(x, out_features, bias=True)" in text and "torch.nn.Linear" in text
    assert "f32[B, 256]" in text and "200,960 parameters" in text
    assert "p: float = 0.5" in await doc.hover("p=0.1")
    assert "hidden: int = 256" in await doc.hover("hidden", nth=1) and "256" in await doc.hover("hidden", nth=1)
    text = await doc.hover("mlp(")
    assert "model mlp(" in text and "203,530 parameters" in text  # 200,960 + 2,570
    assert "symbolic dim" in await doc.hover("B,")
    doc.close()


@served
async def test_hover_on_blocks_shows_each_instance(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    text = await doc.hover("shortcut =")
    assert "f32[B, 32, 16, 16]" in text and "f32[B, 64, 8, 8]" in text
    text = await doc.hover("basic(h, 2")
    assert "block basic(x, out_ch: int, stride: int = 1)" in text and "f32[B, 32, 16, 16]" in text
    doc.close()


@served
async def test_hover_on_unpacking_and_compression(client: LanguageClient, tmp_path: Path):
    (tmp_path / "mlp.nnspec").write_text((ROOT / "specs" / "mlp.nnspec").read_text())
    doc = Doc(client, tmp_path / "u.nnspec",
              'import "mlp.nnspec"\n\ncompress small = mlp {\n    lowrank(rank=32) on linear\n}\n\n'
              'model m() {\n    input x: f32[B, 6]\n    a, b = split(x, [2, 4])\n    output y = concat([b, a])\n}\n')
    assert await doc.open() == []
    assert "a: f32[B, 2]" in await doc.hover("a, b")
    assert "b: f32[B, 4]" in await doc.hover("b = split")
    text = await doc.hover("lowrank")
    assert "lowrank(rank" in text and "rewrites: linear" in text
    assert "model mlp(" in await doc.hover("mlp {")
    items = await doc.complete(doc.at("rank=32"))
    assert "rank=" in items
    items = await doc.complete(doc.at("linear\n"))
    assert {"lowrank", "linear", "where", "except"} <= set(items)
    doc.close()


# ------------------------------------------------------------------ completion
@served
async def test_completion(client: LanguageClient, tmp_path: Path):
    text = ("block res(x, width: int) {\n    return x + linear(x, width)\n}\n\n"
            "model m(hidden: int = 8) {\n    input x: f32[B, 4]\n    h = relu(x)\n    y = linear(h, \n"
            "    z = relu(y)\n    r = res(z, 4)\n    output r\n}\n")
    doc = Doc(client, tmp_path / "c.nnspec", text)
    await doc.open()
    items = await doc.complete(doc.at("linear(h, ", 10))  # inside a call, after a comma
    assert "out_features=" in items and "bias=" in items and "scalar=" not in items
    assert items["relu"].detail == "relu(x)" and items["dropout"].detail == "dropout(x, p=0.5)"
    assert {"x", "h", "hidden"} <= set(items) and "z" not in items  # names declared above the cursor
    assert "res" in items and items["res"].detail == "block res(x, width: int)"
    items = await doc.complete(doc.at("relu(y)", 5))
    assert "x=" in items and "y" in items and "z" not in items
    items = await doc.complete(doc.at("res(z, ", 7))
    assert "width=" in items and "x=" not in items  # a block's parameters, but not x, given by position
    items = await doc.complete(doc.at("f32", 0))  # after `input x: `
    assert {"f32", "bf16", "i64"} <= set(items)
    items = await doc.complete(lsp.Position(line=3, character=0))  # between definitions
    assert {"model", "block", "import", "compress"} <= set(items)
    doc.close()


# ------------------------------------------------------------------ definition
@served
async def test_definition(client: LanguageClient, tmp_path: Path):
    (tmp_path / "lib.nnspec").write_text("block widen(x, n: int) {\n    return linear(x, n)\n}\n")
    doc = Doc(client, tmp_path / "d.nnspec",
              'import "lib.nnspec"\n\nmodel m() {\n    input x: f32[B, 4]\n    h = relu(x)\n    h = relu(h)\n'
              '    output y = widen(h, n=8)\n}\n')
    await doc.open()
    (loc,) = await doc.definition("relu(h)", 5)
    assert loc.uri == doc.uri and loc.range.start == doc.at("h = relu(x)")  # the earlier h
    (loc,) = await doc.definition("widen(")
    assert loc.uri == (tmp_path / "lib.nnspec").as_uri() and loc.range.start == lsp.Position(line=0, character=6)
    (loc,) = await doc.definition("n=8")
    assert loc.uri == (tmp_path / "lib.nnspec").as_uri() and loc.range.start == lsp.Position(line=0, character=15)
    (loc,) = await doc.definition('"lib.nnspec"', 3)
    assert loc.uri == (tmp_path / "lib.nnspec").as_uri()
    (loc,) = await doc.definition("relu(x)", 5)
    assert loc.range.start == doc.at("x: f32")
    assert await doc.definition("relu(x)") == []  # an op has no source
    doc.close()


# ------------------------------------------------------------------ rename, symbols, tokens
@served
async def test_rename(client: LanguageClient, tmp_path: Path):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    edit = await client.text_document_rename_async(lsp.RenameParams(
        text_document=doc.ident(), position=doc.at("basic("), new_name="plain"))
    edits = edit.changes[doc.uri]
    assert len(edits) == 4 and all(doc.text_at(e.range) == "basic" for e in edits)
    edit = await client.text_document_rename_async(lsp.RenameParams(
        text_document=doc.ident(), position=doc.at("stride", nth=1), new_name="step"))
    # the parameter, its 3 uses and the 2 keyword arguments that set it (not conv2d's own `stride=`)
    assert len(edit.changes[doc.uri]) == 6
    with pytest.raises(Exception):
        await client.text_document_rename_async(lsp.RenameParams(
            text_document=doc.ident(), position=doc.at("basic("), new_name="model"))
    assert await client.text_document_rename_async(lsp.RenameParams(
        text_document=doc.ident(), position=doc.at("relu("), new_name="other")) is None
    doc.close()


@served
async def test_document_symbols(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(text_document=doc.ident()))
    assert [(s.name, s.kind) for s in symbols] == [("basic", lsp.SymbolKind.Function), ("resnet", lsp.SymbolKind.Class)]
    children = {c.name: c for c in symbols[1].children}
    assert children["image"].detail == "input f32[B, 3, 32, 32]" and children["logits"].detail == "output f32[B, 10]"
    doc.close()


@served
async def test_semantic_tokens(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    result = await client.text_document_semantic_tokens_full_async(lsp.SemanticTokensParams(text_document=doc.ident()))
    line = col = 0
    found: dict[tuple[int, int], tuple[str, str]] = {}
    lines = doc.text.split("\n")
    data = result.data
    for i in range(0, len(data), 5):
        line += data[i]
        col = col + data[i + 1] if data[i] == 0 else data[i + 1]
        found[(line, col)] = (lines[line][col:col + data[i + 2]], features.TOKEN_TYPES[data[i + 3]])
    kinds = set(found.values())
    assert {("block", "keyword"), ("model", "keyword"), ("relu", "function"), ("basic", "function"),
            ("stride", "parameter"), ("h", "variable"), ("B", "typeParameter"), ("f32", "type"), ("3", "number"),
            ("resnet", "class"), ("padding", "property"), ("+", "operator")} <= kinds
    assert any(kind == "comment" and text.startswith("// A small ResNet") for text, kind in kinds)
    doc.close()


@served
async def test_formatting(client: LanguageClient, tmp_path: Path):
    messy = "model m( ) {\n  input x:f32[B,4]\n      output y=relu( x )   // keep me\n}\n"
    doc = Doc(client, tmp_path / "f.nnspec", messy)
    await doc.open()
    options = lsp.FormattingOptions(tab_size=4, insert_spaces=True)
    (edit,) = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        text_document=doc.ident(), options=options))
    assert edit.new_text == format_text(messy) and edit.range.start == lsp.Position(line=0, character=0)
    assert "    output y = relu(x)  // keep me\n" in edit.new_text  # two spaces before a trailing comment, as the CLI
    await doc.change(edit.new_text)
    assert not await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        text_document=doc.ident(), options=options))
    await doc.change("model m( {\n")
    assert not await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        text_document=doc.ident(), options=options))  # a syntax error: nothing to format
    doc.close()


# ------------------------------------------------------------------ robustness
JUNK = ["(", ")", "{", "}", "[", "]", "\n", ",", "=", " = ", ":", '"', "//", "#", "é", "😀", "1e", "2:4", "...",
        "\t", "model x() {\n", "block b(x) {\n    return x\n}\n", "relu(", "input", "output y = x\n", "repeat 2 {",
        "\nmodel ", 'import "mlp.nnspec"\n', "}\n\nmodel m() {\n", "linear(x, ", "-", "_", "@", "\\"]


def _position(text: str, offset: int) -> lsp.Position:
    start = text.rfind("\n", 0, offset) + 1
    return lsp.Position(line=text.count("\n", 0, offset), character=len(text[start:offset].encode("utf-16-le")) // 2)


def random_edit(rng: random.Random, text: str) -> tuple[int, int, str]:
    """(start, end, new text): a truncation, a deletion, junk, or a whole spec pasted in."""
    roll = rng.random()
    i = rng.randrange(len(text) + 1)
    if roll < 0.05 or not text:
        return 0, len(text), rng.choice(SPECS).read_text()
    if roll < 0.2:
        return i, len(text), ""
    if roll < 0.5:
        return i, min(len(text), i + rng.randrange(1, 40)), ""
    return i, i, "".join(rng.choice(JUNK) for _ in range(rng.randrange(1, 4)))


@served
async def test_survives_a_thousand_random_edits(client: LanguageClient, tmp_path: Path):
    rng = random.Random(7)
    for spec in SPECS:
        (tmp_path / spec.name).write_text(spec.read_text())
    doc = Doc(client, tmp_path / "fuzz.nnspec", (ROOT / "specs" / "resnet.nnspec").read_text())
    await doc.open()
    started = time.monotonic()
    for n in range(1000):
        start, end, new = random_edit(rng, doc.text)
        change = lsp.TextDocumentContentChangePartial(
            range=lsp.Range(start=_position(doc.text, start), end=_position(doc.text, end)), text=new)
        doc.text, doc.version = doc.text[:start] + new + doc.text[end:], next(VERSIONS)
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
            content_changes=[change]))
        if n % 20 == 0:  # every feature, somewhere in the wreck (positions may be past the end)
            where = lsp.Position(line=rng.randrange(30), character=rng.randrange(60))
            ident = doc.ident()
            await client.text_document_hover_async(lsp.HoverParams(text_document=ident, position=where))
            await client.text_document_completion_async(lsp.CompletionParams(text_document=ident, position=where))
            await client.text_document_definition_async(lsp.DefinitionParams(text_document=ident, position=where))
            await client.text_document_semantic_tokens_full_async(lsp.SemanticTokensParams(text_document=ident))
            await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(text_document=ident))
            await client.text_document_formatting_async(lsp.DocumentFormattingParams(
                text_document=ident, options=lsp.FormattingOptions(tab_size=4, insert_spaces=True)))
    diagnostics = await doc.diagnostics()
    assert time.monotonic() - started < 120
    # still alive, in step with the client, and reporting what the compiler reports for the final text
    analysis = Workspace().analyze(doc.path, doc.text)
    assert [d.code for d in diagnostics] == [e.code if isinstance(e, SpeccError) else "internal"
                                             for e in analysis.errors]
    assert client.error is None
    failures = [m.message for m in client.log_messages if "failed" in m.message]
    assert failures == [], failures[0]  # no handler had to swallow an exception
    doc.close()


# ------------------------------------------------------------------ in process
def check_from_scratch(path: Path) -> list[str]:
    """What `specc check` reports for each model of a file (it stops at the first; this goes on)."""
    try:
        targets = compiler.compilable(compiler.load(path))
    except SpeccError as err:
        return [render(err)]
    out: list[str] = []
    for target in targets:
        try:
            compiler.compile_graph(path, target.name)
        except SpeccError as err:
            out.append(render(err))
        except Exception as exc:
            out.append(f"internal {type(exc).__name__}")
    return list(dict.fromkeys(out))


def test_analysis_agrees_with_the_compiler(tmp_path: Path):
    """Incremental analysis (chunks, caches) reports what compiling the file from scratch reports."""
    rng = random.Random(11)
    for spec in SPECS:
        (tmp_path / spec.name).write_text(spec.read_text())
    path = tmp_path / "doc.nnspec"
    workspace = Workspace()
    text = (ROOT / "specs" / "resnet.nnspec").read_text() + "\n" + (ROOT / "specs" / "ffn.nnspec").read_text()
    for _ in range(250):
        start, end, new = random_edit(rng, text)
        text = text[:start] + new + text[end:]
        path.write_text(text)
        got = [render(e) if isinstance(e, SpeccError) else f"internal {type(e).__name__}"
               for e in workspace.analyze(path, text).errors]
        assert got == check_from_scratch(path), text


def test_first_diagnostic_is_the_clis_snapshot():
    workspace = Workspace()
    for case in CASES:
        analysis = workspace.analyze(case, case.read_text())
        shown = render(analysis.errors[0]).replace(str(case.parent) + "/", "") + "\n"
        assert shown == case.with_suffix(".expected").read_text(), case.name


def test_features_never_raise_on_broken_text(tmp_path: Path):
    """Every feature, at random places of randomly broken specs, answers without an exception."""
    rng = random.Random(5)
    workspace = Workspace()
    path = tmp_path / "broken.nnspec"
    text = (ROOT / "specs" / "resnet.nnspec").read_text()
    for _ in range(300):
        start, end, new = random_edit(rng, text)
        text = text[:start] + new + text[end:]
        analysis = workspace.analyze(path, text)
        pos = features.Positions(analysis, path.as_uri(), lambda s: len(s.encode("utf-16-le")) // 2)
        features.semantic_tokens(analysis, pos)
        features.document_symbols(analysis, pos)
        for _ in range(3):
            line, col = pos.from_client(lsp.Position(line=rng.randrange(40), character=rng.randrange(80)))
            features.hover(analysis, pos, line, col)
            features.completion(analysis, pos, line, col)
            features.definition(analysis, pos, line, col)
            features.prepare_rename(analysis, pos, line, col)
            features.rename(analysis, pos, line, col, "renamed")
