"""The LSP side: a pygls server that keeps one `Analysis` per open document.

Every handler catches everything: a bug in a feature logs a message and answers
"nothing", and a document whose analysis fails keeps its last good one, so no
input (truncations, junk, half-typed lines) can take the server down.

Analysis never runs on the event loop. Edits are debounced and each document's
analysis runs on one worker thread; an analysis that a newer edit made stale is
cancelled between models, and its diagnostics are never published. Opening a big file
publishes twice: the syntax's diagnostics once it is parsed, then the models'. Requests
answer from the newest finished analysis, waiting briefly for one in flight, so
a slow document delays nothing else. The requests that read a whole document
(outline, formatting, semantic tokens, inlay hints, folding, code lenses) are
computed on a thread of their own, neither on the event loop (where they would
hold back the publication of diagnostics) nor on the analysis worker (where
the next analysis would queue behind them). The transport (`Framer`) replaces pygls's
reader: it bounds message sizes and resynchronizes after truncated or malformed
messages instead of losing the stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import re
import sys
import threading
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from .. import __version__
from ..diagnostics import SpeccError
from ..fmt import format_text
from . import actions, features, index, navigation
from .analysis import Analysis, Cancelled, Workspace, warm_up, warm_up_parser

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a bigger message is dropped unread (no editor sends one)
MAX_HEADER_BYTES = 8 * 1024  # headers are a few dozen bytes; more means the stream is not LSP
DEBOUNCE_S = 0.15  # wait for a pause in typing before analyzing
WARM_UP_AFTER_S = 1.0  # how long the server waits for a first document before warming up the compiler
PATIENCE_S = 1.0  # how long a request waits for the analysis in flight before answering from the last one


# ------------------------------------------------------------------ transport
class Framer:
    """Cuts the client's byte stream into message bodies, whatever it holds.

    A message is `Content-Length: N` (more header lines may surround it), a blank
    line, and N bytes of JSON. Resynchronizing is safe because a `Content-Length`
    header line cannot occur inside a JSON body (a JSON string cannot hold a raw
    line break, and the words cannot appear outside a string): bytes before a
    header are skipped, a body that contains one was cut short and is dropped, and
    a body over `limit` bytes is skipped without being held in memory.
    `problems` collects what was dropped, for the log.
    """

    HEADER = re.compile(rb"Content-Length:[ \t]*(\d{1,20})[ \t]*\r\n", re.IGNORECASE)
    _KEEP = 64  # bytes kept from skipped input: a header may be split across reads

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.length: int | None = None  # of the body being read
        self.scanned = 0  # how much of that body is known to hold no header
        self.skipped = 0  # bytes of junk skipped since the last message (reported once a message follows)
        self.dropping = 0  # bytes still to come of a dropped message (skipped as no junk)
        self.problems: list[str] = []

    def feed(self, data: bytes) -> list[bytes]:
        """The bodies completed by `data`."""
        self.buffer += data
        bodies: list[bytes] = []
        while self._step(bodies):
            pass
        return bodies

    def _step(self, bodies: list[bytes]) -> bool:
        """Make one step of progress; False when more input is needed."""
        buffer = self.buffer
        if self.length is None:
            m = self.HEADER.search(buffer)
            if m is None:
                if len(buffer) > self._KEEP:
                    self._skip(len(buffer) - self._KEEP)
                return False
            if m.start():
                self._skip(m.start())
                return True
            if self.skipped:
                self.problems.append(f"skipped {self.skipped:,} bytes that are not a message")
            self.skipped = self.dropping = 0
            end = buffer.find(b"\r\n\r\n", m.end() - 2)
            later = self.HEADER.search(buffer, m.end(), end + 2 if end >= 0 else len(buffer))
            if later is not None:  # a header block that never ended, then a new message
                self.problems.append("dropped a message header with no blank line after it")
                del buffer[:later.start()]
                return True
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self.problems.append(f"dropped a message header of over {MAX_HEADER_BYTES:,} bytes")
                    del buffer[:m.end()]
                    return True
                return False
            length = int(m[1])
            del buffer[:end + 4]
            if length > self.limit:
                self.problems.append(f"dropped a message of {length:,} bytes (the limit is {self.limit:,})")
                self.dropping = length
                return True
            self.length, self.scanned = length, 0
            return True
        cut = self.HEADER.search(buffer, max(0, self.scanned - self._KEEP), min(len(buffer), self.length + self._KEEP))
        if cut is not None and cut.start() < self.length:
            self.problems.append(f"dropped a message cut short after {cut.start():,} of {self.length:,} bytes")
            del buffer[:cut.start()]
            self.length = None
            return True
        if len(buffer) < self.length:
            self.scanned = len(buffer)
            return False
        bodies.append(bytes(buffer[:self.length]))
        del buffer[:self.length]
        self.length = None
        return True

    def _skip(self, n: int) -> None:
        if self.dropping:
            self.dropping = max(0, self.dropping - n)
        elif self.buffer[:n].strip():  # blank lines between messages are no junk
            self.skipped += n
        del self.buffer[:n]


def _pump(stream: BinaryIO, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[bytes]) -> None:
    """Copy stdin to the event loop in chunks as they arrive (b"" at the end), on a daemon thread.
    It reads the file descriptor itself: a daemon thread blocked inside a buffered reader holds its
    lock, which aborts the interpreter at exit."""
    try:
        fd = stream.fileno()
        read: Callable[[int], bytes] = lambda n: os.read(fd, n)
    except (AttributeError, OSError, ValueError):  # not a real file (an in-memory stream)
        read = getattr(stream, "read1", stream.read)
    while True:
        try:
            data = read(1 << 16)
        except (OSError, ValueError):
            data = b""
        try:
            loop.call_soon_threadsafe(chunks.put_nowait, data)
        except RuntimeError:  # the loop is closed: the server is stopping
            return
        if not data:
            return


class _QuietDeserializeErrors(logging.Filter):
    """pygls logs a traceback for every message it cannot deserialize, and for every error response a
    handler raises; the server answers the first itself, and the second are deliberate answers (a
    refused rename says why to the user), not failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], JsonRpcInvalidParams):
            return False
        return not record.getMessage().startswith("Unable to deserialize message")


