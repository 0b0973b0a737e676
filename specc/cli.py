"""The `specc` command line.

Exit codes: 0 success; 1 the spec has errors (diagnostics on stderr); 2 a usage or
file error: a bad option or --model, an input that is missing, unreadable or not
allowed (an import outside the project), an output that cannot or must not be
written (the codes in `specc.diagnostics.USAGE_ERROR_CODES`); 3 an internal compiler error (a bug
in specc; set SPECC_TRACEBACK=1 to see the traceback); 130 interrupted (Ctrl-C); 141 the
output pipe was closed (`specc ir FILE | head`).
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from . import __version__
from .diagnostics import USAGE_ERROR_CODES, SpeccError
from .escape import printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="specc: compile .nnspec model specs to PyTorch, Triton and ONNX.")

EXIT_SPEC_ERROR, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 1, 2, 3, 130, 141


class Target(str, Enum):
    torch = "torch"
    triton = "triton"
    onnx = "onnx"


_DEFAULT_SUFFIX = {"torch": ".py", "triton": "_triton.py", "onnx": ".onnx"}

FileArg = typer.Argument(..., help="The .nnspec file.", show_default=False)
ModelOpt = typer.Option(None, "--model", "-m", help="Which model of the file (default: its only model).")
ParamOpt = typer.Option(None, "--param", "-p", help="Override a model parameter, e.g. -p hidden=512 (repeatable).")
MeshOpt = typer.Option(None, "--mesh", help="A device mesh, e.g. dp=2,tp=4: the sizes the spec's `shard` plan "
                       "splits must divide by tp (and `summary` shows what one rank holds).")
IncludeOpt = typer.Option(None, "--include", "-I", exists=True, file_okay=False, dir_okay=True,
                          help="Also look for imports in DIR, and allow importing from it (repeatable). "
                               "Without it, imports must lie in the spec's directory or below.")

# Python modules a generated module must not be named after: importing it from its directory would
# shadow the real one (for the generated code itself, or for the user's program).
_SHADOWED_MODULES = frozenset(sys.stdlib_module_names) | {"torch", "triton", "onnx", "numpy", "specc"}


@app.callback()
def _global_options(limit: Optional[list[str]] = typer.Option(
        None, "--limit", metavar="NAME=N",
        help="Raise (or lower) a limit on the work a spec may ask for, e.g. --limit nodes=200000 (repeatable). "
             "Limits: nodes, dim, dim_terms, params, nesting, file_bytes, files, constraints, choice_values, "
             "space_states, check_points, sample_tries.")) -> None:
    # options before the command name, for every command
    from .limits import set_limits

    try:
        set_limits(limit or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--limit") from None


def _parse_params(items: Optional[list[str]], hint: str = "--param") -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=hint)
        params[name] = _literal(text)
    return params


def _parse_mesh(text: Optional[str]) -> Optional[dict[str, int]]:
    """`--mesh dp=2,tp=4` -> {"dp": 2, "tp": 4}; a malformed one is a usage error."""
    if text is None:
        return None
    from .parallel import parse_mesh

    try:
        return parse_mesh(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--mesh") from None


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _report(error: SpeccError) -> None:
    print(error.render(), file=sys.stderr)


def _run(action) -> None:
    """Run a command body, mapping every failure to a message and an exit code, never a traceback."""
    try:
        action()
    except SpeccError as err:
        _report(err)
        # a file that cannot be read or written, or a model that is not there, is a usage problem
        raise typer.Exit(EXIT_USAGE if err.code in USAGE_ERROR_CODES else EXIT_SPEC_ERROR) from None
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `specc ir FILE | head`: the reader has gone, as for any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        raise typer.Exit(EXIT_PIPE_CLOSED) from None
    except Exception as exc:  # a bug in specc: say so plainly
        if os.environ.get("SPECC_TRACEBACK"):
            traceback.print_exc()
        print(f"internal compiler error: {type(exc).__name__}: {exc}\n"
              "This is a bug in specc; rerun with SPECC_TRACEBACK=1 and report it.", file=sys.stderr)
        raise typer.Exit(EXIT_INTERNAL) from None


def _dump(name: str, graph) -> None:
    print(f"// ----- IR after {name} -----")
    print(graph.dump())


def _print_plan_warnings(graph) -> None:
    """A compressed model's stage warnings (a rank that saves nothing, ...), located, on stderr."""
    from .transforms import warning_text

    for plan in graph.plan:
        if plan.warning is not None:
            print(warning_text(plan), file=sys.stderr)


