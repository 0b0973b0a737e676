"""What the language server knows about a document: `specc check`'s diagnostics, and
the syntax trees and typed values that hover, completion and navigation read.

Diagnostics come from the compiler itself (`specc.compiler.load_program`,
`compilable`, `compile_graph`), run on the editor's text: the compiler is given
a loader that reads open documents from their buffers and everything else from
disk, so imports resolve relative to the document as on the command line. Every model of the file is compiled (the CLI stops at the first failing
one), and each gets its own diagnostic.

Analysis is incremental, so that a keystroke in a 2,000-line file costs little:

- a file is cut into *chunks*, one per top-level item: a new chunk starts at each
  line that begins (at column 0) with `model NAME`, `block NAME`, `compress NAME`
  or `import "`, which in a well-formed file can only start an item. Each chunk is
  parsed by `specc.parser.parse` on its own, with chunk-relative positions, and
  cached by its text, so an edit re-parses one chunk and moving a chunk up or
  down re-parses nothing. `Spans` keep pointing into their chunk's `SourceFile`;
  `Analysis.locate` maps them to file positions. When a chunk's syntax error
  might read differently in the whole file (it runs into the end of the chunk),
  the whole file is parsed instead, so syntax errors are exactly the CLI's;
- the result of compiling a model is cached under the chunks it can see: its
  own, those of every definition it calls (transitively) and the names it calls
  that are not defined, so an edit recompiles only the models it can affect.
  The compiler is shown exactly those definitions (not the whole file), which
  keeps the cache honest and makes checking a file of n models linear in n
  rather than quadratic (each compile would otherwise re-read every definition).

Opening a big file parses it in a fraction of the time its models take to compile, so an
analysis with many models left to compile first hands out a *stage*: the diagnostics of the
syntax and of the file as a whole, which the server publishes at once (`Workspace.analyze`'s
`staged`); the models' diagnostics follow when they are compiled.

Analysis runs on the language server's worker thread; `analyze` takes a
`cancelled` callback, asked between chunks and between models, so a newer edit stops a stale one.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import ast, compiler, limits, ops
from ..diagnostics import Note, SourceFile, Span, SpeccError, load_source
from ..escape import printable
from ..fmt import Lexeme, lex
from ..ir import Graph, Node
from ..parser import parse

_BUILDER_ERRORS = ("E0102", "E0105")  # raised while building the tree, so only once Lark has parsed the whole text
_ITEM_LINE = re.compile(r'(?:model|block|compress)[ \t\f]+[A-Za-z_]|import[ \t\f]*"')


@dataclass(eq=False)
class Chunk:
    """One top-level item's text, parsed on its own (positions relative to the chunk)."""

    source: SourceFile
    module: ast.Module | None
    error: BaseException | None
    _tokens: list[Lexeme] | None = None
    occurrences: Any = None  # its names, indexed by `specc.lsp.index.occurrences` on first use

    @property
    def tokens(self) -> list[Lexeme]:
        """The chunk's lexemes (comments and blanks included), for the editor features."""
        if self._tokens is None:
            self._tokens = lex(self.source.text)
        return self._tokens


@dataclass(eq=False)
class ParsedFile:
    """A file cut into chunks; `module` is the whole file's syntax tree if every chunk parsed."""

    path: str
    text: str
    chunks: list[Chunk]
    starts: list[int]  # 0-based file line of each chunk's first line
    module: ast.Module | None
    error: SpeccError | None  # the file's syntax error, positioned in the file, as the CLI reports it
    partial: ast.Module  # the items of every chunk that parsed (for features while the file is broken)
    whole: SourceFile = field(init=False)

    def __post_init__(self) -> None:
        self.whole = SourceFile(self.path, self.text)


@dataclass(eq=False)
class ModelInfo:
    """A compiled model: its values after shape inference (dead ones included), in creation order."""

    name: str
    nodes: list[Node]
    constants: dict[str, object]
    inputs: list[Node]
    outputs: dict[str, Node]
    live: set[str] = field(default_factory=set)  # the values left after dead-code elimination


@dataclass(eq=False)
class _Outcome:
    error: BaseException | None
    model: ModelInfo | None
    sources: tuple[SourceFile, ...] = ()  # the chunks its cache key names by id(), kept alive so no id is reused