# ------------------------------------------------------------------ worker
class _Worker:
    """One daemon thread that runs jobs in order (a daemon, so a stuck job never keeps the process alive)."""

    def __init__(self, name: str = "specc-analysis") -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.jobs.put((job, future))
        return future

    def _run(self) -> None:
        while True:
            job, future = self.jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the event loop, which reports it
                future.set_exception(exc)


class _Requests:
    """One daemon thread that answers the requests that read a whole document, in order."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None  # started on the first job

    def submit(self, job: Callable[[], T]) -> Future[T]:
        if self.worker is None:
            self.worker = _Worker("specc-requests")
        return self.worker.submit(job)

    async def run(self, job: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.submit(job))


class RawJSON:
    """A response's result already encoded as JSON, sent as it is (see `_Protocol`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Protocol(LanguageServerProtocol):
    """pygls's protocol, plus results encoded ahead (`RawJSON`): the big answers (outline, semantic
    tokens, hints) are encoded on the request thread, partly from caches, instead of by pygls's
    converter on the event loop, where encoding a 2,000-line file's outline took longer than computing it."""

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if error is not None or not isinstance(result, RawJSON):
            super()._send_response(msg_id, result, error)
            return
        self._result_types.pop(msg_id, None)
        body = f'{{"id": {json.dumps(msg_id)}, "jsonrpc": "2.0", "result": {result.text}}}'
        if self.writer is None:
            return
        header = (f"Content-Length: {len(body)}\r\n"
                  f"Content-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n") if self._include_headers else ""
        self.writer.write((header + body).encode(self.CHARSET))


def _dumps(value: Any) -> str:
    """Compact JSON (no blanks after separators: an outline of a 2,000-line file is a tenth smaller)."""
    return json.dumps(value, separators=(",", ":"))


