"""Grammar-aware mutation fuzzing of the compiler over the example specs.

Each example is a spec from `specs/` with a few token-level mutations: tokens
deleted, duplicated, swapped, or replaced by other tokens of the corpus or by
hostile ones (huge and non-finite numbers, deep nesting, hostile strings, names
that generated code uses internally). Whatever comes out, the compiler must
either report located diagnostics (`SpeccError`) or produce artifacts that
import and run — never raise anything else, and never take more than 10 s.
Hypothesis runs derandomized, so CI sees the same mutants every time.
"""

from __future__ import annotations

import ast as python_ast
import math
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from targets import ROOT, SPECS, example_inputs, python_module, run_onnx

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compilable, compile_graph, load
from specc.diagnostics import SpeccError

_TOKEN = re.compile(r'//[^\n]*|"[^"\n]*"|[0-9]+:[0-9]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?'
                    r'|[A-Za-z_][A-Za-z0-9_]*|\.\.\.|[<>=!]=|\s+|.', re.S)
# the expression syntax no shipped spec needs yet: indexing, `**`, comparisons, several results, parameters
_SYNTAX = """model syntax(d: int = 8, heads: int = 2) {
    input x: f32[B, T, d]
    input ids: i64[B, T]
    scale = d ** -0.5 * max(1, heads) / sqrt(4)
    cls = parameter([1, 1, d], init="zeros")
    wte = parameter([16, d])
    h = concat([expand(cls, [B, -1, -1]), x + embedding(ids, weight=wte)], dim=1)
    a = attention(h, heads, kv_heads=1, qkv="separate", rotary="rotate_half", causal=true)
    first = a[:, 0] * scale
    rest = a[..., 1:, ::2] ** 2.0
    v, i = topk(first, 3)
    r = gru(a, 4, num_layers=2)
    output y = where(first > 0.0, -first, clamp(exp(first), max=1.0))
    output z = v + cumsum(rest[:, -1], -1)[:, :3] + r.h[-1][:, :3]
}
"""
_CORPUS = {spec.name: _TOKEN.findall(spec.read_text(encoding="utf-8")) for spec in SPECS}
_CORPUS["syntax.nnspec"] = _TOKEN.findall(_SYNTAX)
_POOL = sorted({t for tokens in _CORPUS.values() for t in tokens if t.strip() and not t.startswith("//")})
_HOSTILE = [
    "1e309", "1e999999999", "-1e400", "9" * 5000, "99999999999999999999999", "4294967296", "0", "-1",
    "repeat 1000000000 { relu(_) } (x)", "(" * 300, "[" * 300, "- " * 300, "x + " * 300, "relu(" * 300,
    '"\\N"', '"x\\"\\"\\"; import os"', '"\x1b[31mred"', '"/etc/passwd"', '"../x.nnspec"',
    "mask", "offsets", "pid", "self", "torch", "F", "nn", "math", "tl", "typing", "_", "...", "2:4", "1000000",
]
_ALIKE_NUMBERS = ["0", "1", "2", "3", "7", "16", "64", "0.5", "1e-9", "-1", "1e309", "99999999999999999999999",
                  "1000000", "4294967296"]


def _token_class(token: str) -> str:
    if token[:1].isdigit() or token[:1] == ".":
        return "number"
    if token[:1].isalpha() or token[:1] == "_":
        return "name"
    return "other"


_ALIKE = {"number": _ALIKE_NUMBERS + [t for t in _POOL if _token_class(t) == "number"],
          "name": [t for t in _POOL if _token_class(t) == "name"] + ["mask", "offsets", "pid", "self", "typing"]}
_COMPILE_TIMEOUT_S = 10  # the bar: compiling any mutant takes at most this
_RUN_TIMEOUT_S = 120  # running what compiled (the Triton interpreter is slow on the fixed-point layer)
_MAX_RUN_ELEMENTS = 2_000_000  # inputs and parameters above this are compiled but not run (RAM, not correctness)


