"""`specc lsp` against hostile clients and documents.

The server runs in a subprocess and is driven over raw JSON-RPC bytes, so the
tests can send what no well-behaved client would: huge or truncated messages,
garbage between messages, impossible positions. Whatever arrives, every request
gets a well-formed answer, nothing reaches the log as a traceback, and a slow or
endless document never delays requests about another.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from specc.lsp.analysis import Workspace
from specc.lsp.server import Framer

ROOT = Path(__file__).resolve().parent.parent
SMALL = "model m() {\n    input x: f32[B, 4]\n    output y = relu(x)\n}\n"


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Client:
    """A JSON-RPC client of a language server over some byte streams (`write`, and `pump` reading the
    server's output on a thread); every message the server sends is kept, in order."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.next_id = 0

    def pump(self, out) -> None:
        """Read framed messages from the binary stream `out` into the inbox until it ends (then None)."""
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self.inbox.put(None)
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            assert length is not None
            self.inbox.put(json.loads(out.read(length)))

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def send(self, method: str, params: Any, request: bool = True) -> int | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        self.write(frame(message))
        return message.get("id")

    def wait(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no such message from the server")
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            assert message is not None, "the server closed its output (it died)"
            self.seen.append(message)
            if wanted(message):
                return message

    def response(self, msg_id: int | None, timeout: float = 10) -> dict[str, Any]:
        return self.wait(lambda m: m.get("id") == msg_id and "method" not in m, timeout)

    def request(self, method: str, params: Any, timeout: float = 10) -> dict[str, Any]:
        return self.response(self.send(method, params), timeout)

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nnspec", "version": version,
                                                            "text": text}}, request=False)

    def change(self, uri: str, text: str, version: int) -> None:
        self.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                             "contentChanges": [{"text": text}]}, request=False)

    def close(self, uri: str) -> None:
        self.send("textDocument/didClose", {"textDocument": {"uri": uri}}, request=False)

    def diagnostics(self, uri: str, version: int | None = None, timeout: float = 20) -> list[dict[str, Any]]:
        def wanted(m: dict[str, Any]) -> bool:
            return (m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
                    and (version is None or m["params"].get("version") == version))
        return self.wait(wanted, timeout)["params"]["diagnostics"]

    def hover(self, uri: str, line: int, character: int, timeout: float = 10) -> dict[str, Any]:
        return self.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                   "position": {"line": line, "character": character}}, timeout)

    def logs(self) -> list[str]:
        return [m["params"]["message"] for m in self.seen if m.get("method") in ("window/logMessage",
                                                                                "window/showMessage")]