class _Encoder:
    """Encodes results as JSON on the request thread. The symbols of each top-level item are encoded once
    per object: `features.document_symbols` hands back the same objects for the chunks it has cached."""

    def __init__(self, converter: Any) -> None:
        self.converter = converter  # pygls's (the protocol's), so that the JSON is what pygls would send
        self._symbols: dict[int, tuple[Any, str]] = {}  # id(symbol) -> (the symbol, kept alive; its JSON)

    def encode(self, result: Any) -> RawJSON:
        return RawJSON(_dumps(self.converter.unstructure(result)))

    def symbols(self, symbols: list[lsp.DocumentSymbol]) -> RawJSON:
        cache, fresh = self._symbols, {}
        parts = []
        for s in symbols:
            hit = cache.get(id(s))
            if hit is None or hit[0] is not s:
                hit = (s, _dumps(self.converter.unstructure(s)))
            fresh[id(s)] = hit
            parts.append(hit[1])
        self._symbols = fresh  # what the newest outline holds (an editor asks for one document's at a time)
        return RawJSON("[" + ",".join(parts) + "]")

    def tokens(self, tokens: lsp.SemanticTokens) -> RawJSON:
        return RawJSON(f'{{"data":{_dumps(tokens.data)}}}')


class SpeccServer(LanguageServer):
    """A pygls server plus the documents' analyses."""

    def __init__(self) -> None:
        super().__init__("specc", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
                         protocol_cls=_Protocol)
        self.encoder = _Encoder(self.protocol._converter)  # used only on the request thread
        self.specs = Workspace()  # used only on the worker thread
        self.analyses: dict[str, Analysis] = {}  # the newest finished analysis of each open document
        self._worker = _Worker()
        # while the editor initializes, so that the first analysis waits on no import; the compiling half
        # waits for the editor to open no document for a moment (see `warm_up`, `_warm_compiler`)
        self._worker.submit(warm_up_parser)
        self._warming: Future[None] | None = None
        self._documents_seen = False
        self.requests = _Requests()  # whole-document requests, off the event loop and off the analysis worker
        self._wanted: dict[str, int] = {}  # the generation of each document's newest requested analysis
        self._timers: dict[str, asyncio.TimerHandle] = {}  # debounced analyses not started yet
        self._running: dict[str, asyncio.Future[Analysis]] = {}  # the newest started analysis, until it ends

    # ------------------------------------------------------------- transport
    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio, reading with `Framer` instead of pygls's reader."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        logging.getLogger("pygls.protocol.json_rpc").addFilter(_QuietDeserializeErrors())
        try:
            asyncio.run(self._serve(stdin or sys.stdin.buffer))
        except (BrokenPipeError, KeyboardInterrupt, SystemExit):  # the client left, or asked us to exit
            pass
        finally:
            self.shutdown()

    def _warm_compiler(self) -> None:
        """Start the compiling half of the warm-up, unless a document came first: an editor opens its first
        document right after initializing, and that analysis would otherwise wait for the warm-up before
        parsing (its parse, and the diagnostics of its first stage, need none of it; its first compile
        pays the same costs the warm-up would have)."""
        if not self._documents_seen:
            self._warming = self._worker.submit(warm_up)

    async def _serve(self, stdin: BinaryIO) -> None:
        asyncio.get_running_loop().call_later(WARM_UP_AFTER_S, self._warm_compiler)
        chunks: asyncio.Queue[bytes] = asyncio.Queue()
        threading.Thread(target=_pump, args=(stdin, asyncio.get_running_loop(), chunks), daemon=True).start()
        framer = Framer()
        assert self._stop_event is not None
        while not self._stop_event.is_set():
            data = await chunks.get()
            if not data:
                return
            for body in framer.feed(data):
                self._receive(body)
                await asyncio.sleep(0)  # let handlers of earlier messages run between messages
            for problem in framer.problems:
                self.log(f"specc: {problem}")
            framer.problems.clear()

    def _receive(self, body: bytes) -> None:
        """Handle one message body; a malformed one is logged, and a malformed request answered with an error."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
            self.log(f"specc: dropped a message that is not JSON ({type(exc).__name__})")
            return
        if not isinstance(data, dict):
            self.log("specc: dropped a message that is not a JSON object")
            return
        try:
            message = self.protocol.structure_message(data)
        except JsonRpcException as exc:
            method = data.get("method")
            self.log(f"specc: invalid {method or 'message'}: {exc.message or 'its parameters are malformed'}")
            if "method" in data and isinstance(data.get("id"), (int, str)) and not isinstance(data["id"], bool):
                error = JsonRpcInvalidParams(f"invalid parameters for {method}")
                self.protocol._send_response(data["id"], error=error.to_response_error())
            return
        if isinstance(message, lsp.DidChangeTextDocumentNotification) \
                and self.document(message.params.text_document.uri) is None:
            return  # a change to a document never opened: pygls's own handler would raise KeyError
        try:
            self.protocol.handle_message(message)
        except Exception as exc:
            self.log("specc: handling a message failed", exc)

    # ------------------------------------------------------------- analysis
    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri)
        return Path(path) if path else Path.cwd() / (uri.rsplit("/", 1)[-1] or "untitled.nnspec")

    def document(self, uri: str) -> TextDocument | None:
        """The open document at `uri` (None if the editor has not opened it: the server reads no other)."""
        return self.workspace.text_documents.get(unquote(uri))

    def schedule(self, uri: str, delay: float = 0.0) -> None:
        """Analyze a document again after `delay` seconds, superseding any analysis of it not finished yet."""
        self._wanted[uri] = generation = self._wanted.get(uri, 0) + 1
        self._documents_seen = True
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        self._timers[uri] = asyncio.get_running_loop().call_later(delay, self._start, uri, generation)

    def _start(self, uri: str, generation: int) -> None:
        """Hand a document's analysis to the worker, with a snapshot of every open buffer."""
        self._timers.pop(uri, None)
        document = self.document(uri)
        if document is None or self._wanted.get(uri) != generation:
            return
        text, version = document.source, document.version
        if self._warming is not None:
            self._warming.cancel()  # unless it is running: then the analysis waits for it, as before
            self._warming = None
        buffers = {self.path_of(u): d.source for u, d in self.workspace.text_documents.items()}

        def stale() -> bool:
            return self._wanted.get(uri) != generation

        loop = asyncio.get_running_loop()

        def staged(partial: Analysis) -> None:  # on the worker: publish from the event loop
            loop.call_soon_threadsafe(self._publish_stage, uri, generation, version, partial)

        def analyze() -> Analysis:
            if stale():
                raise Cancelled(uri)
            self.specs.buffers.clear()
            for path, buffered in buffers.items():
                self.specs.open(path, buffered)
            return self.specs.analyze(self.path_of(uri), text, cancelled=stale, staged=staged)

        future = asyncio.wrap_future(self._worker.submit(analyze))
        self._running[uri] = future
        future.add_done_callback(functools.partial(self._finished, uri, generation, version))

    def _finished(self, uri: str, generation: int, version: int | None, future: asyncio.Future[Analysis]) -> None:
        """Keep a finished analysis and publish its diagnostics, unless the document changed since."""
        if self._running.get(uri) is future:
            del self._running[uri]
        if future.cancelled() or isinstance(future.exception(), Cancelled):
            return
        open_now = self.document(uri) is not None
        exc = future.exception()
        if exc is not None:  # a bug in specc: keep the last good analysis, say what happened
            self.log(f"specc: analysis of {uri} failed", exc)
            diagnostics = [_internal(exc)]
        else:
            analysis = future.result()
            if open_now:
                self.analyses[uri] = analysis
            diagnostics = self.diagnostics(uri, analysis)
        if open_now and self._wanted.get(uri) == generation:
            if exc is None:  # on the request thread, ahead of the requests that read it (queued, not run, here)
                self.requests.submit(functools.partial(_prepare, future.result()))
            self.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    def _publish_stage(self, uri: str, generation: int, version: int | None, partial: Analysis) -> None:
        """Publish the diagnostics of an analysis's first stage (syntax and the file as a whole), so that
        opening a big file shows them while its models compile; the finished analysis publishes again."""
        if self.document(uri) is not None and self._wanted.get(uri) == generation:
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                uri=uri, diagnostics=self.diagnostics(uri, partial), version=version))

    def schedule_dependents(self, uri: str, delay: float = 0.0) -> None:
        """Re-check the other open documents that read this one (they import it)."""
        path = str(self.path_of(uri).resolve())
        for other, analysis in list(self.analyses.items()):
            if other != uri and any(str(Path(p).resolve()) == path for p in analysis.reads):
                self.schedule(other, delay)

    def forget(self, uri: str) -> None:
        """Drop a closed document's analyses, finished, pending or running."""
        self._wanted[uri] = self._wanted.get(uri, 0) + 1  # a running analysis of it is now stale
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        self.analyses.pop(uri, None)

    async def analysis(self, uri: str, fresh: bool = False) -> Analysis | None:
        """The document's newest analysis, for a request. An analysis waiting for a pause in typing
        starts now; one in flight is awaited briefly (`fresh`: until it ends), so requests never queue
        behind a slow analysis. None for a document that is not open or not analyzed yet (and, with
        `fresh`, for one whose text changed during the analysis)."""
        document = self.document(uri)
        if document is None:
            return None
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
            self._start(uri, self._wanted[uri])
        running = self._running.get(uri)
        if running is not None:
            patience = None if fresh else PATIENCE_S
            try:
                await asyncio.wait_for(asyncio.shield(running), patience)
            except (asyncio.TimeoutError, Exception):  # answer from what there is; `_finished` reports failures
                pass
        analysis = self.analyses.get(uri)
        if fresh and analysis is not None and analysis.text != document.source:
            return None
        return analysis

    def positions(self, uri: str, analysis: Analysis) -> features.Positions:
        return features.Positions(analysis, uri, self.workspace.position_codec.client_num_units)

    def diagnostics(self, uri: str, analysis: Analysis) -> list[lsp.Diagnostic]:
        pos = self.positions(uri, analysis)
        related = self._supports_related_information()
        return [_diagnostic(e, analysis, pos, related) for e in analysis.errors]

    def _supports_related_information(self) -> bool:
        try:
            caps = self.client_capabilities.text_document
            return bool(caps and caps.publish_diagnostics and caps.publish_diagnostics.related_information)
        except Exception:
            return False

    def log(self, message: str, exc: BaseException | None = None) -> None:
        detail = "".join(traceback.format_exception(exc)) if exc is not None else ""
        try:
            self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Error, message=f"{message}\n{detail}"))
        except Exception:  # the client is gone; nothing to tell
            pass


