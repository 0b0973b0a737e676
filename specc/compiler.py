"""The front door: file -> checked, optimized IR, used by the CLI and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from . import ast
from .diagnostics import Note, SpeccError, load_source
from .ir import Graph
from .lower import Program, lower
from .parser import parse
from .passes import DEFAULT_PIPELINE, run_pipeline


def load(path: str | Path) -> ast.Module:
    """Read and parse one spec file (imports are not followed; see `load_program`)."""
    return parse(load_source(path))


Loader = Callable[[str | Path], ast.Module]


def load_program(path: str | Path, loader: Loader = load) -> tuple[ast.Module, Program]:
    """Parse a file and, transitively, the files it imports (relative to the importing file).

    Definitions from all files share one namespace; defining a name twice is an
    error that points at both places, and an import cycle is reported with its chain.
    `loader` reads one file (the language server passes one that reads open editor buffers).
    """
    root = loader(path)
    definitions: dict[str, ast.Definition] = {}
    seen: set[Path] = set()

    def visit(module: ast.Module, chain: list[Path]) -> None:
        for imp in module.imports:
            target = (Path(module.path).parent / imp.path).resolve()
            if target in chain:
                cycle = " -> ".join(p.name for p in chain[chain.index(target):] + [target])
                raise SpeccError("E0501", f"import cycle: {cycle}", imp.span)
            if target in seen:
                continue
            seen.add(target)
            try:
                imported = loader(target)
            except SpeccError as err:
                if err.code == "E0001":
                    raise SpeccError("E0502", f"cannot import \"{imp.path}\": no such file {target}", imp.span) from None
                raise err.with_note(Note(f"while importing \"{imp.path}\"", imp.span)) from None
            visit(imported, chain + [target])
        for definition in module.definitions:
            previous = definitions.get(definition.name)
            if previous is not None and previous is not definition:
                raise SpeccError("E0221", f"`{definition.name}` is defined twice", definition.name_span,
                                 [Note("first defined here", previous.name_span)])
            definitions[definition.name] = definition

    root_path = Path(path).resolve()
    seen.add(root_path)
    visit(root, [root_path])
    for comp in root.compressions:
        previous = definitions.get(comp.name)
        if previous is not None:
            raise SpeccError("E0221", f"`{comp.name}` is defined twice", comp.name_span,
                             [Note("first defined here", previous.name_span)])
    return root, Program(definitions)


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
                  pipeline: tuple[str, ...] = DEFAULT_PIPELINE, loader: Loader = load) -> Graph:
    """Parse, lower and optimize one model (or compressed model) of a spec file."""
    module, program = load_program(path, loader)
    target = select_model(module, model)
    if isinstance(target, ast.CompressDef):
        graph = _compressed(program, target, params)
    else:
        graph = lower(program, target, params)
    graph.source_path = str(path)
    return run_pipeline(graph, pipeline, after_each)


def _compressed(program: Program, comp: ast.CompressDef, params: dict[str, Any] | None) -> Graph:
    from .transforms import apply_stages

    base = program.definitions.get(comp.base)
    if base is None or base.kind != "model":
        what = "a block" if base is not None else "not defined"
        raise SpeccError("E0806", f"`compress {comp.name}` needs a model to compress, but `{comp.base}` is {what}",
                         comp.span)
    graph = lower(program, base, params)
    run_pipeline(graph, ("infer_shapes",))
    graph.plan = apply_stages(graph, comp)
    graph.name = comp.name
    graph.base_name = base.name
    return graph
