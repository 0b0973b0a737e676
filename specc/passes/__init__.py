"""The pass manager: an ordered list of named passes over the IR.

A pass declares the graph properties it `requires` (ensured by an earlier pass)
and the ones it `ensures`. The manager checks those contracts, runs the verifier
after every pass (as MLIR's does), and can hand the IR to a callback after each
pass for `--dump-ir`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from ..ir import Graph
from ..verify import verify


@dataclass(frozen=True)
class Pass:
    name: str
    doc: str
    run: Callable[[Graph], None]
    requires: frozenset[str] = frozenset()
    ensures: frozenset[str] = frozenset()
    invalidates: frozenset[str] = frozenset()


_PASSES: dict[str, Pass] = {}

# The default pipeline, in order; every backend compiles the graph it leaves.
DEFAULT_PIPELINE = (
    "infer_shapes", "eliminate_common_subexpressions", "eliminate_dead_code", "fuse_elementwise", "fuse_epilogues",
)


def register_pass(name: str, *, requires: tuple[str, ...] = (), ensures: tuple[str, ...] = (),
                  invalidates: tuple[str, ...] = ()) -> Callable[[Callable[[Graph], None]], Callable[[Graph], None]]:
    def deco(fn: Callable[[Graph], None]) -> Callable[[Graph], None]:
        _PASSES[name] = Pass(name, (fn.__doc__ or "").strip().splitlines()[0], fn, frozenset(requires),
                             frozenset(ensures), frozenset(invalidates))
        return fn
    return deco


def all_passes() -> dict[str, Pass]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_PASSES)


def run_pipeline(graph: Graph, names: tuple[str, ...] = DEFAULT_PIPELINE,
                 after_each: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run passes in order, checking contracts and verifying the IR after each."""
    passes = all_passes()
    verify(graph)
    if after_each:
        after_each("lower", graph)
    for name in names:
        p = passes[name]
        missing = p.requires - graph.properties
        if missing:
            raise RuntimeError(f"pass {name} requires {sorted(missing)}, which no earlier pass ensured")
        p.run(graph)
        graph.properties -= p.invalidates
        graph.properties |= p.ensures
        verify(graph)
        if after_each:
            after_each(name, graph)
    return graph
