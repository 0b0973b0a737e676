"""A small search space with the `specc.space.Space` API for testing the search driver on its own: choices over
specs/ffn.nnspec (width, expansion: real graphs for the parameter and FLOP limits) plus free integer choices, one
of them dependent, a `where`-like validity rule, and optionally a log-uniform float. Scores are cheap
deterministic functions of the assignment (`build` returns the assignment itself instead of a module).

Run as a script it is the worker of the kill-and-resume test:
    python tests/search_toy.py STRATEGY CHECKPOINT TRAINED_LOG HANG_AFTER MAX_EVALUATIONS
trains (appending each point to TRAINED_LOG) and, after HANG_AFTER trainings in this process, hangs in the next
one until killed (HANG_AFTER < 0: never).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from specc.compiler import compile_target, load_project, select_model  # noqa: E402

_LOADED = load_project(ROOT / "specs" / "ffn.nnspec")


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float
    kind: str = "loguniform"

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


@dataclass(frozen=True)
class Choice:
    name: str
    kind: str
    rule: Callable[[Mapping[str, Any]], Any]
    depends: tuple[str, ...] = ()

    def domain(self, assignment: Mapping[str, Any]) -> Any:
        return self.rule(assignment)


class ToySpace:
    """width in {8, 16, 32, 64}, expansion in 1..4, k in 1..expansion (dependent), a and b in 0..values-1, and,
    with `lr=True`, lr log-uniform in [1e-4, 1]; valid when width * expansion <= 128 (3300 points; 33 with
    values=1)."""

    def __init__(self, lr: bool = False, values: int = 10) -> None:
        self.choices = [
            Choice("width", "int", lambda a: (8, 16, 32, 64)),
            Choice("expansion", "int", lambda a: (1, 2, 3, 4)),
            Choice("k", "int", lambda a: tuple(range(1, a["expansion"] + 1)), ("expansion",)),
            Choice("a", "int", lambda a: tuple(range(values))),
            Choice("b", "int", lambda a: tuple(range(values))),
        ] + ([Choice("lr", "float", lambda a: LogUniform(1e-4, 1.0))] if lr else [])
        finite = [c for c in self.choices if c.name != "lr"]
        self.points = [p for p in self._enumerate(finite, {}) if self._rule(p)]

    def _enumerate(self, choices: list[Choice], prefix: dict) -> Any:
        if not choices:
            yield dict(prefix)
            return
        for value in choices[0].domain(prefix):
            yield from self._enumerate(choices[1:], {**prefix, choices[0].name: value})

    @staticmethod
    def _rule(p: Mapping[str, Any]) -> bool:
        return p["width"] * p["expansion"] <= 128

    def size(self) -> int | None:
        return None if any(c.name == "lr" for c in self.choices) else len(self.points)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        point = dict(rng.choice(self.points))
        if self.size() is None:
            point["lr"] = self.choices[-1].domain(point).sample(rng)
        return point

    def is_valid(self, assignment: Mapping[str, Any]) -> bool:
        out: dict[str, Any] = {}
        for c in self.choices:
            domain = c.domain(out)
            value = assignment.get(c.name)
            if isinstance(domain, tuple):
                if not any(v == value and type(v) is type(value) for v in domain):
                    return False
            elif not (isinstance(value, float) and domain.low <= value <= domain.high):
                return False
            out[c.name] = value
        return set(assignment) == set(out) and self._rule(out)

    def check(self, assignment: Mapping[str, Any]) -> None:
        if not self.is_valid(assignment):
            raise ValueError(f"invalid toy point {assignment}")

    def graph(self, assignment: Mapping[str, Any], target: str = "torch") -> Any:
        return ffn_graph(assignment["width"], assignment["expansion"])

    def module(self, assignment: Mapping[str, Any], seed: int = 0) -> Any:
        raise AssertionError("the toy space's searches pass build=")


@functools.lru_cache(maxsize=None)
def ffn_graph(width: int, expansion: int) -> Any:
    return compile_target(_LOADED, select_model(_LOADED.module, None), {"width": width, "expansion": expansion})


def toy_score(assignment: Mapping[str, Any]) -> float:
    """Best at a=7, b=3, width=32, k=expansion; smooth enough for evolution to climb."""
    return -((assignment["a"] - 7) ** 2 + (assignment["b"] - 3) ** 2 + abs(math.log2(assignment["width"] / 32))
             + (assignment["expansion"] - assignment["k"]))


def identity(assignment: dict) -> dict:
    return assignment


def _worker(strategy: str, checkpoint: str, trained_log: str, hang_after: int, max_evaluations: int) -> None:
    from specc import search

    count = itertools.count()

    def train_and_score(assignment: dict) -> float:
        if hang_after >= 0 and next(count) >= hang_after:
            while True:
                time.sleep(1)  # killed here
        with open(trained_log, "a") as f:
            f.write(json.dumps(assignment, sort_keys=True) + "\n")
        return toy_score(assignment)

    run = {"random": search.random_search, "evolution": search.evolution}[strategy]
    extra = {"population": 6, "sample": 3} if strategy == "evolution" else {}
    result = run(ToySpace(), train_and_score, max_evaluations=max_evaluations, seed=5, checkpoint=checkpoint,
                 build=identity, **extra)
    print(json.dumps([[r.assignment, r.score] for r in result.results]))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
