"""The front door: file -> checked, optimized IR, used by the CLI and the tests."""

from __future__ import annotations


import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import ast, limits, parallel, ties
from .diagnostics import Note, Span, SpeccError, did_you_mean, load_source
from .ir import Graph
from .lower import Program, lower
from .parser import parse
from .passes import DEFAULT_PIPELINE, run_pipeline


def load(path: str | Path) -> ast.Module:
    """Read and parse one spec file (imports are not followed; see `load_program`)."""
    return parse(load_source(path))


Loader = Callable[[str | Path], ast.Module]
IMPORT_ERROR = "E0502"


@dataclass
class Loaded:
    """A spec file with everything it imports, read once and compiled model by model."""

    module: ast.Module  # the file itself
    program: Program  # every definition visible to it
    files: list[Path] = field(default_factory=list)  # every file read (resolved): the file, then its imports


def load_project(path: str | Path, loader: Loader = load, include: Sequence[str | Path] = ()) -> Loaded:
    """Parse a file and, transitively, the files it imports.

    An import is looked up relative to the importing file, then in each `include` directory (`-I`).
    It must be a `.nnspec` file inside the project: the importing file's directory tree or an
    include directory's, after resolving symlinks and `..` (so a spec cannot make specc read
    `/etc/passwd` or walk out of its tree). Definitions from all files share one namespace; defining
    a name twice is an error that points at both places, and an import cycle is reported with its
    chain. The traversal is iterative (a chain of thousands of imports is no deep recursion) and the
    number of files is bounded by the `files` limit. `loader` reads one file (the language server
    passes one that reads open editor buffers).
    """
    root_path = Path(path).absolute()
    roots = [root_path.parent.resolve()] + [Path(d).resolve() for d in include]
    searched = [Path(d) for d in include]
    root = loader(path)
    definitions: dict[str, ast.Definition] = {}
    loaded = Loaded(root, Program(definitions), [root_path.resolve()])
    seen = set(loaded.files)
    # depth-first, as a recursion would go: (module, its resolved path, its imports still to visit)
    stack: list[tuple[ast.Module, Path, Iterator[ast.Import]]] = [(root, loaded.files[0], iter(root.imports))]
    on_stack = set(loaded.files)
    while stack:
        module, module_path, pending = stack[-1]
        imp = next(pending, None)
        if imp is None:
            stack.pop()
            on_stack.discard(module_path)
            _define(definitions, module.definitions)
            continue
        span = _string_span(imp)
        target = resolve_import(imp, Path(module.path), searched, roots, span)
        if target in on_stack:
            chain = [p for _, p, _ in stack]
            cycle = " -> ".join(p.name for p in chain[chain.index(target):] + [target])
            raise SpeccError("E0501", f"import cycle: {cycle}", imp.span)
        if target in seen:
            continue
        seen.add(target)
        limits.check("files", len(seen), span, "this program")
        loaded.files.append(target)
        try:
            imported = loader(target)
        except SpeccError as err:
            if err.code == "E0001":  # the reader's "cannot read": an import error, at the import
                raise SpeccError(IMPORT_ERROR, f"cannot import \"{imp.path}\": {err.message}", span) from None
            if err.span is None:
                err.span = span
            raise err.with_note(Note(f"while importing \"{imp.path}\"", span)) from None
        stack.append((imported, target, iter(imported.imports)))
        on_stack.add(target)
    for comp in root.compressions:
        previous = definitions.get(comp.name)
        if previous is not None:
            raise SpeccError("E0221", f"`{comp.name}` is defined twice", comp.name_span,
                             [Note("first defined here", previous.name_span)])
    return loaded


def load_program(path: str | Path, loader: Loader = load, include: Sequence[str | Path] = ()
                 ) -> tuple[ast.Module, Program]:
    """`load_project`'s file and definitions."""
    loaded = load_project(path, loader, include)
    return loaded.module, loaded.program


def _define(definitions: dict[str, ast.Definition], new: list[ast.Definition]) -> None:
    for definition in new:
        previous = definitions.get(definition.name)
        if previous is not None and previous is not definition:
            raise SpeccError("E0221", f"`{definition.name}` is defined twice", definition.name_span,
                             [Note("first defined here", previous.name_span)])
        definitions[definition.name] = definition


def _string_span(imp: ast.Import) -> Span:
    """The span of the quoted file name of an import (errors about the file point at it)."""
    s = imp.span
    col = s.end_col - len(imp.path) - 2
    if s.source.line(s.end_line)[col - 1:col] == '"':
        return Span(s.source, s.end_line, col, s.end_line, s.end_col)
    return s


def resolve_import(imp: ast.Import, importer: Path, searched: list[Path], roots: list[Path], span: Span) -> Path:
    """The file an import names: relative to the importer, else in the first include directory that
    has it; a located error if it is not a `.nnspec` file inside the project."""
    written = Path(imp.path)
    candidates = [importer.parent / written] + [d / written for d in searched if not written.is_absolute()]
    target = next((c for c in candidates if os.path.lexists(c)), candidates[0]).resolve()
    where = " or ".join(str(r) for r in roots)
    if not any(target.is_relative_to(r) for r in roots):
        raise SpeccError(IMPORT_ERROR, f"cannot import \"{imp.path}\": {target} is outside the project", span,
                         help=f"imports are .nnspec files in {where} or below; pass another directory "
                              "with -I DIR if this is intended")
    if target.suffix != ".nnspec":
        raise SpeccError(IMPORT_ERROR, f"cannot import \"{imp.path}\": {target} is not a .nnspec file", span,
                         help="only spec files (ending in .nnspec) can be imported")
    return target