def _prepare(analysis: Analysis) -> None:
    """Build what the editor's next requests read, once the diagnostics are out (an editor asks for the
    outline, tokens and hints after each change): the lexemes and name index of each chunk the edit
    made new (the others keep theirs) and the analysis's tables of values. It runs on the request
    thread, queued ahead of those requests: they find it built instead of building it beside it (two
    threads building the same tables under one GIL would each take twice as long), and the analysis
    worker stays free for the next edit. A request answered on the event loop (hover) that comes
    first builds what it needs itself; building twice is harmless."""
    try:
        for chunk in analysis.root.chunks:
            chunk.tokens  # noqa: B018 - lexes the chunk, once
            index.occurrences(chunk)
        features._values(analysis)
        navigation._values_of(analysis)
    except Exception:  # noqa: BLE001 - the request that needs it reports the failure, with its context
        pass


def _internal(exc: BaseException) -> lsp.Diagnostic:
    zero = lsp.Position(line=0, character=0)
    return lsp.Diagnostic(range=lsp.Range(start=zero, end=zero), severity=lsp.DiagnosticSeverity.Error,
                          source="specc", code="internal",
                          message=f"internal compiler error: {type(exc).__name__}: {exc}\n"
                                  "This is a bug in specc; please report it.")


def _diagnostic(error: BaseException, analysis: Analysis, pos: features.Positions, related: bool) -> lsp.Diagnostic:
    """A compiler error as an LSP diagnostic: its span (or, for a span in another file, the first
    place in this document its notes name), its help in the message, its notes as related information."""
    if not isinstance(error, SpeccError):
        return _internal(error)
    message = error.message
    where = pos.range(error.span) if error.span is not None else None
    infos: list[lsp.DiagnosticRelatedInformation] = []
    primary = where[1] if where is not None and where[0] == pos.uri else None
    if where is not None and primary is None:
        infos.append(lsp.DiagnosticRelatedInformation(location=lsp.Location(uri=where[0], range=where[1]),
                                                      message=error.message))
    for note in error.notes:
        hit = pos.range(note.span) if note.span is not None else None
        if hit is None:
            message += f"\nnote: {note.message}"
            continue
        if primary is None and hit[0] == pos.uri:
            primary = hit[1]
        infos.append(lsp.DiagnosticRelatedInformation(location=lsp.Location(uri=hit[0], range=hit[1]),
                                                      message=note.message))
    if primary is None:
        imports = analysis.module.imports
        primary = (pos.local(imports[0].span) if imports and where is not None else None) or lsp.Range(
            start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=0))
    if error.help:
        message += f"\nhelp: {error.help}"
    return lsp.Diagnostic(range=primary, severity=lsp.DiagnosticSeverity.Error, code=error.code, source="specc",
                          message=message, related_information=infos if related and infos else None)


