"""The LSP side: a pygls server that keeps one `Analysis` per open document.

Every handler catches everything: a bug in a feature logs a message and answers
"nothing", and a document whose analysis fails keeps its last good one, so no
input (truncations, junk, half-typed lines) can take the server down.
"""

from __future__ import annotations

import functools
import traceback
from pathlib import Path
from typing import Any, Callable, TypeVar

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from .. import __version__
from ..diagnostics import SpeccError
from ..fmt import format_text
from . import features
from .analysis import Analysis, Workspace

T = TypeVar("T")


class SpeccServer(LanguageServer):
    """A pygls server plus the documents' analyses."""

    def __init__(self) -> None:
        super().__init__("specc", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.specs = Workspace()
        self.analyses: dict[str, Analysis] = {}

    # ------------------------------------------------------------- analysis
    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri)
        return Path(path) if path else Path.cwd() / (uri.rsplit("/", 1)[-1] or "untitled.nnspec")

    def analysis(self, uri: str) -> Analysis | None:
        """The document's analysis, redone if the text changed since (None if it never succeeded)."""
        text = self.workspace.get_text_document(uri).source
        current = self.analyses.get(uri)
        if current is None or current.text != text:
            self.refresh(uri)
        return self.analyses.get(uri)

    def refresh(self, uri: str, publish: bool = False) -> None:
        """Analyze a document again (keeping the previous analysis if that fails) and publish diagnostics."""
        diagnostics: list[lsp.Diagnostic] | None = None
        try:
            text = self.workspace.get_text_document(uri).source
            if uri in self.workspace.text_documents:  # open: other documents importing it see this text
                self.specs.open(self.path_of(uri), text)
            analysis = self.specs.analyze(self.path_of(uri), text)
            self.analyses[uri] = analysis
            if publish:
                diagnostics = self.diagnostics(uri, analysis)
        except Exception as exc:  # a bug in specc: keep the last good analysis, say what happened
            self.log(f"specc: analysis of {uri} failed", exc)
            if publish:
                diagnostics = [_internal(exc)]
        if diagnostics is not None:
            version = self.workspace.get_text_document(uri).version
            self.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    def refresh_dependents(self, uri: str) -> None:
        """Re-check the other open documents that read this one (they import it)."""
        path = str(self.path_of(uri).resolve())
        for other, analysis in list(self.analyses.items()):
            if other != uri and any(str(Path(p).resolve()) == path for p in analysis.files):
                self.refresh(other, publish=True)

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

    def safe(default: Callable[[], T]) -> Callable[[Callable[[Any], T]], Callable[[Any], T]]:
        """Answer `default()` (and log) instead of failing, whatever goes wrong."""
        def wrap(handler: Callable[[Any], T]) -> Callable[[Any], T]:
            @functools.wraps(handler)
            def run(params: Any) -> T:
                try:
                    return handler(params)
                except JsonRpcInvalidParams:
                    raise  # a deliberate answer (e.g. an impossible new name), not a failure
                except Exception as exc:
                    server.log(f"specc: {handler.__name__} failed", exc)
                    return default()
            return run
        return wrap

    def at(params: Any) -> tuple[Analysis, features.Positions, int, int] | None:
        uri = params.text_document.uri
        analysis = server.analysis(uri)
        if analysis is None:
            return None
        pos = server.positions(uri, analysis)
        line, col = pos.from_client(params.position)
        return analysis, pos, line, col

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    @safe(lambda: None)
    def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        server.refresh(params.text_document.uri, publish=True)
        server.refresh_dependents(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    @safe(lambda: None)
    def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        server.refresh(params.text_document.uri, publish=True)
        server.refresh_dependents(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    @safe(lambda: None)
    def did_save(params: lsp.DidSaveTextDocumentParams) -> None:
        server.refresh(params.text_document.uri, publish=True)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    @safe(lambda: None)
    def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        server.analyses.pop(uri, None)
        server.specs.close(server.path_of(uri))
        server.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        server.refresh_dependents(uri)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @safe(lambda: None)
    def hover(params: lsp.HoverParams) -> lsp.Hover | None:
        where = at(params)
        return features.hover(*where) if where else None

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ",", ":", " "]))
    @safe(lambda: lsp.CompletionList(is_incomplete=False, items=[]))
    def completion(params: lsp.CompletionParams) -> lsp.CompletionList:
        where = at(params)
        return features.completion(*where) if where else lsp.CompletionList(is_incomplete=False, items=[])

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @safe(list)
    def definition(params: lsp.DefinitionParams) -> list[lsp.Location]:
        where = at(params)
        return features.definition(*where) if where else []

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @safe(list)
    def symbols(params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        uri = params.text_document.uri
        analysis = server.analysis(uri)
        return features.document_symbols(analysis, server.positions(uri, analysis)) if analysis else []

    @server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
    @safe(lambda: None)
    def prepare_rename(params: lsp.PrepareRenameParams) -> lsp.Range | None:
        where = at(params)
        return features.prepare_rename(*where) if where else None

    @server.feature(lsp.TEXT_DOCUMENT_RENAME, lsp.RenameOptions(prepare_provider=True))
    @safe(lambda: None)
    def rename(params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
        where = at(params)
        if where is None:
            return None
        try:
            return features.rename(*where, params.new_name)
        except ValueError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None

    @server.feature(lsp.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                    lsp.SemanticTokensLegend(token_types=features.TOKEN_TYPES, token_modifiers=features.TOKEN_MODIFIERS))
    @safe(lambda: lsp.SemanticTokens(data=[]))
    def semantic_tokens(params: lsp.SemanticTokensParams) -> lsp.SemanticTokens:
        uri = params.text_document.uri
        analysis = server.analysis(uri)
        if analysis is None:
            return lsp.SemanticTokens(data=[])
        return features.semantic_tokens(analysis, server.positions(uri, analysis))

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    @safe(list)
    def formatting(params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
        document = server.workspace.get_text_document(params.text_document.uri)
        text = document.source
        try:
            formatted = format_text(text, str(server.path_of(params.text_document.uri)))
        except SpeccError:
            return []  # a file with a syntax error is left alone; its diagnostic says why
        if formatted == text:
            return []
        lines = text.split("\n")
        end = lsp.Position(line=len(lines) - 1, character=server.workspace.position_codec.client_num_units(lines[-1]))
        return [lsp.TextEdit(range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), new_text=formatted)]

    return server