Target = ast.Definition | ast.CompressDef


def compilable(module: ast.Module) -> list[Target]:
    """What a file can compile: its models and its compressed models, in file order."""
    targets: list[Target] = [d for d in module.definitions if d.kind == "model"] + list(module.compressions)
    return sorted(targets, key=lambda t: (t.span.line, t.span.col))


def select_model(module: ast.Module, name: str | None) -> Target:
    """The model to compile: the one named, or the file's only model."""
    targets = compilable(module)
    if name is not None:
        for t in targets:
            if t.name == name:
                return t
        names = ", ".join(t.name for t in targets) or "none"
        raise SpeccError("E0220", f"no model named `{name}` in {module.path} (models: {names})", None)
    if len(targets) == 1:
        return targets[0]
    if not targets:
        raise SpeccError("E0220", f"{module.path} defines no model", None)
    raise SpeccError("E0220", f"{module.path} defines several models ({', '.join(t.name for t in targets)}); "
                              "choose one with --model", None)


def compile_graph(path: str | Path, model: str | None = None, params: dict[str, Any] | None = None,
                  after_each: Callable[[str, Graph], None] | None = None,
                  pipeline: tuple[str, ...] = DEFAULT_PIPELINE, loader: Loader = load,
                  include: Sequence[str | Path] = (), loaded: Loaded | None = None,
                  calibration: Any = None) -> Graph:
    """Parse, lower and optimize one model (or compressed model) of a spec file.

    `loaded` is the file already loaded with `load_project`: `specc check` compiles every model of
    a file from one load instead of re-reading and re-parsing it per model. `calibration`: see
    `compile_target`.
    """
    if loaded is None:
        loaded = load_project(path, loader, include)
    return compile_target(loaded, select_model(loaded.module, model), params, after_each, pipeline, str(path),
                          calibration)


def compile_target(loaded: Loaded, target: Target, params: dict[str, Any] | None = None,
                   after_each: Callable[[str, Graph], None] | None = None,
                   pipeline: tuple[str, ...] = DEFAULT_PIPELINE, source_path: str | None = None,
                   calibration: Any = None) -> Graph:
    """Lower and optimize one model, compressed model, or model an import defines, of a loaded program;
    `source_path` (for headers of generated code) defaults to the file that defines it. `calibration`
    (a `specc.transforms.Calibration`, `specc compress --calib`) lets compression stages measure."""
    if isinstance(target, ast.CompressDef):
        graph = _compressed(loaded.program, target, params, calibration, loaded.module.compressions)
    else:
        graph = lower(loaded.program, target, params)
    graph.source_path = source_path or target.span.source.path
    run_pipeline(graph, pipeline, after_each)
    if "infer_shapes" in pipeline:  # a tie needs the parameters' shapes (a compression may also have replaced one)
        ties.check(graph)
        parallel.plan(graph)  # `shard` statements name layers with the op their style splits (specc/parallel.py)
    return graph


def base_target(loaded: Loaded, name: str) -> Target | ast.Definition | None:
    """What `compress X = NAME` compresses: a definition (a model; a block is an error when compiled),
    another compressed model of the same file (`compress frozen = masks { ... }`, whose weights are
    then that compressed model's), or None when NAME is neither."""
    compressions = {c.name: c for c in loaded.module.compressions}
    return loaded.program.definitions.get(name) or compressions.get(name)


def suggest_base(name: str, definitions: dict[str, ast.Definition], compressions: Sequence[ast.CompressDef]) -> str | None:
    """The did-you-mean of a compress base that is not defined: the closest model or compressed model."""
    return did_you_mean(name, [d.name for d in definitions.values() if d.kind == "model"] + [c.name for c in compressions])


CHAIN_CYCLE = "E0830"  # compressed models that compress each other


def _compressed(program: Program, comp: ast.CompressDef, params: dict[str, Any] | None,
                calibration: Any = None, compressions: Sequence[ast.CompressDef] = (),
                chain: tuple[str, ...] = ()) -> Graph:
    from .transforms import apply_stages

    earlier = next((c for c in compressions if c.name == comp.base), None)
    if earlier is not None and comp.base not in program.definitions:
        # a compressed model compressed further (e.g. its learned masks frozen): the stages rewrite that
        # model's layers, and its trained weights are what `specc compress --weights` converts
        if earlier.name in chain + (comp.name,):
            cycle = " -> ".join(chain + (comp.name, earlier.name))
            raise SpeccError(CHAIN_CYCLE, f"compressed models compress each other in a cycle: {cycle}", comp.span,
                             help="one of them must compress a model")
        graph = _compressed(program, earlier, params, None, compressions, chain + (comp.name,))
        graph.plan = apply_stages(graph, comp, calibration)
        parallel.unshard_compressed(graph, graph.plan)
        graph.name, graph.base_name = comp.name, earlier.name
        return graph
    base = program.definitions.get(comp.base)
    if base is None or base.kind != "model":
        what = "a block" if base is not None else "not defined"
        raise SpeccError("E0806", f"`compress {comp.name}` needs a model to compress, but `{comp.base}` is {what}",
                         comp.base_span or comp.span,
                         help=suggest_base(comp.base, program.definitions, compressions) if base is None else None)
    graph = lower(program, base, params)
    run_pipeline(graph, ("infer_shapes",))
    graph.plan = apply_stages(graph, comp, calibration)
    parallel.unshard_compressed(graph, graph.plan)
    graph.name = comp.name
    graph.base_name = base.name
    return graph