@app.command("compile")
def compile_cmd(
    file: Path = FileArg,
    target: Target = typer.Option(Target.torch, "--target", "-t", help="What to generate."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Output file (default: MODEL.py, MODEL_triton.py or MODEL.onnx)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="onnx: a state_dict saved from the torch module."),
    seed: int = typer.Option(0, "--seed", help="onnx: seed for the torch init used when no --weights is given."),
    model: Optional[str] = ModelOpt,
    param: Optional[list[str]] = ParamOpt,
    include: Optional[list[Path]] = IncludeOpt,
    dump_ir: bool = typer.Option(False, "--dump-ir", help="Print the IR after each pass."),
    mesh: Optional[str] = MeshOpt,
    choice: Optional[list[str]] = typer.Option(None, "--choice", "-c", metavar="NAME=VALUE",
                                               help="Compile this point of a search space: the value of a choice, "
                                                    "e.g. --choice width=128 (repeatable)."),
) -> None:
    """Compile one model to a PyTorch module, a Triton module, or an ONNX file."""
    if weights is not None and target is not Target.onnx:
        raise typer.BadParameter("--weights only applies to --target onnx (torch modules load state dicts "
                                 "themselves)", param_hint="--weights")
    params = _parse_params(param)
    choices = _parse_params(choice, "--choice")
    sizes = _parse_mesh(mesh)

    def action() -> None:
        from .codegen import backends
        from .output import write_atomic
        from .compiler import compile_graph, load_project

        if weights is not None:
            _require_regular(weights, "weights")
        loaded = load_project(file, include=include or ())
        if choices:
            from .compiler import select_model
            from .space import check_choices

            check_choices(loaded, select_model(loaded.module, model), file, choices)
        graph = compile_graph(file, model, {**params, **choices}, _dump if dump_ir else None, loaded=loaded)
        _print_plan_warnings(graph)
        if sizes is not None:
            from . import parallel

            parallel.check_mesh(parallel.plan(graph), sizes["tp"])
        out = output or Path(graph.name + _DEFAULT_SUFFIX[target.value])
        _check_module_name(out, explicit=output is not None)
        backend = backends()[target.value]
        options = {"weights": weights, "seed": seed} if target is Target.onnx else {}
        artifact = backend.emit(graph, **options)
        write_atomic(out, artifact.data, _inputs(loaded, weights=weights))
        print(f"wrote {printable(str(out))} ({target.value}, model {graph.name})", file=sys.stderr)

    _run(action)


def _check_module_name(out: Path, explicit: bool) -> None:
    """A generated Python module named like a module it (or its user) imports would shadow that module
    when imported from its directory: refuse the default name (the model's), warn for an explicit -o."""
    if out.suffix != ".py" or out.stem not in _SHADOWED_MODULES:
        return
    problem = f"a module named `{out.stem}` shadows Python's own `{out.stem}` when imported from its directory"
    if explicit:
        print(f"warning: {printable(str(out))}: {problem}", file=sys.stderr)
        return
    raise SpeccError("E0002", f"cannot write {out}: {problem}", None,
                     help=f"choose another file name with -o, e.g. -o {out.stem}_model.py")


def _inputs(loaded, **others: Optional[Path]) -> dict[Path, str]:
    """The files a command reads, which its output must not overwrite, with what each is."""
    inputs = {path: "the spec" if i == 0 else "a file the spec imports" for i, path in enumerate(loaded.files)}
    inputs.update({path: f"the --{name} file" for name, path in others.items() if path is not None})
    return inputs


