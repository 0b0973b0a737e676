"""Rename that cannot change what a spec means, and hover, completion and unopened documents
answering usefully (issue 13, "wrong or unsafe behavior"), driven as tests/test_lsp.py drives
`specc lsp`: the server in a subprocess, pytest-lsp's client.

A rename to a name already bound in the definition (`shortcut` -> `h` in resnet drops most of its
parameters and still compiles), to an op (`basic` -> `relu`), to another definition, a keyword or a
non-identifier is refused with a message; a rename of a block updates the open documents that import it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from specc import compiler
from specc.diagnostics import SpeccError
from test_lsp import ROOT, Doc, client  # noqa: F401  (the fixture: one server per module)

served = pytest.mark.asyncio(loop_scope="module")


async def rename(doc: Doc, needle: str, new_name: str, nth: int = 0) -> lsp.WorkspaceEdit | None:
    return await doc.client.text_document_rename_async(lsp.RenameParams(
        text_document=doc.ident(), position=doc.at(needle, nth=nth), new_name=new_name))


async def refused(doc: Doc, needle: str, new_name: str, nth: int = 0) -> str:
    """The message of the error a rename is answered with (fails if the rename is accepted)."""
    with pytest.raises(Exception) as info:
        await rename(doc, needle, new_name, nth)
    return str(info.value)


def apply(text: str, edits: list[lsp.TextEdit]) -> str:
    lines = text.split("\n")
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        assert e.range.start.line == e.range.end.line
        line = lines[e.range.start.line]
        lines[e.range.start.line] = line[:e.range.start.character] + e.new_text + line[e.range.end.character:]
    return "\n".join(lines)


# ------------------------------------------------------------------ rename
@served
async def test_rename_refuses_a_name_bound_in_the_same_definition(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    message = await refused(doc, "shortcut", "h")  # a value of `basic`
    assert "`h` is already a value in basic" in message
    assert "already a parameter in basic" in await refused(doc, "shortcut", "stride")
    assert "already a dimension in resnet" in await refused(doc, "image: f32", "B")
    edit = await rename(doc, "shortcut", "skip")  # a free name is fine
    assert edit is not None and all(doc.text_at(e.range) == "shortcut" for e in edit.changes[doc.uri])
    doc.close()

    mlp = Doc(client, ROOT / "specs" / "mlp.nnspec")
    await mlp.open()
    assert "already a parameter in mlp" in await refused(mlp, "hidden", "classes")
    assert "already a value in mlp" in await refused(mlp, "logits", "h")
    assert "already a value in mlp" in await refused(mlp, "x: f32", "h")  # an input
    mlp.close()


@served
async def test_rename_refuses_ops_definitions_keywords_and_non_names(client: LanguageClient, tmp_path: Path):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    assert "`relu` is an op" in await refused(doc, "basic(", "relu")
    assert "already the name of model `resnet`" in await refused(doc, "basic(", "resnet")
    assert "keyword" in await refused(doc, "basic(", "model")
    mdbm = Doc(client, tmp_path / "mdbm.nnspec", (ROOT / "specs" / "mdbm_mnist.nnspec").read_text()
               + "\nblock extra(x) {\n    return x\n}\n")
    await mdbm.open()  # `weight=mdbm(m=0.1)` would call a block named mdbm
    assert "`mdbm(...)` is already called" in await refused(mdbm, "extra", "mdbm")
    mdbm.close()
    assert "not an identifier" in await refused(doc, "basic(", "two words")
    assert "not an identifier" in await refused(doc, "shortcut", "1x")
    assert "built-in" in await refused(doc, "shortcut", "true")
    doc.close()


def test_a_parameter_declared_twice_is_an_error(tmp_path: Path):
    """`hidden` -> `classes` in mlp, had it been accepted, no longer compiles (it used to, silently)."""
    path = tmp_path / "mlp.nnspec"
    path.write_text((ROOT / "specs" / "mlp.nnspec").read_text().replace("hidden", "classes"))
    with pytest.raises(SpeccError) as info:
        compiler.compile_graph(path)
    assert info.value.code == "E0203" and info.value.message == "parameter `classes` is declared twice"


@served
async def test_rename_of_a_repeat_index_renames_its_uses(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet18.nnspec")
    await doc.open()
    edit = await rename(doc, "i == 0", "k")
    edits = edit.changes[doc.uri]
    line = doc.at("i == 0").line
    # `repeat i in` and its two uses, on each of the three lines (one name in one definition, like `h`)
    assert sorted(e.range.start.line for e in edits) == [line] * 3 + [line + 1] * 3 + [line + 2] * 3
    renamed = apply(doc.text, edits)
    assert "repeat k in 2 { basic_block(_, 128, stride=2 if k == 0 else 1, project=k == 0) }" in renamed
    assert " i " not in renamed.split("\n")[line + 2]
    assert "i: int" in await doc.hover("i == 0") and "i: int" in await doc.hover("i in 2")
    doc.close()


@served
async def test_rename_updates_open_documents_that_import_the_definition(client: LanguageClient, tmp_path: Path):
    lib = Doc(client, tmp_path / "lib.nnspec", "block widen(x, n: int) {\n    return linear(x, n)\n}\n")
    lib.path.write_text(lib.text)
    main = Doc(client, tmp_path / "main.nnspec",
               'import "lib.nnspec"\n\nmodel m() {\n    input x: f32[B, 4]\n    output y = widen(x, n=8)\n}\n')
    main.path.write_text(main.text)
    other = Doc(client, tmp_path / "other.nnspec", "model o() {\n    input x: f32[B, 4]\n    output y = relu(x)\n}\n")
    assert await lib.open() == [] and await main.open() == [] and await other.open() == []
    edit = await rename(lib, "widen", "grow")
    assert set(edit.changes) == {lib.uri, main.uri}
    assert apply(main.text, edit.changes[main.uri]).count("grow(x, n=8)") == 1
    assert len(edit.changes[lib.uri]) == 1
    edit = await rename(lib, "n: int", "width")  # a parameter: the keyword argument in main follows
    assert "grow" not in apply(main.text, edit.changes[main.uri])
    assert "widen(x, width=8)" in apply(main.text, edit.changes[main.uri])
    edit = await rename(main, "widen", "grow")  # from the importer
    assert set(edit.changes) == {lib.uri, main.uri}
    # a name the importer already defines is taken
    assert "already the name of model `m`" in await refused(lib, "widen", "m")
    for d in (lib, main, other):
        d.close()


# ------------------------------------------------------------------ hover
@served
async def test_hover_on_a_value_with_parts_shows_its_type_once_and_its_parts(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "mdbm_mnist.nnspec")
    await doc.open()
    text = await doc.hover("q = fixed_point")
    assert "q: f32[B, 170]\n" in text and "|" not in text  # the state, not the state and each slice of it
    assert "`q.pixels`: `f32[B, 128]`" in text and "`q.hidden`: `f32[B, 32]`" in text
    assert "`q.classes`: `f32[B, 10]`" in text
    text = await doc.hover("q.pixels", 2)
    assert "q.pixels: f32[B, 128]" in text and "part 1 of 3 of `q`" in text
    assert "q.classes: f32[B, 10]" in await doc.hover("q.classes", 2)
    text = await doc.hover("fixed_point")
    assert "→ `f32[B, 170]`" in text and "`.classes` `f32[B, 10]`" in text and "|" not in text
    assert "image: f32[B, 128]" in await doc.hover("image = q")  # a value that is a part
    symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(text_document=doc.ident()))
    details = {c.name: c.detail for s in symbols for c in s.children or []}
    assert details["q"] == "f32[B, 170]" and details["image"] == "output f32[B, 128]"
    doc.close()


@served
async def test_hover_on_configurations_and_their_arguments(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "mdbm_mnist.nnspec")
    await doc.open()
    text = await doc.hover("prox_softmax")
    assert "prox_softmax(groups=...)" in text and "configuration for `fixed_point(activation=`" in text
    assert "mean field" in text  # what fixed_point's documentation says about it
    text = await doc.hover("mdbm(m=", 5)
    assert "m: float = 0.05" in text and "configuration `mdbm` (for `fixed_point(weight=`)" in text
    assert "alpha: float = 1.0" in await doc.hover("alpha=0.5")
    doc.close()


@served
async def test_hover_on_a_keyword_argument_of_a_block_call(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet.nnspec")
    await doc.open()
    text = await doc.hover("stride=2")
    assert "stride: int = 1" in text and "parameter of block `basic`" in text
    doc.close()


# ------------------------------------------------------------------ completion
@served
async def test_completion_leaves_out_arguments_given_by_position(client: LanguageClient, tmp_path: Path):
    text = ("model m() {\n    input x: f32[B, 4]\n    h = dropout(x, p=0.5)\n    g = dropout(h, \n"
            "    y = linear(g, 4, \n    output y\n}\n")
    doc = Doc(client, tmp_path / "d.nnspec", text)
    await doc.open()
    items = await doc.complete(doc.at("dropout(h, ", 11))
    assert "p=" in items and "x=" not in items  # `p=` in the line above is another call's
    items = await doc.complete(doc.at("linear(g, 4, ", 13))
    assert "bias=" in items and "x=" not in items and "out_features=" not in items
    items = await doc.complete(doc.at("dropout(h, ", 8))  # right after `(`: every argument
    assert {"x=", "p="} <= set(items)
    doc.close()


@served
async def test_completion_after_a_dot_offers_only_parts(client: LanguageClient, tmp_path: Path):
    text = ("model m(pixels: int = 4, classes: int = 2) {\n    input x: f32[B, 4]\n"
            "    q = fixed_point(x, state=[pixels, classes])\n    v, i = topk(x, 2)\n    r = topk(x, 2)\n"
            "    output y = q.\n}\n")
    doc = Doc(client, tmp_path / "dot.nnspec", text)
    await doc.open()
    assert set(await doc.complete(doc.at("q.", 2))) == {"pixels", "classes"}
    await doc.change(text.replace("q.\n", "r.\n"))
    assert set(await doc.complete(doc.at("r.", 2))) == {"values", "indices"}
    await doc.change(text.replace("q.\n", "x.\n"))
    assert await doc.complete(doc.at("x.", 2)) == {}  # an input has no parts: nothing can follow
    doc.close()


# ------------------------------------------------------------------ unopened documents
def test_notifications_and_requests_for_an_unopened_document_are_quiet():
    """A change, save or close of a document never opened, and every request about it, get empty
    answers: no error message to the user and no traceback in the log (pygls's own handler of a
    change raised KeyError for a document it does not hold)."""
    from test_lsp_hardening import Server

    server = Server()
    server.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, timeout=60)
    server.send("initialized", {}, request=False)
    position = {"line": 0, "character": 0}
    for uri in ("file:///nonexistent/dir/missing.nnspec", "untitled:Untitled-1", "file:///tmp/a%20b.nnspec"):
        ident = {"uri": uri}
        server.change(uri, "model m() {}\n", 2)
        server.send("textDocument/didSave", {"textDocument": ident}, request=False)
        server.close(uri)
        assert server.request("textDocument/hover", {"textDocument": ident, "position": position})["result"] is None
        assert server.request("textDocument/prepareRename",
                              {"textDocument": ident, "position": position})["result"] is None
        assert server.request("textDocument/rename", {"textDocument": ident, "position": position,
                                                      "newName": "y"})["result"] is None
        items = server.request("textDocument/completion", {"textDocument": ident, "position": position})["result"]
        assert items["items"] == []
    assert server.logs() == []
    server.request("shutdown", None)
    server.send("exit", None, request=False)
    assert server.process.wait(timeout=10) == 0
    assert b"Traceback" not in server.stderr, server.stderr.decode(errors="replace")


# ------------------------------------------------------------------ found by the probe suite
@served
async def test_renaming_a_state_name_renames_the_parts_it_names(client: LanguageClient, tmp_path: Path):
    """`q = fixed_point(..., state=[pixels, ...])` names q's parts by those names: renaming `pixels`
    renames `q.pixels` too (else the spec reads a part that no longer exists)."""
    text = (ROOT / "specs" / "mdbm_mnist.nnspec").read_text()
    doc = Doc(client, tmp_path / "mdbm.nnspec", text)
    await doc.open()
    edit = await rename(doc, "pixels: int", "px")
    renamed = apply(text, edit.changes[doc.uri])
    assert "q.pixels" not in renamed and "q.px" in renamed
    path = tmp_path / "renamed.nnspec"
    path.write_text(renamed)
    for target in compiler.compilable(compiler.load_program(path)[0]):
        compiler.compile_graph(path, target.name)  # still compiles
    doc.close()


@served
async def test_rename_refuses_a_dimension_of_a_block_parameters_type(client: LanguageClient):
    doc = Doc(client, ROOT / "specs" / "resnet18.nnspec")
    await doc.open()
    assert "already a dimension in basic_block" in await refused(doc, "planes: int", "N")
    assert "is already" in await refused(doc, "planes: int", "inplanes")
    doc.close()


@served
async def test_a_misspelled_block_is_a_did_you_mean_quick_fix(client: LanguageClient, tmp_path: Path):
    text = (ROOT / "specs" / "resnet.nnspec").read_text()
    doc = Doc(client, tmp_path / "resnet.nnspec", text.replace("{ basic(", "{ basci(", 1))
    (d,) = await doc.open()
    assert d.code == "E0201" and "did you mean `basic`" in d.message
    (action,) = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=doc.ident(), range=d.range, context=lsp.CodeActionContext(diagnostics=[d])))
    (fix,) = action.edit.changes[doc.uri]
    assert doc.text_at(fix.range) == "basci" and fix.new_text == "basic"
    doc.close()


@served
async def test_an_import_created_on_disk_clears_its_importers_error(client: LanguageClient, tmp_path: Path):
    """A missing import is remembered as read: when the file appears (a checkout recreates it), the
    importer is checked again, not left with a stale "cannot import" until its next edit."""
    lib = tmp_path / "lib.nnspec"
    main = Doc(client, tmp_path / "main.nnspec",
               'import "lib.nnspec"\n\nmodel m() {\n    input x: f32[B, 4]\n    output y = widen(x, 4)\n}\n')
    (d,) = await main.open()
    assert d.code == "E0502"
    lib.write_text("block widen(x, n: int) {\n    return linear(x, n)\n}\n")
    client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(
        changes=[lsp.FileEvent(uri=lib.as_uri(), type=lsp.FileChangeType.Created)]))
    assert await main.diagnostics(main.version) == []
    main.close()


@served
async def test_a_misspelled_compress_base_is_a_did_you_mean_quick_fix(client: LanguageClient, tmp_path: Path):
    (tmp_path / "mlp.nnspec").write_text((ROOT / "specs" / "mlp.nnspec").read_text())
    text = (ROOT / "specs" / "mlp_lowrank.nnspec").read_text()
    doc = Doc(client, tmp_path / "small.nnspec", text.replace("= mlp {", "= mpl {"))
    (d,) = await doc.open()
    assert d.code == "E0806" and "did you mean `mlp`" in d.message and doc.text_at(d.range) == "mpl"
    (action,) = [a for a in await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=doc.ident(), range=d.range, context=lsp.CodeActionContext(diagnostics=[d])))
        if "Change" in a.title]
    (fix,) = action.edit.changes[doc.uri]
    assert fix.new_text == "mlp"
    doc.close()