def split_chunks(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each chunk; the first chunk holds whatever precedes the first item."""
    out: list[tuple[int, str]] = []
    start_line, start_offset, line, offset = 0, 0, 0, 0
    while True:
        nl = text.find("\n", offset)
        if line > 0 and _ITEM_LINE.match(text, offset):
            out.append((start_line, text[start_offset:offset]))
            start_line, start_offset = line, offset
        if nl < 0:
            break
        offset, line = nl + 1, line + 1
    out.append((start_line, text[start_offset:]))
    return out


class ChunkCache:
    """Parsed chunks by (path, text, occurrence); forgets those no analysis used lately."""

    def __init__(self) -> None:
        self._chunks: dict[tuple[str, str, int], Chunk] = {}
        self._used: set[tuple[str, str, int]] = set()

    def get(self, path: str, text: str, occurrence: int) -> Chunk:
        key = (path, text, occurrence)
        self._used.add(key)
        chunk = self._chunks.get(key)
        if chunk is None:
            source = SourceFile(path, text)
            try:
                chunk = Chunk(source, parse(source), None)
            except Exception as exc:  # SpeccError, or a parser bug (e.g. RecursionError), re-raised by `load`
                chunk = Chunk(source, None, exc)
            self._chunks[key] = chunk
        return chunk

    def sweep(self) -> None:
        """Drop chunks not used since the last sweep (call it after each round of analyses)."""
        if len(self._chunks) > 2 * len(self._used) + 64:
            self._chunks = {k: v for k, v in self._chunks.items() if k in self._used}
        self._used = set()


def _merged(path: str, modules: list[ast.Module]) -> ast.Module:
    return ast.Module(path, [i for m in modules for i in m.imports], [d for m in modules for d in m.definitions],
                      [c for m in modules for c in m.compressions])


def parse_file(cache: ChunkCache, path: str, text: str, checkpoint: Callable[[], None] = lambda: None) -> ParsedFile:
    """Parse a file chunk by chunk; its `error` is the first syntax error `specc.parser.parse` would raise.
    `checkpoint` is called before each chunk (it raises to stop)."""
    seen: dict[str, int] = {}
    chunks, starts = [], []
    for start, chunk_text in split_chunks(text):
        checkpoint()
        occurrence = seen[chunk_text] = seen.get(chunk_text, -1) + 1
        chunks.append(cache.get(path, chunk_text, occurrence))
        starts.append(start)
    parsed = ParsedFile(path, text, chunks, starts, None, None,
                        _merged(path, [c.module for c in chunks if c.module is not None]))
    failed = [i for i, c in enumerate(chunks) if c.error is not None]
    if not failed:
        parsed.module = parsed.partial
        return parsed
    lark_level = [i for i in failed if not (isinstance(chunks[i].error, SpeccError)
                                            and chunks[i].error.code in _BUILDER_ERRORS)]
    first = lark_level[0] if lark_level else failed[0]
    error = chunks[first].error
    if isinstance(error, SpeccError) and not (error.code == "E0103" and first < len(chunks) - 1):
        parsed.error = _shift_error(error, lambda span: _shift(span, parsed, first))
        return parsed
    # an item runs past the end of its chunk, or the parser broke: parse the whole file, as the CLI does
    try:
        parsed.module = parse(parsed.whole)
    except SpeccError as exc:
        parsed.error = exc
    return parsed


def _parse_buffer(cache: ChunkCache, path: str, text: str, checkpoint: Callable[[], None]) -> ParsedFile:
    """`parse_file` for an editor buffer, which is held to the `file_bytes` limit as a file read from
    disk is (an over-long one is analyzed as empty, with the limit's error)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= limits.value("file_bytes"):
        return parse_file(cache, path, text, checkpoint)
    parsed = parse_file(cache, path, "")
    parsed.module, parsed.error = None, limits.exceeded("file_bytes", size, None, f"spec file {printable(path)}")
    return parsed


def _shift(span: Span, parsed: ParsedFile, index: int) -> Span:
    offset = parsed.starts[index]
    return Span(parsed.whole, span.line + offset, span.col, span.end_line + offset, span.end_col)


def _shift_error(error: SpeccError, move: Callable[[Span], Span | None]) -> SpeccError:
    """A copy of `error` with every span moved (spans `move` returns None for stay as they are)."""
    def m(span: Span | None) -> Span | None:
        return None if span is None else (move(span) or span)

    notes = [Note(n.message, m(n.span)) for n in error.notes]
    return SpeccError(error.code, error.message, m(error.span), notes, error.help)


# ------------------------------------------------------------------ analysis
@dataclass(eq=False)
class Analysis:
    """One document version: its diagnostics and what the editor features need."""

    path: Path
    text: str
    root: ParsedFile
    files: dict[str, ParsedFile]  # every file read, by the path string the compiler used
    errors: list[BaseException]  # diagnostics, positioned in their files; non-SpeccErrors are compiler bugs
    definitions: dict[str, ast.Definition]  # what the document can call (its own and imported)
    models: dict[str, ModelInfo]  # by model name: this version's compile, or the last one that succeeded
    # every file it read or tried to read (an import that is missing is in it and not in `files`, so
    # that creating the file re-checks this document)
    reads: frozenset[str] = frozenset()
    _where: dict[int, tuple[ParsedFile, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for parsed in self.files.values():
            for i, chunk in enumerate(parsed.chunks):
                self._where[id(chunk.source)] = (parsed, i)

    @property
    def module(self) -> ast.Module:
        """The document's syntax tree, or the items that parse while it has a syntax error."""
        return self.root.module or self.root.partial

    def chunk_of(self, span: Span) -> tuple[ParsedFile, int] | None:
        """The file and chunk index a span points into (None for a span of no chunk of this analysis)."""
        hit = self._where.get(id(span.source))
        if hit is None or hit[0].chunks[hit[1]].source is not span.source:
            return None
        return hit

    def locate(self, span: Span) -> tuple[str, int, int, int, int] | None:
        """(path, line, col, end line, end col) of a span in its file: 0-based lines, 0-based code-point columns."""
        hit = self.chunk_of(span)
        if hit is None:
            if span.source.path in self.files and span.source.text == self.files[span.source.path].text:
                return span.path, span.line - 1, span.col - 1, span.end_line - 1, span.end_col - 1
            return None
        parsed, i = hit
        offset = parsed.starts[i]
        return parsed.path, span.line - 1 + offset, span.col - 1, span.end_line - 1 + offset, span.end_col - 1

    def chunk_at(self, line: int) -> tuple[Chunk, int]:
        """The document's chunk holding 0-based file line `line`, and the chunk's first line."""
        i = max(0, bisect.bisect_right(self.root.starts, line) - 1)
        return self.root.chunks[i], self.root.starts[i]


_WARM_UP = """model warm_up(width: int = 8) {
    input x: f32[B, width]
    h = relu(linear(x, width))
    output y = softmax(h, dim=-1)
}
"""


def warm_up_parser() -> None:
    """Pay the one-time costs of parsing before the first document arrives: loading the Lark parser's
    tables (about 10 ms; 0.1-0.3 s where they must be built), the lexer and the editor features' keyword table. The server runs this on its analysis
    worker as it starts, while the editor is still sending `initialize`."""
    from ..fmt import keywords
    from ..parser import lark_parser
    lark_parser()
    lex("x")  # builds the lexer
    keywords()


def warm_up() -> None:
    """Pay the one-time costs of compiling too: the first lowering, shape inference and passes (half a
    second or more on a loaded machine). The server runs this after `warm_up_parser`, unless a document
    comes first: that document's analysis would wait for it, while its parse (and the diagnostics of
    its first stage) need none of it; its first compile then pays these costs itself. Uses a
    workspace of its own: no cache of the server's sees it."""
    warm_up_parser()
    workspace = Workspace()
    path = Path.cwd() / "<specc warm-up>.nnspec"
    analysis = workspace.analyze(path, _WARM_UP)
    for chunk in analysis.root.chunks:
        chunk.tokens  # noqa: B018 - lexes


STAGE_AFTER = 8  # models left to compile for which an analysis first hands out the diagnostics it has


class Cancelled(Exception):
    """An analysis stopped because its result is no longer wanted (the document changed again)."""


class Workspace:
    """Open documents and the caches shared by their analyses."""

    def __init__(self) -> None:
        self.buffers: dict[Path, str] = {}  # open documents: what the editor shows, saved or not
        self.chunks = ChunkCache()
        self._outcomes: dict[tuple, _Outcome] = {}
        self._good: dict[tuple[str, str], ModelInfo] = {}  # (file, model) -> last successful compile
        self._names: dict[int, tuple[object, frozenset[str]]] = {}  # id(definition) -> names it calls

    def open(self, path: Path, text: str) -> None:
        self.buffers[path.resolve()] = text

    def close(self, path: Path) -> None:
        self.buffers.pop(path.resolve(), None)

    def analyze(self, path: Path, text: str | None = None,
                cancelled: Callable[[], bool] | None = None,
                staged: Callable[[Analysis], None] | None = None) -> Analysis:
        """Check a document as `specc check` would and index the result. The document's text is
        `text` if given, else its open buffer, else the file; the files it imports are read from
        their open buffers, else from disk. Raises `Cancelled` as soon as `cancelled()` says so.

        `staged` is handed a first, partial analysis when many models are still to compile (opening
        a big file: parsing takes a fraction of the time compiling its models does): its diagnostics
        are those of the syntax and of the file as a whole (imports, duplicate names), and those of the
        models whose compiles are cached; the models' own follow in the analysis returned."""
        files: dict[str, ParsedFile] = {}
        texts = dict(self.buffers)

        def checkpoint() -> None:
            if cancelled is not None and cancelled():
                raise Cancelled(str(path))

        if text is not None:
            texts[path.resolve()] = text

        attempted: set[str] = set()

        def read(p: str | Path) -> ParsedFile:
            key = str(p)
            attempted.add(key)
            if key not in files:
                buffered = texts.get(Path(p).resolve())
                if buffered is None:
                    files[key] = parse_file(self.chunks, key, load_source(p).text, checkpoint)
                else:
                    files[key] = _parse_buffer(self.chunks, key, buffered, checkpoint)
            return files[key]

        def load(p: str | Path) -> ast.Module:
            parsed = read(p)
            if parsed.error is not None:
                raise _copy(parsed.error)
            assert parsed.module is not None
            return parsed.module

        key = str(path)
        root = read(key)
        targets = _compilable(root)  # what `specc check` compiles (while the file is broken: what parses)
        errors: list[BaseException] = []
        definitions = {d.name: d for d in root.partial.definitions}
        if root.error is not None:
            errors.append(root.error)
            self._imports_for_navigation(root, read, definitions)
        else:
            try:
                program = compiler.load_program(key, load)[1]
            except Cancelled:
                raise
            except Exception as exc:  # a SpeccError; anything else is a compiler bug, reported as such
                program = None
                if targets:  # the CLI reads imports only to compile a model
                    errors.append(exc)
            if program is not None:
                definitions = dict(program.definitions)
                if staged is not None:
                    self._stage(path, root, files, errors, definitions, targets, staged)
                # a compressed model may compress another of the file's (`compress frozen = masks`)
                visible = {**{t.name: t for t in targets if isinstance(t, ast.CompressDef)}, **program.definitions}
                for target in targets:
                    checkpoint()
                    outcome = self._compile(key, target, visible)
                    if outcome.error is not None:
                        errors.append(_suggest_names(outcome.error, definitions, root))
                    if outcome.model is not None:
                        self._good[(key, target.name)] = outcome.model
        models = {t.name: self._good[(key, t.name)] for t in targets if (key, t.name) in self._good}
        analysis = Analysis(Path(path), root.text, root, files, [], definitions, models, frozenset(attempted))
        analysis.errors = _dedupe([_place(e, analysis) for e in errors])
        self.chunks.sweep()
        return analysis

    def _stage(self, path: Path, root: ParsedFile, files: dict[str, ParsedFile], errors: list[BaseException],
               definitions: dict[str, ast.Definition], targets: list[compiler.Target],
               staged: Callable[[Analysis], None]) -> None:
        """Hand `staged` the analysis so far if at least `STAGE_AFTER` models are still to compile."""
        key = str(path)
        if any(k[0] == key for k in self._outcomes):
            cached = {t.name: self._outcomes.get(self._outcome_key(key, t, definitions)) for t in targets}
        else:  # nothing of this file compiled yet (opening it): no model's dependencies need working out now
            cached = dict.fromkeys((t.name for t in targets), None)
        if sum(outcome is None for outcome in cached.values()) < STAGE_AFTER:
            return
        so_far = list(errors) + [o.error for o in cached.values() if o is not None and o.error is not None]
        models = {t.name: self._good[(key, t.name)] for t in targets if (key, t.name) in self._good}
        partial = Analysis(Path(path), root.text, root, dict(files), [], dict(definitions), models)
        partial.errors = _dedupe([_place(e, partial) for e in so_far])
        staged(partial)

    def _imports_for_navigation(self, root: ParsedFile, read: Callable[[str | Path], ParsedFile],
                                definitions: dict[str, ast.Definition]) -> None:
        """While the document does not parse, still know what its (direct) imports define."""
        importer = Path(root.path)
        for imp in root.partial.imports:
            try:  # the same project rule as the compiler's: .nnspec files under the document's directory
                module = read(compiler.resolve_import(imp, importer, [], [importer.parent.resolve()], imp.span)).partial
            except Cancelled:
                raise
            except Exception:  # a missing import is the compiler's to report, once the file parses
                continue
            for d in module.definitions:
                definitions.setdefault(d.name, d)

    def _outcome_key(self, path: str, target: compiler.Target, definitions: dict[str, ast.Definition],
                     sources: list[tuple[str, SourceFile | None]] | None = None) -> tuple:
        """A model's compile is cached under its file, name and kind and the chunks it can see."""
        if sources is None:
            sources = self._dependencies(target, definitions)
        return (path, target.name, type(target).__name__) + tuple(
            (name, id(source) if source is not None else 0) for name, source in sources)

    def _compile(self, path: str, target: compiler.Target,
                 definitions: dict[str, ast.Definition | ast.CompressDef]) -> _Outcome:
        sources = self._dependencies(target, definitions)
        key = self._outcome_key(path, target, definitions, sources)
        outcome = self._outcomes.get(key)
        if outcome is None:
            captured: list[ModelInfo] = []

            def after_each(stage: str, graph: Graph) -> None:
                if stage == "infer_shapes":
                    order = sorted(graph.nx.nodes, key=lambda n: graph.nx.nodes[n]["order"])
                    nodes = [graph.node(n) for n in order]
                    captured.append(ModelInfo(graph.name, nodes, dict(graph.constants),
                                              [graph.node(n) for n in graph.inputs],
                                              {o: graph.node(v) for o, v in graph.outputs.items()}))

            # the file as this model sees it: itself and what it calls, wherever defined (imports and
            # duplicate names were checked by `load_program` on the whole file before any compile)
            seen = [definitions[name] for name, _ in sources[1:] if name in definitions] + [target]
            module = ast.Module(path, [], [d for d in seen if isinstance(d, ast.Definition)],
                                [d for d in seen if isinstance(d, ast.CompressDef)])
            try:
                # diagnostics come from lowering and shape inference, and dead code from its elimination;
                # the fusion passes raise nothing a user caused, so the editor skips them
                graph = compiler.compile_graph(path, target.name, _point(path, target, module), after_each=after_each,
                                               loader=lambda _: module, pipeline=("infer_shapes", "eliminate_dead_code"))
                if captured:
                    captured[0].live = set(graph.nx.nodes)
                outcome = _Outcome(None, captured[0] if captured else None)
            except Exception as exc:  # SpeccError: a diagnostic; anything else: a compiler bug, reported as such
                outcome = _Outcome(exc, None)
            outcome.sources = tuple(source for _, source in sources if source is not None)
            self._outcomes[key] = outcome
            if len(self._outcomes) > 4096:
                self._outcomes = dict(list(self._outcomes.items())[-2048:])
        return outcome

    def _dependencies(self, target: compiler.Target,
                      definitions: dict[str, ast.Definition]) -> list[tuple[str, SourceFile | None]]:
        """The chunks a model's compile can see: its own, and for each name it calls (transitively)
        the chunk defining it, or None for a name that is no definition (an op, or a mistake)."""
        seen: dict[str, SourceFile | None] = {}
        todo: list[Any] = [target]
        while todo:
            item = todo.pop()
            for name in self._called(item):
                if name not in seen:
                    d = definitions.get(name)
                    seen[name] = d.span.source if d is not None else None
                    if d is not None:
                        todo.append(d)
        return [("", target.span.source)] + sorted(seen.items(), key=lambda kv: kv[0])

    def _called(self, item: Any) -> frozenset[str]:
        hit = self._names.get(id(item))
        if hit is None or hit[0] is not item:
            names = set(_call_names(item))
            if isinstance(item, ast.CompressDef):
                names.add(item.base)
            if len(self._names) > 50_000:
                self._names.clear()
            hit = self._names[id(item)] = (item, frozenset(names))
        return hit[1]


def _point(path: str, target: compiler.Target, module: ast.Module) -> dict[str, Any]:
    """The parameter values a model is checked with: none (its defaults), but for a search space (choices,
    specc/space.py) the space is counted first (its errors: an empty space, a domain read from a continuous
    choice) and, where a choice has no default, its first point is checked instead."""
    definition = target
    if isinstance(definition, ast.CompressDef):
        definition = next((d for d in module.definitions if d.name == target.base), None)
    if not isinstance(definition, ast.Definition) or not any(p.choice is not None for p in definition.params):
        return {}
    from ..space import Space

    space = Space.from_loaded(compiler.load_project(path, lambda _: module), target.name, path)
    if all(c.default is not None for c in space.choices):
        return {}
    return space.unrank(0)


def _compilable(parsed: ParsedFile) -> list[compiler.Target]:
    """`compiler.compilable`, in file order (its own sort sees chunk-relative positions)."""
    chunk = {id(c.source): i for i, c in enumerate(parsed.chunks)}
    return sorted(compiler.compilable(parsed.module or parsed.partial),
                  key=lambda t: (chunk.get(id(t.span.source), 0), t.span.line, t.span.col))


_UNKNOWN = {"E0201": re.compile(r"unknown op `([^`]+)`"),  # a call of an op or block
            "E0806": re.compile(r".* but `([^`]+)` is not defined")}  # a compress base model


def _suggest_names(error: BaseException, definitions: dict[str, ast.Definition], root: ParsedFile) -> BaseException:
    """The did-you-mean of an unknown op or compress base, against every definition the document can
    call: a model's compile is shown only what it calls (so that its cached result stays honest), which
    leaves out the block or model a misspelled name meant."""
    pattern = _UNKNOWN.get(error.code) if isinstance(error, SpeccError) else None
    unknown = pattern.fullmatch(error.message) if pattern is not None else None
    if unknown is None or error.help is not None:
        return error
    found = _copy(error)
    if error.code == "E0201":
        found.help = ops.suggest(unknown[1], definitions)
    else:
        found.help = compiler.suggest_base(unknown[1], definitions, root.partial.compressions)
    return found


def _copy(error: SpeccError) -> SpeccError:
    """A fresh copy of a cached error: the compiler adds notes to errors it re-raises."""
    return SpeccError(error.code, error.message, error.span, list(error.notes), error.help)


def _call_names(node: Any) -> Iterator[str]:
    """Every name called anywhere inside a syntax tree node, and every block a value may name: a choice of
    blocks (`mixer: block in {a, b}`), a default, and a bare name passed to a block (`layer(x, mix_a)`)."""
    if isinstance(node, ast.Call):
        yield node.func
        yield from (a.id for a in [*node.args, *(kw.value for kw in node.kwargs)] if isinstance(a, ast.Name))
    if isinstance(node, ast.Param) and node.type in ("op", "block"):
        yield from (e.id for e in [*(node.choice.items if node.choice else []), node.default] if isinstance(e, ast.Name))
    if isinstance(node, list):
        for item in node:
            yield from _call_names(item)
    elif is_dataclass(node) and not isinstance(node, Span):
        for f in fields(node):
            if not f.name.endswith("span"):
                yield from _call_names(getattr(node, f.name))


def _place(error: BaseException, analysis: Analysis) -> BaseException:
    """A diagnostic with spans in file positions (chunk spans moved to where their chunk now is)."""
    if not isinstance(error, SpeccError):
        return error

    def move(span: Span) -> Span | None:
        hit = analysis.chunk_of(span)
        return None if hit is None else _shift(span, hit[0], hit[1])

    return _shift_error(error, move)


def _dedupe(errors: list[BaseException]) -> list[BaseException]:
    seen: set[tuple] = set()
    out = []
    for e in errors:
        if isinstance(e, SpeccError):
            s = e.span
            key: tuple = (e.code, e.message, (s.path, s.line, s.col, s.end_line, s.end_col) if s else None)
        else:
            key = (type(e).__name__, str(e))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