@app.command("check")
def check_cmd(file: Path = FileArg, param: Optional[list[str]] = ParamOpt,
              include: Optional[list[Path]] = IncludeOpt) -> None:
    """Check every model in a file and print its diagnostics; writes nothing."""
    params = _parse_params(param)

    def action() -> None:
        from .compiler import compilable, compile_target, load_project
        from .space import check_space, space_of

        loaded = load_project(file, include=include or ())  # once: every model is compiled from it
        failed = False
        for target in compilable(loaded.module):
            space = None if params else space_of(loaded, target, file)
            if space is not None:  # a search space: every point (or a seeded subset), each error once
                line, errors = check_space(space)
                print(f"{printable(str(file))}: {line}", file=sys.stderr if errors else sys.stdout)
                for error in errors:
                    _report(error)
                failed = failed or bool(errors)
                continue
            graph = compile_target(loaded, target, params, source_path=str(file))
            ins = ", ".join(f"{n}: {graph.node(n).type}" for n in graph.inputs)
            outs = ", ".join(f"{o}: {graph.node(v).type}" for o, v in graph.outputs.items())
            print(f"{printable(str(file))}: model {graph.name}({ins}) -> ({outs}): ok")
        if failed:
            raise typer.Exit(EXIT_SPEC_ERROR)

    _run(action)


@app.command("space")
def space_cmd(file: Path = FileArg, model: Optional[str] = ModelOpt,
              include: Optional[list[Path]] = IncludeOpt) -> None:
    """Print a model's search space: its size, each choice, the constraints, the infeasible points."""

    def action() -> None:
        from .space import Space, describe

        for line in describe(Space.load(file, model, include or ())).splitlines():
            print(printable(line))

    _run(action)


@app.command("sample")
def sample_cmd(file: Path = FileArg, seed: int = typer.Option(..., "--seed", help="Seed of the draw."),
               count: int = typer.Option(1, "-n", min=1, help="How many points."),
               output: Optional[Path] = typer.Option(None, "--output", "-o", file_okay=False,
                                                     help="Directory to write to (default: MODEL_samples)."),
               model: Optional[str] = ModelOpt, include: Optional[list[Path]] = IncludeOpt) -> None:
    """Draw points of a search space uniformly: each a fixed, formatted spec, and samples.json of their values."""

    def action() -> None:
        from .compiler import load_project
        from .space import Space, write_samples

        loaded = load_project(file, include=include or ())
        space = Space.from_loaded(loaded, model, file)
        out = output or Path(f"{space.name}_samples")
        for message in write_samples(space, seed, count, out, _inputs(loaded)):
            print(printable(message), file=sys.stderr)

    _run(action)


@app.command("ir")
def ir_cmd(file: Path = FileArg, model: Optional[str] = ModelOpt, param: Optional[list[str]] = ParamOpt,
           include: Optional[list[Path]] = IncludeOpt,
           dump_ir: bool = typer.Option(False, "--dump-ir", help="Print the IR after each pass, not only the last.")
           ) -> None:
    """Print the optimized IR of a model."""
    params = _parse_params(param)

    def action() -> None:
        from .compiler import compile_graph

        graph = compile_graph(file, model, params, _dump if dump_ir else None, include=include or ())
        if not dump_ir:
            print(graph.dump())

    _run(action)


