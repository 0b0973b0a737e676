"""The language server's work on big files grows linearly, and diagnostics never wait behind a request
(issue 13, Speed; the latencies themselves are measured by bench/lsp_bench.py).

Linearity is checked by counting, not timing (as tests/test_scaling.py does): the work a feature does
for a document of N items and of 2N must grow by about 2. Document symbols built the table of every
model's values once per definition (the work grew by 4), and semantic tokens counted the UTF-16 units
of the text before each token (on one long line, the work grew with the square of its length).

The scheduling test runs the real server in process over pipes, with a request that cannot finish
until the test lets it: the diagnostics of an edit made meanwhile must arrive before its answer.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.workspace.position_codec import PositionCodec

from specc.lsp import features, navigation
from specc.lsp import server as server_module
from specc.lsp.analysis import Workspace
from test_lsp_hardening import Client

UTF16 = PositionCodec(lsp.PositionEncodingKind.Utf16).client_num_units


def _spec(n: int) -> str:
    """n blocks and n models calling them (the shape of the 2,000-line spec of the issue)."""
    out = []
    for i in range(n):
        out += [f"block res{i}(x, width: int) {{", "    h = relu(linear(x, width))", "    return x + h", "}", "",
                f"model net{i}(width: int = 8) {{", "    input x: f32[B, width]", f"    h = res{i}(x, width)",
                "    g = softmax(h, dim=-1) * h", "    output y = linear(g, 4)", "}", ""]
    return "\n".join(out)


def _analysis(tmp_path: Path, name: str, text: str):
    path = tmp_path / f"{name}.nnspec"
    path.write_text(text)
    analysis = Workspace().analyze(path, text)
    assert not analysis.errors, analysis.errors
    return analysis, path


def _counting(monkeypatch, module, name: str) -> list[int]:
    """Count the calls of module.name from now on."""
    count = [0]
    original = getattr(module, name)

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return count


def _symbol_work(tmp_path: Path, n: int, monkeypatch) -> int:
    """Node-table entries made or read while listing the symbols of a spec of n blocks and n models."""
    analysis, path = _analysis(tmp_path, f"symbols{n}", _spec(n))
    count = _counting(monkeypatch, features, "_node_key")
    symbols = features.document_symbols(analysis, features.Positions(analysis, path.as_uri(), UTF16))
    monkeypatch.undo()
    assert len(symbols) == 2 * n and all(s.children for s in symbols)  # the work really was done
    return count[0]


def test_document_symbols_work_grows_linearly(tmp_path, monkeypatch):
    small, large = _symbol_work(tmp_path, 12, monkeypatch), _symbol_work(tmp_path, 24, monkeypatch)
    assert large <= 2.2 * small, f"{small} node-table uses for 12 items, {large} for 24"


def test_the_value_table_is_shared_by_the_requests_of_an_analysis(tmp_path, monkeypatch):
    """Symbols, then hover: one table for the analysis, not one per definition or per request."""
    analysis, path = _analysis(tmp_path, "shared", _spec(5))
    built = _counting(monkeypatch, features._Values, "__init__")
    pos = features.Positions(analysis, path.as_uri(), UTF16)
    features.document_symbols(analysis, pos)
    line = _spec(5).split("\n").index("    g = softmax(h, dim=-1) * h")
    hover = features.hover(analysis, pos, line, 4)
    assert hover is not None and "f32[B, 8]" in hover.contents.value
    assert built[0] == 1


def _wide(n: int, suffix: str) -> str:
    """A model whose output line sums n names, balanced under the nesting limit, then `suffix`."""
    def balanced(k: int) -> str:
        return "h" if k == 1 else f"({balanced(k // 2)} + {balanced(k - k // 2)})"
    return f"model wide() {{\n    input x: f32[B, 4]\n    h = relu(x)\n    output y = {balanced(n)}{suffix}\n}}\n"


@pytest.mark.parametrize("suffix", ["", "  // é, 𝄞: a line the client counts in UTF-16 units"])
def test_semantic_tokens_count_each_line_once(tmp_path, suffix):
    """The characters handed to the client's unit counter, for a line of n and of 2n names: an ASCII line
    needs none counted, any other line is counted once (not once per token)."""
    def work(n: int) -> tuple[int, int]:
        analysis, path = _analysis(tmp_path, f"wide{n}", _wide(n, suffix))
        counted = [0]

        def units(text: str) -> int:
            counted[0] += len(text)
            return UTF16(text)

        data = features.semantic_tokens(analysis, features.Positions(analysis, path.as_uri(), units)).data
        return counted[0], len(data) // 5

    (small, tokens_small), (large, tokens_large) = work(128), work(256)
    assert tokens_large >= 1.9 * tokens_small  # twice the tokens on the line
    line = len(_wide(256, suffix).split("\n")[3])
    assert large <= 2.2 * max(small, 1) and large <= 2 * line, f"{small} characters counted, then {large}"


def test_semantic_tokens_columns_after_astral_characters(tmp_path):
    """The per-line table gives the columns counting each character outside the BMP as two units."""
    text = "model m() {\n    input x: f32[B, 4]\n    output y = relu(x)  // 𝄞 é\n    // 𝄞𝄞 x\n}\n"
    analysis, path = _analysis(tmp_path, "astral", text)
    data = features.semantic_tokens(analysis, features.Positions(analysis, path.as_uri(), UTF16)).data
    absolute, line, col = [], 0, 0
    for i in range(0, len(data), 5):
        line, col = line + data[i], (col + data[i + 1] if data[i] == 0 else data[i + 1])
        absolute.append((line, col, data[i + 2]))
    comment_line = text.split("\n")[2]
    assert (2, comment_line.index("//"), 7) in absolute  # "// 𝄞 é": 6 characters, 7 UTF-16 units
    pos = features.Positions(analysis, path.as_uri(), UTF16)
    assert pos.column(str(path), 3, len("    // 𝄞𝄞 x")) == len("    // ") + 4 + 2
    assert pos.column(str(path), 3, 999) == len("    // ") + 4 + 2  # past the end: the line's end


def test_inlay_hints_work_grows_linearly(tmp_path, monkeypatch):
    """Hints for a file of 2N items cost about twice those of N (the table is the analysis's, built once)."""
    def work(n: int) -> int:
        analysis, path = _analysis(tmp_path, f"hints{n}", _spec(n))
        count = _counting(monkeypatch, features, "_node_key")
        hints = navigation.inlay_hints(analysis, features.Positions(analysis, path.as_uri(), UTF16))
        monkeypatch.undo()
        assert len(hints) == 4 * n  # the block's h, and the model's h, g and y
        return count[0]

    small, large = work(10), work(20)
    assert large <= 2.2 * small


# ------------------------------------------------------------------ scheduling
class _Pipes(Client):
    """The real server in process, on a thread, over a pair of pipes."""

    def __init__(self) -> None:
        super().__init__()
        to_server, client_out = os.pipe()
        client_in, from_server = os.pipe()
        self.server = server_module.make_server()
        self._writer = os.fdopen(client_out, "wb")
        threading.Thread(target=self.server.start_io, args=(os.fdopen(to_server, "rb"), os.fdopen(from_server, "wb")),
                         daemon=True).start()
        threading.Thread(target=self.pump, args=(os.fdopen(client_in, "rb"),), daemon=True).start()

    def write(self, data: bytes) -> None:
        self._writer.write(data)
        self._writer.flush()

    def hang_up(self) -> None:
        self._writer.close()


DOC = "file:///speed/doc.nnspec"


@pytest.mark.parametrize("request_kind", ["documentSymbol", "formatting", "rangeFormatting", "semanticTokens"])
def test_diagnostics_do_not_wait_behind_a_whole_document_request(monkeypatch, request_kind):
    """An outline, formatting or token request still being computed does not hold back the diagnostics
    of an edit made meanwhile (it used to run on the event loop, which publishes them). Formatting then
    answers no edit: it formatted the text before the edit, and replacing the newer text would lose it."""
    entered, release = threading.Event(), threading.Event()

    def blocking(original):
        def run(*args, **kwargs):
            entered.set()
            assert release.wait(60)
            return original(*args, **kwargs)
        return run

    if request_kind == "documentSymbol":
        monkeypatch.setattr(features, "document_symbols", blocking(features.document_symbols))
        method, params = "textDocument/documentSymbol", {"textDocument": {"uri": DOC}}
    elif request_kind in ("formatting", "rangeFormatting"):
        monkeypatch.setattr(server_module, "format_text", blocking(server_module.format_text))
        method = f"textDocument/{request_kind}"
        params = {"textDocument": {"uri": DOC}, "options": {"tabSize": 4, "insertSpaces": True}}
        if request_kind == "rangeFormatting":
            params["range"] = {"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}}
    else:
        monkeypatch.setattr(features, "semantic_tokens", blocking(features.semantic_tokens))
        method, params = "textDocument/semanticTokens/full", {"textDocument": {"uri": DOC}}
    client = _Pipes()
    try:
        client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        client.wait(lambda m: m.get("id") == 1)
        client.send("initialized", {}, request=False)
        text = "model m() {\n    input x: f32[B, 4]\n    output y=relu(x)\n}\n"  # formatting has work to do
        client.send("textDocument/didOpen", {"textDocument": {"uri": DOC, "languageId": "nnspec", "version": 1,
                                                              "text": text}}, request=False)
        first = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        assert first["params"]["version"] == 1 and first["params"]["diagnostics"] == []
        asked = client.send(method, params)
        assert entered.wait(60)  # the request is being computed, and cannot finish yet
        broken = text.replace("relu(x)", "relu(x) + undefined_name")
        client.send("textDocument/didChange", {"textDocument": {"uri": DOC, "version": 2},
                                               "contentChanges": [{"text": broken}]}, request=False)
        published = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics" or m.get("id") == asked)
        assert published.get("method") == "textDocument/publishDiagnostics", "the diagnostics waited for the request"
        assert published["params"]["version"] == 2 and published["params"]["diagnostics"]
        release.set()
        answer = client.wait(lambda m: m.get("id") == asked)
        assert "error" not in answer
        if "ormatting" in request_kind:
            assert answer["result"] == []  # the text changed while it was formatted
        else:
            assert answer["result"]
    finally:
        release.set()
        client.hang_up()


def test_what_requests_read_is_prepared_after_publishing():
    """After a document's diagnostics, the request thread lexes and indexes its chunks and builds its value
    tables, so the outline and tokens the editor asks for next find them built."""
    client = _Pipes()
    try:
        client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        client.wait(lambda m: m.get("id") == 1)
        text = _spec(3)
        client.send("textDocument/didOpen", {"textDocument": {"uri": DOC, "languageId": "nnspec", "version": 1,
                                                              "text": text}}, request=False)
        client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        client.server.requests.submit(lambda: None).result(60)  # the request thread runs its jobs in order
        analysis = client.server.analyses[DOC]
        assert len(analysis.root.chunks) >= 6
        assert all(c._tokens is not None and c.occurrences is not None for c in analysis.root.chunks)
        assert analysis in features._VALUES and analysis in navigation._VALUES
    finally:
        client.hang_up()


# ------------------------------------------------------------------ staged diagnostics
def _many(n: int, broken: int) -> str:
    """n models (the `broken`-th with a shape error: a [B, 8] output added to a [B, 4] input)."""
    out = []
    for i in range(n):
        tail = " + x" if i == broken else ""
        out += [f"model m{i}(width: int = 8) {{", "    input x: f32[B, 4]", f"    output y = linear(x, width){tail}",
                "}", ""]
    return "\n".join(out)


def test_opening_many_models_stages_the_diagnostics(tmp_path):
    """A first, partial analysis (syntax and file-wide checks) is handed out before the models compile, when
    many are left to compile; the models' diagnostics come with the finished analysis. Once they are cached
    (an edit that recompiles one model), there is no stage: nothing would come sooner."""
    from specc.lsp.analysis import STAGE_AFTER

    n = STAGE_AFTER + 2
    text = _many(n, broken=n - 1)
    path = tmp_path / "many.nnspec"
    path.write_text(text)
    workspace = Workspace()
    stages: list = []
    analysis = workspace.analyze(path, text, staged=stages.append)
    assert len(stages) == 1 and stages[0].errors == [] and not stages[0].models
    assert [(e.code, e.span.line) for e in analysis.errors] == [("E0402", 5 * (n - 1) + 3)], analysis.errors
    assert len(analysis.models) == n - 1  # every model but the broken one compiled
    edited = text.replace("output y = linear(x, width)\n", "output y = linear(x, width + 1)\n", 1)
    workspace.analyze(path, edited, staged=stages.append)
    assert len(stages) == 1  # one model to compile: no stage
    broken = "model m0(width: int = 8 {\n" + text.split("\n", 1)[1]
    syntax = workspace.analyze(path, broken.replace("m1(", "q1(").replace("m2(", "q2("), staged=stages.append)
    assert len(stages) == 1 and syntax.errors  # a syntax error compiles nothing: no stage


def test_the_server_publishes_the_stage_then_the_models():
    """Over the wire: the first diagnostics of a new document of many models are the stage's (here none),
    then those of the compiled models, both for the document's version."""
    from specc.lsp.analysis import STAGE_AFTER

    text = _many(STAGE_AFTER + 2, broken=STAGE_AFTER + 1)
    client = _Pipes()
    try:
        client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        client.wait(lambda m: m.get("id") == 1)
        client.send("textDocument/didOpen", {"textDocument": {"uri": DOC, "languageId": "nnspec", "version": 1,
                                                              "text": text}}, request=False)
        first = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        second = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        assert first["params"]["version"] == second["params"]["version"] == 1
        assert first["params"]["diagnostics"] == []
        assert len(second["params"]["diagnostics"]) == 1
        assert second["params"]["diagnostics"][0]["range"]["start"]["line"] == 5 * (STAGE_AFTER + 1) + 2
    finally:
        client.hang_up()


# ------------------------------------------------------------------ per-chunk caches
def _fresh(analysis, path: Path, feature):
    """The feature's answer with its per-chunk caches emptied (what it computes from scratch)."""
    features._SYMBOLS_CACHE.clear()
    features._TOKENS_CACHE.clear()
    return feature(analysis, features.Positions(analysis, path.as_uri(), UTF16))


def test_an_edit_recomputes_the_outline_of_what_it_can_change(tmp_path, monkeypatch):
    """After an edit inside one model, the outline lists that model's chunk again, and the block it calls
    (the types of the block's values come from the model's compile), and reuses the rest; after an edit to a
    block, the block and the models calling it; after a line added at the top, none (the symbols are
    moved). Each answer is the uncached one."""
    n = 12
    text = _spec(n)
    path = tmp_path / "outline.nnspec"
    path.write_text(text)
    workspace = Workspace()

    def outline(new_text: str) -> tuple[int, list]:
        analysis = workspace.analyze(path, new_text)
        count = _counting(monkeypatch, features, "_children_symbols")  # once per definition listed
        symbols = features.document_symbols(analysis, features.Positions(analysis, path.as_uri(), UTF16))
        monkeypatch.undo()
        assert symbols == _fresh(analysis, path, features.document_symbols)
        return count[0], symbols

    assert outline(text)[0] == 2 * n  # every chunk, once
    in_model = text.replace("    output y = linear(g, 4)", "    output y = linear(g, 5)", 1)
    assert outline(in_model)[0] == 2  # net0 and res0
    in_block = in_model.replace("    h = relu(linear(x, width))", "    h = gelu(linear(x, width))", 1)
    assert outline(in_block)[0] == 2  # res0 and net0, its one caller
    moved, symbols = outline("// a new first line\n" + in_block)
    assert moved == 0 and symbols[0].range.start.line == 1


def test_an_edit_reclassifies_the_tokens_of_one_chunk(tmp_path, monkeypatch):
    """Semantic tokens after an edit inside one model classify that chunk's tokens only; the encoding of
    the others is reused (moved, for a line added above them); the answer is the uncached one."""
    n = 12
    text = _spec(n)
    path = tmp_path / "tokens.nnspec"
    path.write_text(text)
    workspace = Workspace()

    def tokens(new_text: str) -> tuple[int, list[int]]:
        analysis = workspace.analyze(path, new_text)
        count = _counting(monkeypatch, features, "_classify")
        data = features.semantic_tokens(analysis, features.Positions(analysis, path.as_uri(), UTF16)).data
        monkeypatch.undo()
        assert data == _fresh(analysis, path, features.semantic_tokens).data
        return count[0], data

    everything, data = tokens(text)
    assert everything >= len(data) // 5
    edited = text.replace("    output y = linear(g, 4)", "    output y = linear(g, 5)", 1)
    one, _ = tokens(edited)
    assert 0 < one <= 2 * everything / (2 * n)  # one chunk of 2n (the edited model), about
    moved, data = tokens("// a new first line\n" + edited)
    assert moved == 1 and data[:5] == [0, 0, len("// a new first line"), features._TOKEN_INDEX["comment"], 0]
    assert data[5] == 1  # the first item's first token: one line further down, classified before
    renamed = edited.replace("block res1(", "model res1(", 1)  # its callers' tokens change class
    again, _ = tokens(renamed)
    assert 0 < again < everything / 2


def test_formatting_lays_out_the_chunks_it_has_not_seen(monkeypatch):
    """The language server hands the formatter the document's chunks: after an edit, one chunk is laid out
    again, and the text is the same as formatting the file whole."""
    from specc import fmt
    from specc.lsp.analysis import split_chunks

    text = _spec(10).replace("relu(linear(x, width))", "relu( linear(x,width) )")
    parts = [chunk for _, chunk in split_chunks(text)]
    assert fmt.format_text(text, parts=parts) == fmt.format_text(text)
    edited = text.replace("linear(g, 4)", "linear(g,5)", 1)
    count = _counting(monkeypatch, fmt, "_layout")
    formatted = fmt.format_text(edited, parts=[chunk for _, chunk in split_chunks(edited)])
    assert count[0] == 1
    monkeypatch.undo()
    assert formatted == fmt.format_text(edited) and "linear(g, 5)" in formatted
    with pytest.raises(ValueError):
        fmt.format_text(edited, parts=parts)  # parts of another text


def test_an_edit_recomputes_the_hints_of_what_it_can_change(tmp_path, monkeypatch):
    """Inlay hints are cached per chunk as the outline is: after an edit inside a model, that model's chunk
    and its block's are computed again, after a line added at the top none (the hints are moved); each
    answer is the uncached one, for the whole file and for a range."""
    n = 12
    text = _spec(n)
    path = tmp_path / "hints.nnspec"
    path.write_text(text)
    workspace = Workspace()

    def hints(new_text: str) -> tuple[int, list]:
        analysis = workspace.analyze(path, new_text)
        pos = features.Positions(analysis, path.as_uri(), UTF16)
        count = _counting(monkeypatch, navigation, "_chunk_hints")
        got = navigation.inlay_hints(analysis, pos)
        monkeypatch.undo()
        navigation._HINTS_CACHE.clear()
        assert got == navigation.inlay_hints(analysis, pos)
        assert navigation.inlay_hints(analysis, pos, 20, 40) == [h for h in got if 20 <= h.position.line <= 40]
        return count[0], got

    assert hints(text)[0] == 2 * n
    edited = text.replace("    output y = linear(g, 4)", "    output y = linear(g, 5)", 1)
    assert hints(edited)[0] == 2  # net0 and res0
    moved, got = hints("// a new first line\n" + edited)
    assert moved == 1 and got[0].position.line == 2  # the comment's own chunk; res0's `h` one line down