def make_server() -> SpeccServer:
    """The server with every feature registered."""
    server = SpeccServer()

    def safe(default: Callable[[], T]) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        """Answer `default()` (and log) instead of failing, whatever goes wrong (for async handlers too)."""
        def wrap(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def failed(exc: Exception) -> T:
                server.log(f"specc: {handler.__name__} failed", exc)
                return default()

            if asyncio.iscoroutinefunction(handler):
                @functools.wraps(handler)
                async def run_async(params: Any) -> T:
                    try:
                        return await handler(params)
                    except JsonRpcInvalidParams:
                        raise  # a deliberate answer (e.g. an impossible new name), not a failure
                    except Exception as exc:
                        return failed(exc)
                return run_async

            @functools.wraps(handler)
            def run(params: Any) -> T:
                try:
                    return handler(params)
                except Exception as exc:
                    return failed(exc)
            return run
        return wrap

    async def at(params: Any, fresh: bool = False) -> tuple[Analysis, features.Positions, int, int] | None:
        uri = params.text_document.uri
        analysis = await server.analysis(uri, fresh)
        if analysis is None:
            return None
        pos = server.positions(uri, analysis)
        line, col = pos.from_client(params.position)
        return analysis, pos, line, col

    async def whole_document(params: Any, empty: T, job: Callable[..., T], across: bool = False,
                             encode: Callable[[T], RawJSON] | None = None) -> T | RawJSON:
        """`job(analysis, positions)` of the document's newest analysis (`across`: and every open document's,
        taken here on the event loop, as a third argument), run on the request thread so a slow whole-document
        request never holds up diagnostics, and encoded there (by `encode`, else pygls's converter);
        `empty` for a document not analyzed."""
        uri = params.text_document.uri
        analysis = await server.analysis(uri)
        if analysis is None:
            return empty
        pos = server.positions(uri, analysis)
        extra = (views(),) if across else ()
        return await server.requests.run(lambda: (encode or server.encoder.encode)(job(analysis, pos, *extra)))

    @server.feature(lsp.INITIALIZED)
    @safe(lambda: None)
    async def initialized(params: lsp.InitializedParams) -> None:
        """Ask the editor to report changes to .nnspec files on disk (see `watched_files_changed`)."""
        watched = server.client_capabilities.workspace and server.client_capabilities.workspace.did_change_watched_files
        if not (watched and watched.dynamic_registration):
            return
        try:
            await server.client_register_capability_async(lsp.RegistrationParams(registrations=[lsp.Registration(
                id="specc-watch-specs", method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
                    watchers=[lsp.FileSystemWatcher(glob_pattern="**/*.nnspec")]))]))
        except Exception:  # a client that claims the capability but refuses: it just gets no watcher
            logging.getLogger(__name__).info("the client refused to watch .nnspec files", exc_info=True)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    @safe(lambda: None)
    def watched_files_changed(params: lsp.DidChangeWatchedFilesParams) -> None:
        """A spec changed on disk (saved by another program, a git checkout): re-check the open documents
        that import it. An open document itself is not re-read: the editor's buffer is what it shows."""
        for change in params.changes:
            server.schedule_dependents(change.uri)

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    @safe(lambda: [])
    def code_action(params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        uri = params.text_document.uri
        document = server.document(uri)
        if document is None:
            return []
        return actions.code_actions(document, params.context.diagnostics, server.path_of(uri), server.analyses.get(uri))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @safe(lambda: None)
    def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        server.schedule(params.text_document.uri)
        server.schedule_dependents(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @safe(lambda: None)
    def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        server.schedule(params.text_document.uri, DEBOUNCE_S)
        server.schedule_dependents(params.text_document.uri, DEBOUNCE_S)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @safe(lambda: None)
    def did_save(params: lsp.DidSaveTextDocumentParams) -> None:
        server.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @safe(lambda: None)
    def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        server.forget(uri)
        server.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        server.schedule_dependents(uri)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @safe(lambda: None)
    async def hover(params: lsp.HoverParams) -> lsp.Hover | None:
        where = await at(params)
        return features.hover(*where) if where else None

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ",", ":", " "]))
    @safe(lambda: lsp.CompletionList(is_incomplete=False, items=[]))
    async def completion(params: lsp.CompletionParams) -> lsp.CompletionList:
        where = await at(params)
        return features.completion(*where) if where else lsp.CompletionList(is_incomplete=False, items=[])

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @safe(list)
    async def definition(params: lsp.DefinitionParams) -> list[lsp.Location]:
        where = await at(params)
        return features.definition(*where) if where else []

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @safe(list)
    async def symbols(params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        return await whole_document(params, [], lambda analysis, pos: features.document_symbols(analysis, pos),
                                    encode=server.encoder.symbols)

    @server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
    @safe(lambda: None)
    async def prepare_rename(params: lsp.PrepareRenameParams) -> lsp.Range | None:
        where = await at(params, fresh=True)
        return features.prepare_rename(*where) if where else None

    @server.feature(lsp.TEXT_DOCUMENT_RENAME, lsp.RenameOptions(prepare_provider=True))
    @safe(lambda: None)
    async def rename(params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
        where = await at(params, fresh=True)  # edits computed on older text would corrupt the document
        if where is None:
            return None
        try:
            return features.rename(*where, params.new_name, server.analyses)  # and open importers
        except ValueError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None

    @server.feature(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                    lsp.SemanticTokensLegend(token_types=features.TOKEN_TYPES, token_modifiers=features.TOKEN_MODIFIERS))
    @safe(lambda: lsp.SemanticTokens(data=[]))
    async def semantic_tokens(params: lsp.SemanticTokensParams) -> lsp.SemanticTokens:
        return await whole_document(params, lsp.SemanticTokens(data=[]),
                                    lambda analysis, pos: features.semantic_tokens(analysis, pos),
                                    encode=server.encoder.tokens)

    def views() -> list[tuple[Analysis, features.Positions]]:
        """Every open document's newest analysis (for features that look across documents)."""
        return [(a, server.positions(u, a)) for u, a in list(server.analyses.items()) if server.document(u)]

    @server.feature(lsp.TEXT_DOCUMENT_INLAY_HINT, lsp.InlayHintOptions(resolve_provider=False))
    @safe(list)
    async def inlay_hints(params: lsp.InlayHintParams) -> list[lsp.InlayHint]:
        lines = params.range.start.line, params.range.end.line
        return await whole_document(params, [], lambda analysis, pos, others: navigation.inlay_hints(
            analysis, pos, *lines, others), across=True)

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    @safe(list)
    async def references(params: lsp.ReferenceParams) -> list[lsp.Location]:
        where = await at(params)
        if where is None:
            return []
        return navigation.references(*where, params.context.include_declaration, views())

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
    @safe(list)
    async def document_highlight(params: lsp.DocumentHighlightParams) -> list[lsp.DocumentHighlight]:
        where = await at(params)
        return navigation.document_highlights(*where) if where else []

    @server.feature(lsp.TEXT_DOCUMENT_CODE_LENS, lsp.CodeLensOptions(resolve_provider=False))
    @safe(list)
    async def code_lens(params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
        return await whole_document(params, [], navigation.code_lenses, across=True)

    @server.feature(lsp.TEXT_DOCUMENT_SIGNATURE_HELP,
                    lsp.SignatureHelpOptions(trigger_characters=["(", ","], retrigger_characters=["="]))
    @safe(lambda: None)
    async def signature_help(params: lsp.SignatureHelpParams) -> lsp.SignatureHelp | None:
        where = await at(params)
        return navigation.signature_help(*where) if where else None

    @server.feature(lsp.TEXT_DOCUMENT_FOLDING_RANGE)
    @safe(list)
    async def folding_range(params: lsp.FoldingRangeParams) -> list[lsp.FoldingRange]:
        analysis = await server.analysis(params.text_document.uri)
        if analysis is None:
            return []
        return await server.requests.run(lambda: server.encoder.encode(navigation.folding_ranges(analysis)))

    @server.feature(lsp.WORKSPACE_SYMBOL)
    @safe(list)
    async def workspace_symbol(params: lsp.WorkspaceSymbolParams) -> list[lsp.WorkspaceSymbol]:
        for uri in list(server.workspace.text_documents):  # an analysis under way (an import closed, ...)
            await server.analysis(uri)  # is awaited briefly, as for any request, so its symbols are listed
        return navigation.workspace_symbols(views(), params.query)

    async def formatted(uri: str) -> tuple[TextDocument, str, str] | None:
        """The open document, its text at the request's moment and that text formatted, or None: the
        document is not open, has a syntax error (its diagnostic says why; the file is left alone), or was
        typed into or closed while it was formatted (edits for the old text would corrupt the newer one).

        Formatting runs on the request thread. When the document's newest analysis is of this text and
        every chunk of it parsed, the formatter is handed the chunks (and their lexemes) instead of
        parsing the file again, and lays out only the chunks it has not seen (see `fmt.format_parts`):
        a 2,000-line file formats in milliseconds after an edit, not seconds."""
        document = server.document(uri)
        if document is None:
            return None
        text = document.source
        analysis = await server.analysis(uri)  # the one in flight, if any, is awaited briefly
        root = analysis.root if analysis is not None else None
        chunked = root is not None and root.text == text and root.error is None \
            and all(chunk.module is not None for chunk in root.chunks)
        path = str(server.path_of(uri))

        def job() -> str:
            if not chunked:
                return format_text(text, path)
            assert root is not None
            return format_text(text, path, parts=[(chunk.source.text, chunk.tokens) for chunk in root.chunks])
        try:
            result = await server.requests.run(job)
        except SpeccError:
            return None
        if server.document(uri) is not document or document.source != text:
            return None
        return document, text, result

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @safe(list)
    async def formatting(params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
        done = await formatted(params.text_document.uri)
        if done is None or done[2] == done[1]:
            return []
        _, text, new_text = done
        lines = text.split("\n")
        end = lsp.Position(line=len(lines) - 1, character=server.workspace.position_codec.client_num_units(lines[-1]))
        return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=new_text)]

    @server.feature(lsp.TEXT_DOCUMENT_RANGE_FORMATTING)
    @safe(list)
    async def range_formatting(params: lsp.DocumentRangeFormattingParams) -> list[lsp.TextEdit]:
        """Format the whole document, but edit only the lines of the range (see `actions.range_edits`)."""
        done = await formatted(params.text_document.uri)
        if done is None:
            return []
        document, _, new_text = done
        return actions.range_edits(document, new_text, params.range)

    return server