@app.command("summary")
def summary_cmd(file: Path = FileArg, model: Optional[str] = ModelOpt, param: Optional[list[str]] = ParamOpt,
                include: Optional[list[Path]] = IncludeOpt, mesh: Optional[str] = MeshOpt) -> None:
    """A table of layers: output shapes, parameter counts, weight bytes and FLOPs (with --mesh: per rank)."""
    params = _parse_params(param)
    sizes = _parse_mesh(mesh)

    def action() -> None:
        from rich.console import Console
        from rich.table import Table

        from .compiler import base_target, compile_graph, compile_target, load_project
        from .summary import LayerRow, speed_notes, summarize, totals

        loaded = load_project(file, include=include or ())
        graph = compile_graph(file, model, params, loaded=loaded)
        _print_plan_warnings(graph)
        rows = summarize(graph)
        before = {}
        if graph.base_name is not None:  # a compressed model: show the base model's numbers beside
            base = compile_target(loaded, base_target(loaded, graph.base_name), params)
            before = {r.name: r for r in summarize(base)}
        title = f"model {graph.name}" + (f" (compressed from {graph.base_name}: before -> after)" if before else "")
        table = Table(title=title, title_justify="left")
        for column, justify in [("layer", "left"), ("op", "left"), ("output", "left"), ("params", "right"),
                                ("weight bytes", "right"), ("FLOPs", "right")]:
            table.add_column(column, justify=justify)

        def cells(old, new) -> list[str]:
            pairs = [(f"{new.params:,}", old and f"{old.params:,}"),
                     (f"{new.weight_bytes:,}", old and f"{old.weight_bytes:,}"), (str(new.flops), old and str(old.flops))]
            return [f"{b} -> {a}" if b is not None and b != a else a for a, b in pairs]

        for r in rows:
            table.add_row(r.name, r.op, str(r.type), *cells(before.get(r.name), r))
        table.add_section()
        total = LayerRow("total", "", graph.node(graph.outputs[next(iter(graph.outputs))]).type, *totals(rows))
        old_total = LayerRow("total", "", total.type, *totals(list(before.values()))) if before else None
        table.add_row("total", "", "", *cells(old_total, total))
        Console(width=220).print(table)
        if old_total is not None and total.weight_bytes:
            print(f"weights: {old_total.weight_bytes / total.weight_bytes:.2f}x smaller "
                  f"({old_total.params:,} -> {total.params:,} parameters)")
        for note in speed_notes(graph):  # compressed layers that run slower than dense, and where
            print(f"note: {note}")
        if sizes is not None:
            from .parallel import check_mesh, plan, rank_report

            entries = plan(graph)
            check_mesh(entries, sizes["tp"])
            print(rank_report(graph, entries, sizes["dp"], sizes["tp"]))

    _run(action)


@app.command("graph")
def graph_cmd(file: Path = FileArg,
              output: Path = typer.Option(..., "--output", "-o", help="model.svg, model.png or model.dot"),
              model: Optional[str] = ModelOpt, param: Optional[list[str]] = ParamOpt,
              include: Optional[list[Path]] = IncludeOpt) -> None:
    """Draw the optimized IR (fusion groups as clusters) with Graphviz."""
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "dot"):
        raise typer.BadParameter("the output must end in .svg, .png or .dot", param_hint="--output")
    params = _parse_params(param)

    def action() -> None:
        from .output import write_atomic
        from .compiler import compile_graph, load_project
        from .graphviz import GraphvizMissing, render, to_dot

        loaded = load_project(file, include=include or ())
        dot = to_dot(compile_graph(file, model, params, loaded=loaded))
        try:
            data = dot.encode() if fmt == "dot" else render(dot, fmt)
        except GraphvizMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from None
        write_atomic(output, data, _inputs(loaded))
        print(f"wrote {printable(str(output))}", file=sys.stderr)

    _run(action)


@app.command("plan")
def plan_cmd(file: Path = FileArg, model: Optional[str] = ModelOpt, param: Optional[list[str]] = ParamOpt,
             include: Optional[list[Path]] = IncludeOpt) -> None:
    """Show what each compression stage does to each layer of a compressed model."""
    params = _parse_params(param)

    def action() -> None:
        from rich.console import Console
        from rich.table import Table

        from .compiler import compile_graph

        graph = compile_graph(file, model, params, include=include or ())
        _print_plan_warnings(graph)
        if graph.base_name is None:
            raise SpeccError("E0807", f"`{graph.name}` is not a compressed model (declare one with "
                                      f"`compress NAME = {graph.name} {{ ... }}`)", None)
        table = Table(title=f"compress {graph.name} = {graph.base_name}", title_justify="left")
        for column in ("stage", "transform", "layer", "before", "after", "note"):
            table.add_column(column)
        for p in graph.plan:
            table.add_row(str(p.stage + 1), p.transform, p.layer, p.before, p.after, p.note)
        Console(width=200).print(table)

    _run(action)