class Server(Client):
    """`specc lsp` in a subprocess."""

    def __init__(self) -> None:
        super().__init__()
        self.process = subprocess.Popen([sys.executable, "-m", "specc.cli", "lsp"], cwd=ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = b""
        threading.Thread(target=self.pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()


@pytest.fixture(scope="module")
def server():
    s = Server()
    s.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, timeout=60)
    s.send("initialized", {}, request=False)
    yield s
    s.request("shutdown", None)
    s.send("exit", None, request=False)
    assert s.process.wait(timeout=10) == 0  # exits, even with its worker and reader threads
    assert b"Traceback" not in s.stderr, s.stderr.decode(errors="replace")


def still_serving(server: Server, uri: str) -> None:
    """The server answers a request after whatever was sent before it."""
    assert server.hover(uri, 2, 16)["result"] is not None


@pytest.fixture(scope="module")
def small(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = (tmp_path_factory.mktemp("small") / "small.nnspec").as_uri()
    server.open(uri, SMALL)
    assert server.diagnostics(uri) == []
    return uri


# ------------------------------------------------------------------ transport
def test_framer_resynchronizes_in_process():
    good = [frame({"jsonrpc": "2.0", "id": i, "method": "x"}) for i in range(3)]
    framer = Framer(limit=1000)
    stream = (good[0] + b"garbage\r\n" + b"Content-Length: 500\r\n\r\n{\"jsonrpc\"" + good[1]
              + b"Content-Length: 5000\r\n\r\n" + b"x" * 5000 + b"Content-Length: 10\r\n" + good[2])
    bodies = [b for byte in range(len(stream)) for b in framer.feed(stream[byte:byte + 1])]  # one byte at a time
    assert [json.loads(b)["id"] for b in bodies] == [0, 1, 2]
    assert len(framer.problems) == 4 and "cut short" in framer.problems[1] and "5,000 bytes" in framer.problems[2]


def test_framer_skips_a_huge_body_without_holding_it():
    framer = Framer(limit=1000)
    framer.feed(b"Content-Length: 1000000000\r\n\r\n")
    for _ in range(100):
        assert framer.feed(b"[1, 2, 3] " * 1000) == [] and len(framer.buffer) <= 64
    assert framer.feed(frame({"jsonrpc": "2.0", "id": 1}))


@pytest.mark.parametrize("length", [100 * 1024 * 1024, 2**63, 10**30])
def test_a_huge_content_length_is_dropped(server: Server, small: str, length: int):
    server.write(b"Content-Length: %d\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 999}" % length)
    still_serving(server, small)
    assert any("dropped a message" in m for m in server.logs())


def test_a_truncated_message_does_not_desynchronize(server: Server, small: str):
    server.write(b"Content-Length: 4000\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 998, \"method\": \"textDoc")
    still_serving(server, small)  # the next request is much shorter than the missing 4,000 bytes
    still_serving(server, small)
    server.write(b"Content-Length: 12\r\nContent-Type: application/vscode-jsonrpc\r\n")  # a header block, cut
    still_serving(server, small)


def test_garbage_and_malformed_messages(server: Server, small: str):
    server.write(b"\x00\xff hello\r\n\r\n")
    for body in [b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000, b'{"jsonrpc": "2.0", "id": "bad", "method": "textDocument/hover", '
                                                      b'"params": {"textDocument": 3}}']:
        server.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    still_serving(server, small)
    (answer,) = [m for m in server.seen if m.get("id") == "bad"]  # answered before the request after it
    assert answer["error"]["code"] == -32602  # InvalidParams


# ------------------------------------------------------------------ positions
@pytest.mark.parametrize("line,character", [(-1, 0), (0, -1), (2**63, 0), (0, 2**63), (2**31, 0), (2**31 - 1, 2**31 - 1),
                                            (4, 0), (400, 7), (1, 1)])
def test_any_position_gets_an_answer(server: Server, tmp_path: Path, line: int, character: int):
    uri = (tmp_path / "emoji.nnspec").as_uri()
    server.open(uri, "// 😀😀\n" + SMALL)  # (1, 1) is inside a surrogate pair (in UTF-16)
    server.diagnostics(uri)
    position = {"line": line, "character": character}
    ident = {"uri": uri}
    for method, params in [("textDocument/hover", {"textDocument": ident, "position": position}),
                           ("textDocument/completion", {"textDocument": ident, "position": position}),
                           ("textDocument/definition", {"textDocument": ident, "position": position}),
                           ("textDocument/prepareRename", {"textDocument": ident, "position": position}),
                           ("textDocument/rename", {"textDocument": ident, "position": position, "newName": "z"})]:
        answer = server.request(method, params)
        assert "result" in answer or answer["error"]["code"] == -32602, (method, answer)
    server.close(uri)
    assert not [m for m in server.logs() if "Traceback" in m or "failed" in m]


def test_an_unopened_missing_document_gets_empty_answers(server: Server):
    ident = {"uri": "file:///nonexistent/dir/missing.nnspec"}
    position = {"line": 0, "character": 0}
    assert server.request("textDocument/hover", {"textDocument": ident, "position": position})["result"] is None
    assert server.request("textDocument/definition", {"textDocument": ident, "position": position})["result"] == []
    assert server.request("textDocument/documentSymbol", {"textDocument": ident})["result"] == []
    assert server.request("textDocument/semanticTokens/full", {"textDocument": ident})["result"]["data"] == []
    assert server.request("textDocument/formatting", {"textDocument": ident,
                                                      "options": {"tabSize": 4, "insertSpaces": True}})["result"] == []
    items = server.request("textDocument/completion", {"textDocument": ident, "position": position})["result"]
    assert items["items"] == []
    assert not [m for m in server.logs() if "Traceback" in m]


# ------------------------------------------------------------------ bounded analysis
def test_a_billion_repeats_is_a_limit_error(server: Server, small: str, tmp_path: Path):
    uri = (tmp_path / "repeat.nnspec").as_uri()
    started = time.monotonic()
    server.open(uri, "model m() {\n    input x: f32[B, 4]\n    h = repeat 1000000000 { relu(_) } (x)\n"
                     "    output y = h\n}\n")
    (diagnostic,) = server.diagnostics(uri, timeout=20)
    assert diagnostic["code"] == "E0010" and time.monotonic() - started < 20
    server.close(uri)


def test_an_open_buffer_is_held_to_the_file_size_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SPECC_LIMIT_FILE_BYTES", "200")
    (tmp_path / "lib.nnspec").write_text("block b(x) {\n    return x\n}\n" + "// padding\n" * 30)
    workspace = Workspace()
    (error,) = workspace.analyze(tmp_path / "big.nnspec", SMALL + "// padding\n" * 30).errors
    assert error.code == "E0010" and "over the limit of 200" in error.message
    workspace.open(tmp_path / "lib.nnspec", (tmp_path / "lib.nnspec").read_text())  # an import, open in the editor
    (error,) = workspace.analyze(tmp_path / "m.nnspec", 'import "lib.nnspec"\n' + SMALL).errors
    assert error.code == "E0010" and error.span is not None and error.span.line == 1


def test_special_files_are_not_read(server: Server, tmp_path: Path):
    os.mkfifo(tmp_path / "fifo.nnspec")  # opening it would wait for a writer forever
    for name, text in [("zero", 'import "/dev/zero"\n' + SMALL), ("fifo", 'import "fifo.nnspec"\n' + SMALL),
                       ("broken", 'import "/dev/zero"\nimport "fifo.nnspec"\nmodel m( {\n')]:
        uri = (tmp_path / f"{name}.nnspec").as_uri()
        started = time.monotonic()
        server.open(uri, text)
        diagnostics = server.diagnostics(uri, timeout=10)
        assert diagnostics and time.monotonic() - started < 10, name
        server.close(uri)


def test_a_slow_document_delays_nothing_and_is_superseded(server: Server, small: str, tmp_path: Path):
    uri = (tmp_path / "big.nnspec").as_uri()
    big = "".join(f"model m{i}() {{\n    input x: f32[B, 4]\n    h = relu(x)\n    output y = linear(h, 8)\n}}\n\n"
                  for i in range(3000))
    server.open(uri, big)
    time.sleep(0.2)
    started = time.monotonic()
    still_serving(server, small)  # another document: answered while the big one is analyzed
    answer = server.hover(uri, 2, 9)  # the big one itself: nothing to answer from yet, but an answer
    assert "result" in answer and time.monotonic() - started < 5
    hover_id = server.send("textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 9}})
    server.send("$/cancelRequest", {"id": hover_id}, request=False)
    answer = server.response(hover_id)
    assert "result" in answer or answer["error"]["code"] == -32800  # RequestCancelled
    server.change(uri, SMALL.replace("relu", "sigmoid"), 2)  # the big analysis is now stale: it stops
    assert server.diagnostics(uri, version=2, timeout=15) == []
    assert server.hover(uri, 2, 18)["result"] is not None
    assert not [m for m in server.seen if m.get("method") == "textDocument/publishDiagnostics"
                and m["params"]["uri"] == uri and m["params"].get("version") == 1]  # never published stale ones
    server.close(uri)