class _Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in specc can swallow it."""


def _on_alarm(signum, frame):
    raise _Hang()


@st.composite
def mutants(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(_CORPUS)))
    tokens = list(_CORPUS[name])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "alike", "alike", "hostile", "hostile"]))
        if kind == "delete":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "replace":
            tokens[i] = draw(st.sampled_from(_POOL))
        elif kind == "alike":  # a token of the same class: mutants that still parse reach the later stages
            tokens[i] = draw(st.sampled_from(_ALIKE.get(_token_class(tokens[i]), _POOL)))
        else:
            tokens[i] = draw(st.sampled_from(_HOSTILE))
        if not tokens:
            tokens = [" "]
    return name, "".join(tokens)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of specs/ (mutants may import their siblings) to write mutants into."""
    directory = tmp_path_factory.mktemp("fuzz")
    for spec in SPECS:
        shutil.copy(spec, directory / spec.name)
    for extra in (ROOT / "specs").glob("*.txt"):
        shutil.copy(extra, directory / extra.name)
    return directory


def _elements(graph) -> int:
    params = sum(math.prod(p.shape) for node in graph.nodes() for p in node.params.values())
    inputs = sum(math.prod(t.shape) for t in example_inputs(graph))
    return params + inputs


class _Alarm:
    """Fail the test if the block takes over `seconds` (SIGALRM; tests run in the main thread)."""

    def __init__(self, seconds: int, what: str) -> None:
        self.seconds, self.what = seconds, what

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(self.seconds)

    def __exit__(self, kind, error, trace) -> bool:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
        if kind is _Hang:
            pytest.fail(f"{self.what} took over {self.seconds} s")
        return False


def _compile_all(path: Path) -> list[tuple]:
    """Every model of the file on every target: (graph, {target: artifact bytes}) for those that compile."""
    try:
        targets = [t.name for t in compilable(load(path))]
    except SpeccError:
        return []
    compiled = []
    for model in targets:
        try:
            graph = compile_graph(path, model)
        except SpeccError:
            continue
        artifacts = {}
        for target in ("torch", "triton"):
            try:
                artifacts[target] = backends()[target].emit(graph).data
            except SpeccError:
                pass
        compiled.append((graph, artifacts))
    return compiled


def _emit_onnx(graph, artifacts: dict[str, bytes]) -> None:
    """The onnx target materializes the weights (the torch module's init): timed with running, not compiling,
    and skipped for models too large to run here."""
    if _elements(graph) <= _MAX_RUN_ELEMENTS:
        try:
            artifacts["onnx"] = backends()["onnx"].emit(graph).data
        except SpeccError:
            pass


def _selects_on_a_symbolic_dim(graph) -> bool:
    """`x[200]` on a dim of symbolic size B is valid for inputs with B > 200, which the example inputs
    (small symbolic sizes) are not: such a model is compiled and imported, not run."""
    return any(n.op == "select" and not isinstance(graph.node(graph.operands(n.name)[0]).type.shape[n.attrs.dim], int)
               for n in graph.nodes())


def _run(graph, artifacts: dict[str, bytes]) -> None:
    """What compiled parses, imports and runs (unless it is too large to run here)."""
    for target in ("torch", "triton"):
        if target in artifacts:
            python_ast.parse(artifacts[target].decode())
    if _elements(graph) > _MAX_RUN_ELEMENTS or _selects_on_a_symbolic_dim(graph):
        for target in ("torch", "triton"):
            if target in artifacts:  # it imports (instantiating would allocate the weights)
                load_module(artifacts[target].decode(), f"specc_fuzz_{target}_{graph.name}")
        return
    inputs = example_inputs(graph)
    for target in ("torch", "triton"):
        if target in artifacts:
            _, module = python_module(graph, target)
            with torch.no_grad():
                module.eval()(*inputs)
    if "onnx" in artifacts:
        run_onnx(artifacts["onnx"], graph, inputs)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutant=mutants())
def test_mutated_specs_never_crash_or_hang(workdir: Path, mutant: tuple[str, str]) -> None:
    origin, text = mutant
    path = workdir / f"mutant_{origin}"
    path.write_text(text, encoding="utf-8")
    with _Alarm(_COMPILE_TIMEOUT_S, f"compiling\n{text}\n"):
        compiled = _compile_all(path)
    for graph, artifacts in compiled:
        with _Alarm(_RUN_TIMEOUT_S, f"running model {graph.name} of\n{text}\n"):
            _emit_onnx(graph, artifacts)
            _run(graph, artifacts)