@app.command("compress")
def compress_cmd(
    file: Path = FileArg,
    weights: Path = typer.Option(..., "--weights", help="The base model's dense state_dict (torch.save)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to save the compressed state_dict."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration inputs (torch.save of a tensor or a "
                                                                 "tuple of tensors), for transforms that need them."),
    model: Optional[str] = ModelOpt,
    param: Optional[list[str]] = ParamOpt,
    include: Optional[list[Path]] = IncludeOpt,
    rename: Optional[list[str]] = typer.Option(None, "--rename", metavar="OLD=NEW",
                                               help="Rename checkpoint keys that begin with OLD to begin with NEW "
                                                    "instead, e.g. --rename 0.=h_linear. (repeatable; the first "
                                                    "matching rule applies)."),
    rename_map: Optional[Path] = typer.Option(None, "--rename-map", metavar="FILE.json",
                                              help="A JSON object of OLD: NEW key prefixes, applied after --rename."),
) -> None:
    """Convert a dense state dict into the compressed model's state dict.

    Every key and shape of --weights is checked against the base model; a checkpoint of a reference
    model loads as it is when the spec names its layers like the reference, else map keys with --rename.
    """
    params = _parse_params(param)
    rules: list[tuple[str, str]] = []
    for item in rename or []:
        old, sep, new = item.partition("=")
        if not sep:  # an empty OLD prefixes every key (a checkpoint of a model wrapped in another)
            raise typer.BadParameter(f"expected OLD=NEW, got {item!r}", param_hint="--rename")
        rules.append((old, new))

    def action() -> None:
        import io

        import torch

        from . import ast
        from .output import write_atomic
        from .compiler import base_target, compile_target, load_project, select_model
        from .transforms import Calibration, convert_weights

        import json

        from .diagnostics import read_text
        from .transforms import check_calibration, check_dense_state, rename_keys

        loaded = load_project(file, include=include or ())
        target = select_model(loaded.module, model)
        if not isinstance(target, ast.CompressDef):
            raise SpeccError("E0807", f"`{target.name}` is not a compressed model", None)
        base_def = base_target(loaded, target.base)
        if base_def is None or (isinstance(base_def, ast.Definition) and base_def.kind != "model"):
            compile_target(loaded, target, params)  # says what `target.base` is instead (E0806)
        graph = None
        if calib is None:  # the spec's errors and warnings before the weights are read
            graph = compile_target(loaded, target, params, source_path=str(file))
            _print_plan_warnings(graph)
        if rename_map is not None:
            try:
                mapping = json.loads(read_text(rename_map, "E0601", what="key mapping"))
            except json.JSONDecodeError as exc:
                raise SpeccError("E0601", f"cannot load key mapping from {rename_map}: not JSON ({exc})",
                                 None) from None
            if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                raise SpeccError("E0601", f"cannot load key mapping from {rename_map}: expected a JSON object "
                                          f'of "OLD": "NEW" key prefixes', None)
            rules.extend(mapping.items())
        origin = printable(str(weights))
        dense = _load_tensors(weights, "weights")
        if rules and isinstance(dense, dict):
            dense = rename_keys(dense, rules, origin)
        # the base model may come from an imported file
        base = compile_target(loaded, base_def, params, pipeline=("infer_shapes",))
        dense = check_dense_state(base, dense, origin)
        calibration = None
        if calib is not None:
            inputs = check_calibration(base, _load_tensors(calib, "calibration inputs"), printable(str(calib)))
            calibration = Calibration(inputs, base, dict(dense))
        if graph is None:
            # with calibration data the stages may measure (a mixed-bit stage's sensitivities), so the
            # compressed model is compiled once the dense weights are loaded and checked
            graph = compile_target(loaded, target, params, source_path=str(file), calibration=calibration)
            _print_plan_warnings(graph)
        state = convert_weights(graph, dense, calibration)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(output, buffer.getvalue(), _inputs(loaded, weights=weights, calib=calib))
        print(f"wrote {printable(str(output))} ({len(state)} tensors for model {graph.name})", file=sys.stderr)

    _run(action)


def _require_regular(path: Path, what: str) -> None:
    """A --weights or --calib file must be a regular file: torch would block on a FIFO or read a device forever."""
    import stat

    from .diagnostics import file_kind

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SpeccError("E0601", f"cannot load {what} from {path}: {(exc.strerror or str(exc)).lower()}",
                         None) from None
    if not stat.S_ISREG(mode):
        raise SpeccError("E0601", f"cannot load {what} from {path}: it {file_kind(mode)}", None)


def _load_tensors(path: Path, what: str):
    import torch

    _require_regular(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here; all mean "not a usable file"
        raise SpeccError("E0601", f"cannot load {what} from {path}: {exc}", None) from None


FMT_LINE_WIDTH = 120  # specc.fmt.LINE_WIDTH (not imported here: the CLI imports fmt only when it runs)


@app.command("fmt")
def fmt_cmd(files: list[Path] = typer.Argument(..., show_default=False, metavar="PATH",
                                               help="Spec files, directories (their *.nnspec files, "
                                                    "recursively), or - for standard input."),
            check: bool = typer.Option(False, "--check", help="Write nothing; print the diff of every file that "
                                                               "would change and exit 1 if any would."),
            line_width: int = typer.Option(FMT_LINE_WIDTH, "--line-width", min=1,
                                           help="Wrap lines wider than this at commas inside brackets."),
            stdin_filename: Optional[str] = typer.Option(None, "--stdin-filename",
                                                          help="The path to show in messages about standard "
                                                               "input.")) -> None:
    """Format specs canonically (comments kept), rewriting each file atomically; - formats standard input
    to standard output.

    Every file is processed even if some fail: each error is reported where it is, and the exit status is
    the worst outcome (3 a bug in specc, 2 a file could not be read or written, 1 a syntax error or, with
    --check, a file that would change, 0 all formatted).
    """

    def action() -> None:
        from .fmt import format_file, format_stdin, spec_files

        paths = spec_files([p for p in files if str(p) != "-"])
        jobs = [lambda path=path: format_file(path, check=check, line_width=line_width) for path in paths]
        if any(str(p) == "-" for p in files):
            jobs.insert(0, lambda: format_stdin(check, line_width, stdin_filename or "<stdin>"))
        worst = changed = unchanged = failed = 0
        for job in jobs:
            status, same = _fmt_one(job)
            if status:
                failed += 1
            elif same:
                unchanged += 1
            else:
                changed += 1
                status = EXIT_SPEC_ERROR if check else 0
            worst = _worse(worst, status)
        if len(jobs) > 1:
            verb = "would be reformatted" if check else "reformatted"
            print(f"{changed} file{'s' * (changed != 1)} {verb}, {unchanged} left unchanged"
                  + (f", {failed} failed" if failed else ""), file=sys.stderr)
        if worst:
            raise typer.Exit(worst)

    _run(action)


def _fmt_one(job) -> tuple[int, bool]:
    """Run one `specc fmt` job (it returns whether its input was already formatted): (0, that), or
    (the exit status of its failure, False) with the error reported, so that the next file is still
    formatted: 1 a syntax error, 2 a file error, 3 a bug in specc."""
    try:
        return 0, job()
    except SpeccError as err:
        _report(err)
        return (EXIT_USAGE if err.code in USAGE_ERROR_CODES else EXIT_SPEC_ERROR), False
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # a bug in specc: say so, and go on with the other files
        if os.environ.get("SPECC_TRACEBACK"):
            traceback.print_exc()
        print(f"internal compiler error: {type(exc).__name__}: {exc}\n"
              "This is a bug in specc; rerun with SPECC_TRACEBACK=1 and report it.", file=sys.stderr)
        return EXIT_INTERNAL, False


def _worse(a: int, b: int) -> int:
    """The worse of two `specc fmt` exit statuses: a bug, then a file error, then a spec error."""
    rank = {0: 0, EXIT_SPEC_ERROR: 1, EXIT_USAGE: 2, EXIT_INTERNAL: 3}
    return max(a, b, key=rank.__getitem__)


@app.command("lsp")
def lsp_cmd() -> None:
    """Run the language server on stdin/stdout (for editors)."""

    def action() -> None:
        from .lsp import serve

        serve()

    _run(action)


@app.command("version")
def version_cmd() -> None:
    """Print specc's version."""
    print(f"specc {__version__}")


def main() -> None:
    # The IR is a large acyclic object graph built in one go: the default thresholds make the collector
    # rescan it every few hundred allocations, which is 40% of lowering time on a large model.
    gc.set_threshold(50_000, 50, 100)
    app()


if __name__ == "__main__":
    main()
