"""Architecture search over a search space (`specc.space.Space`): random search, regularized evolution,
successive halving and an Optuna adapter, with limits on parameters and FLOPs checked before training and a
checkpoint that makes a killed search resumable.

The user supplies `train_and_score(module) -> float` (successive halving: `train_and_score(module, budget)`):
it trains the freshly built torch module of one point of the space and returns its score, HIGHER IS BETTER
(return the negative of a loss, or an accuracy). It must be deterministic in what it is given if a resumed
search is to end where an uninterrupted one would; a NaN or infinite score counts as the worst one (-inf).
An exception it raises ends the search (everything finished so far is in the checkpoint).

Every strategy takes the same keywords:

* `max_evaluations` / `max_seconds`: the budget. Evaluations count trainings (a point rejected by a limit is
  not one); seconds are the summed wall time of the evaluations: measuring the point (compiling its graph for
  `specc.summary`), building its module and training it, or only measuring it when a limit rejects it. The
  search stops before starting an evaluation once either is spent (a running one finishes).
* `seed`: every random decision comes from `random.Random(seed)`, consumed in the same order whenever the
  scores are the same, so a search is a deterministic function of its seed and its history.
* `max_params` / `max_flops` (with `input_sizes` for the symbolic dims FLOPs depend on, e.g. {"B": 1, "T": 32}):
  computed with `specc.summary` on the point's compiled graph before any training; a point over either limit is
  recorded as rejected and never trained.
* `checkpoint`: a JSON-lines file. The first line says which search wrote it; each later line is one finished
  evaluation (assignment, budget, score, params, flops, seconds, status), appended and fsynced as it finishes.
  Rerunning the same search with the same file replays it: a point already in the file is not retrained, its
  recorded score (and seconds) stand in, and since the sampler sees the same history it proposes the same
  points, so the resumed run ends with the same results as an uninterrupted one (with a seconds budget, up to
  the timing of the evaluations run after the restart). A last line cut short by a kill is dropped.
* `build`: how a point becomes what `train_and_score` receives; default `space.module(assignment, seed=seed)`.

Errors in a checkpoint file are located `SpeccError`s: E0980 a line that is not a result, E0981 a file written
by another search (other space, strategy, settings, seed or limits). Misusing the API raises ValueError or
TypeError.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from .diagnostics import Note, SourceFile, Span, SpeccError
from .escape import printable
from .summary import summarize, totals
from .types import Sym, dim_value

if TYPE_CHECKING:
    from .space import Space

BAD_LINE = "E0980"  # a checkpoint line (not the last one) that is not a result this module wrote
OTHER_SEARCH = "E0981"  # a checkpoint written by a different search

Assignment = dict[str, Any]
# After this many proposals in a row that cannot be trained (invalid, already evaluated, over a limit) the
# search stops and says why, instead of looping forever on a space the limits (nearly) rule out.
MAX_WASTED = 1000
# Evolution proposes a random point instead of a child after this many proposals in a row that could not be
# trained (on a small space every neighbour of the population may have been trained already).
STALE = 100


@dataclass(frozen=True)
class Result:
    """One finished evaluation: a point trained (status "ok") or rejected by a limit before training."""

    assignment: Assignment
    score: float | None  # None when rejected
    params: int
    flops: int | None  # None when the FLOPs depend on sizes not given in `input_sizes`
    seconds: float  # measuring the point, building its module and training it
    budget: float | None = None  # successive halving's budget for this evaluation
    status: str = "ok"  # "ok" or "rejected"
    reason: str | None = None  # why it was rejected

    @property
    def trained(self) -> bool:
        return self.status == "ok"


@dataclass
class SearchResult:
    """What a search found. `results` holds every evaluation in the order the search asked for it."""

    results: list[Result]
    stopped: str  # why the search ended
    replayed: int = 0  # results read from the checkpoint instead of being trained (or measured) again
    choices: list[str] = field(default_factory=list)  # the space's choice names, for the table's columns

    def ranked(self) -> list[Result]:
        """Trained points best first (of equal scores, the one with fewer parameters; then the earlier); a point
        trained at several budgets (successive halving) appears once, at its largest budget, and points that
        reached a larger budget rank above those that did not."""
        last: dict[str, Result] = {}
        for r in self.results:
            if r.trained:
                key = _key(r.assignment)
                if key not in last or (r.budget or 0) >= (last[key].budget or 0):
                    last[key] = r
        return sorted(last.values(), key=lambda r: (-(r.budget or 0), -_score(r), r.params))

    @property
    def best(self) -> Result:
        ranked = self.ranked()
        if not ranked:
            raise ValueError(f"the search trained no point ({self.stopped})")
        return ranked[0]

    def median(self) -> float:
        """The median score of the trained points (each once, at its largest budget)."""
        return statistics.median(_score(r) for r in self.ranked())

    def table(self, top: int | None = None) -> str:
        """A fixed-width table of the trained points, best first, then one line of counts and the stop reason."""
        ranked = self.ranked()[:top]
        budgets = any(r.budget is not None for r in ranked)
        head = ["rank", "score", "params", "MFLOPs", "seconds"] + (["budget"] if budgets else []) + self.choices
        rows = [[str(i), f"{_score(r):.4f}", f"{r.params:,}", "-" if r.flops is None else f"{r.flops / 1e6:.2f}",
                 f"{r.seconds:.2f}"] + ([_fmt(r.budget)] if budgets else [])
                + [_fmt(r.assignment[c]) if c in r.assignment else "-" for c in self.choices]
                for i, r in enumerate(ranked, 1)]
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head, *rows]]
        rejected = sum(not r.trained for r in self.results)
        trained = sum(r.trained for r in self.results)
        lines.append(f"{trained} evaluations, {rejected} points rejected by limits ({self.replayed} of these read "
                     f"from the checkpoint); stopped: {self.stopped}")
        return "\n".join(lines)

    def svg(self, title: str = "score vs parameters", baseline: SearchResult | None = None) -> str:
        """The score of every trained point against its parameter count, as an SVG document (best in red;
        points that scored NaN or infinity are left out). `baseline`: another search (say a random sample of the
        space) drawn in grey, with its median score as a dashed line."""
        return plot_svg(_finite_points(self), title=title, baseline=_finite_points(baseline) if baseline else ())

    def write_svg(self, path: str | Path, title: str = "score vs parameters",
                  baseline: SearchResult | None = None) -> None:
        Path(path).write_text(self.svg(title, baseline))


# ---------------------------------------------------------------------------------------------- strategies

def random_search(space: Space, train_and_score: Callable[[Any], float], *, max_evaluations: int | None = None,
                  max_seconds: float | None = None, seed: int = 0, max_params: int | None = None,
                  max_flops: int | None = None, input_sizes: Mapping[str, int] | None = None,
                  checkpoint: str | Path | None = None, build: Callable[[Assignment], Any] | None = None
                  ) -> SearchResult:
    """Train points drawn uniformly from the valid points of `space` (`Space.sample`), each at most once."""
    run = _Run(space, train_and_score, "random", {}, seed, max_evaluations, max_seconds, max_params, max_flops,
               input_sizes, checkpoint, build)
    rng = random.Random(seed)
    with run:
        while True:
            run.fresh(lambda: _sample(space, rng))
    return run.result()


def evolution(space: Space, train_and_score: Callable[[Any], float], *, population: int = 20, sample: int = 5,
              max_evaluations: int | None = None, max_seconds: float | None = None, seed: int = 0,
              max_params: int | None = None, max_flops: int | None = None,
              input_sizes: Mapping[str, int] | None = None, checkpoint: str | Path | None = None,
              build: Callable[[Assignment], Any] | None = None) -> SearchResult:
    """Regularized (aging) evolution (Real et al., 2019): train `population` random points; then repeatedly
    take `sample` members of the population at random, mutate the best of them (`mutate`), train the child, add
    it and drop the OLDEST member. Ageing out good points keeps the search from resting on one lucky score."""
    if population < 1 or not 1 <= sample <= population:
        raise ValueError(f"evolution needs population >= 1 and 1 <= sample <= population "
                         f"(got population={population}, sample={sample})")
    run = _Run(space, train_and_score, "evolution", {"population": population, "sample": sample}, seed,
               max_evaluations, max_seconds, max_params, max_flops, input_sizes, checkpoint, build)
    rng = random.Random(seed)
    members: deque[Result] = deque()

    def child() -> Assignment | None:
        if run.wasted >= STALE:  # the population's neighbourhood is used up: somewhere new
            return _sample(space, rng)
        parent = max(rng.sample(list(members), sample), key=_score)
        return mutate(space, parent.assignment, rng)

    with run:
        while len(members) < population:
            members.append(run.fresh(lambda: _sample(space, rng)))
        while True:
            members.append(run.fresh(child))
            members.popleft()
    return run.result()


def successive_halving(space: Space, train_and_score: Callable[[Any, float], float], *, configurations: int = 27,
                       min_budget: float = 1, eta: int = 3, max_budget: float | None = None,
                       max_evaluations: int | None = None, max_seconds: float | None = None, seed: int = 0,
                       max_params: int | None = None, max_flops: int | None = None,
                       input_sizes: Mapping[str, int] | None = None, checkpoint: str | Path | None = None,
                       build: Callable[[Assignment], Any] | None = None) -> SearchResult:
    """Successive halving (Jamieson & Talwalkar, 2016): train `configurations` random points with `min_budget`,
    keep the best 1/`eta` of them and train those again, from scratch, with `eta` times the budget, until one
    point is left or the next budget would exceed `max_budget`. `train_and_score(module, budget)` decides what a
    budget means (epochs, steps, examples)."""
    if configurations < 1 or eta < 2 or min_budget <= 0:
        raise ValueError(f"successive halving needs configurations >= 1, eta >= 2 and min_budget > 0 "
                         f"(got {configurations}, {eta}, {min_budget})")
    settings = {"configurations": configurations, "min_budget": min_budget, "eta": eta, "max_budget": max_budget}
    run = _Run(space, train_and_score, "successive_halving", settings, seed, max_evaluations, max_seconds,
               max_params, max_flops, input_sizes, checkpoint, build, need_budget=False)
    rng = random.Random(seed)
    with run:
        rung = [run.fresh(lambda: _sample(space, rng), min_budget) for _ in range(configurations)]
        budget = min_budget
        while len(rung) > 1 and (max_budget is None or budget * eta <= max_budget):
            budget *= eta
            survivors = sorted(rung, key=lambda r: -_score(r))[:max(1, len(rung) // eta)]
            rung = [run.evaluate(r.assignment, budget) for r in survivors]
        run.stopped = f"one point left at budget {_fmt(budget)}" if len(rung) == 1 else \
            f"{len(rung)} points left at budget {_fmt(budget)} (the next budget would exceed max_budget)"
    return run.result()


def optuna_search(space: Space, train_and_score: Callable[[Any], float], *, sampler: Any = None,
                  max_evaluations: int | None = None, max_seconds: float | None = None, seed: int = 0,
                  max_params: int | None = None, max_flops: int | None = None,
                  input_sizes: Mapping[str, int] | None = None, checkpoint: str | Path | None = None,
                  build: Callable[[Assignment], Any] | None = None) -> SearchResult:
    """Let an Optuna sampler (default: TPE seeded with `seed`) propose the points, through `suggest`. Points that
    are invalid or over a limit are told to Optuna as pruned; a point already trained is told its score again
    without training. Needs `pip install optuna`."""
    optuna = _optuna()
    sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed)
    run = _Run(space, train_and_score, "optuna", {"sampler": type(sampler).__name__}, seed, max_evaluations,
               max_seconds, max_params, max_flops, input_sizes, checkpoint, build)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    pruned = optuna.trial.TrialState.PRUNED
    with run:
        while True:
            run.check_budget()
            run.check_space()
            trial = study.ask()
            assignment = suggest(trial, space)
            seen = run.seen.get(_key(assignment)) if assignment is not None else None
            result = seen or (run.evaluate(assignment) if assignment is not None else None)
            if result is None or not result.trained:
                study.tell(trial, state=pruned)
            elif math.isinf(_score(result)):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, _score(result))
            run.wasted = run.wasted + 1 if result is None or seen or not result.trained else 0
            run.check_wasted()
    return run.result()


# ------------------------------------------------------------------------------------ moves in the space

def mutate(space: Space, parent: Mapping[str, Any], rng: random.Random) -> Assignment | None:
    """The parent with one choice (picked uniformly among those that have another value) set to another value
    of its domain. Later choices keep their value when it is still in their domain (which may depend on the
    changed one) and passes their `where`, and are drawn again from the values that do otherwise; a choice
    whose domain became empty is dropped. None when the child is not a valid point (it fails to type-check, a
    continuous choice breaks a `where`) or nothing can change."""
    movable = [c.name for c in space.choices if c.name in parent and _others(_domain(c, parent), parent[c.name])]
    if not movable:
        return None
    target = rng.choice(movable)
    child: Assignment = {}
    for index, choice in enumerate(space.choices):
        domain = _domain(choice, child)
        if _empty(domain):
            continue
        if choice.name != target and choice.name in parent and _contains(domain, parent[choice.name]) \
                and _holds(space, index, {**child, choice.name: parent[choice.name]}):
            child[choice.name] = parent[choice.name]
            continue
        if choice.name == target:
            domain = _others(domain, parent[target])
        if isinstance(domain, tuple):
            domain = tuple(v for v in domain if _holds(space, index, {**child, choice.name: v}))
            if not domain:
                return None
        child[choice.name] = _draw(domain, rng)
    return child if space.is_valid(child) else None


def _holds(space: Space, index: int, partial: Assignment) -> bool:
    """Whether the values of choices 0..index pass their `where` conditions. `Choice.domain` of the next choice
    binds (and so checks) every earlier one; for the last choice the whole point's `is_valid` decides."""
    if index + 1 == len(space.choices):
        return space.is_valid(partial)
    try:
        space.choices[index + 1].domain(partial)
    except SpeccError:
        return False
    return True


def suggest(trial: Any, space: Space) -> Assignment | None:
    """Ask an Optuna trial for one point of `space`, choice by choice in declaration order: a distribution
    becomes `suggest_float(log=...)`, an evenly spaced set of ints `suggest_int(step=...)`, any other finite set
    `suggest_categorical`. Optuna forbids a categorical parameter whose values change between trials, so a set
    that depends on earlier choices is asked under a name that lists its values (`heads{1,2,4}`). Returns None
    when the point is not valid (prune the trial). Use it in your own Optuna objective, or via `optuna_search`."""
    assignment: Assignment = {}
    for choice in space.choices:
        try:
            domain = _domain(choice, assignment)
        except SpeccError:  # an earlier value breaks its `where`
            return None
        if _empty(domain):
            continue
        if not isinstance(domain, tuple):
            value = trial.suggest_float(choice.name, domain.low, domain.high, log=domain.kind == "loguniform")
        elif (step := _int_step(domain)) is not None:
            value = trial.suggest_int(choice.name, min(domain), max(domain), step=step)
        else:
            name = choice.name if not getattr(choice, "depends", ()) else \
                f"{choice.name}{{{','.join(str(v) for v in domain)}}}"
            value = trial.suggest_categorical(name, list(domain))
        assignment[choice.name] = value
    return assignment if space.is_valid(assignment) else None


def plot_svg(points: Sequence[tuple[float, float]], title: str = "score vs parameters",
             x_label: str = "parameters", y_label: str = "score",
             baseline: Sequence[tuple[float, float]] = ()) -> str:
    """A scatter plot of (x, y) points as a standalone SVG document; the x axis is logarithmic when x spans more
    than a factor of 10. The point with the largest y is drawn in red; `baseline` points in grey, with a dashed
    line at their median y."""
    if not points:
        raise ValueError("nothing to plot: no point was trained")
    width, height, left, right, top, bottom = 640, 420, 70, 20, 40, 50
    xs, ys = [float(p[0]) for p in points], [_finite(p[1]) for p in points]
    bx, by = [float(p[0]) for p in baseline], [_finite(p[1]) for p in baseline]
    log = min(xs + bx) > 0 and max(xs + bx) / min(xs + bx) > 10
    fx = math.log10 if log else (lambda v: v)
    x0, x1 = _pad(fx(min(xs + bx)), fx(max(xs + bx)))
    y0, y1 = _pad(min(ys + by), max(ys + by))

    def px(v: float) -> float:
        return left + (fx(v) - x0) / (x1 - x0) * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{_xml(title)}</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>']
    xticks = _log_ticks(x0, x1) if log else _ticks(x0, x1)
    for t in xticks:
        out.append(f'<line x1="{px(t):.1f}" y1="{height - bottom}" x2="{px(t):.1f}" y2="{height - bottom + 5}" '
                   f'stroke="black"/><text x="{px(t):.1f}" y="{height - bottom + 18}" text-anchor="middle">'
                   f'{_short(t)}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left - 5}" y1="{py(t):.1f}" x2="{left}" y2="{py(t):.1f}" stroke="black"/>'
                   f'<text x="{left - 8}" y="{py(t) + 4:.1f}" text-anchor="end">{_short(t)}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
               f'{_xml(x_label)}{" (log scale)" if log else ""}</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2})">{_xml(y_label)}</text>')
    if baseline:
        median = statistics.median(by)
        out.append(f'<line x1="{left}" y1="{py(median):.1f}" x2="{width - right}" y2="{py(median):.1f}" '
                   f'stroke="grey" stroke-dasharray="6 4"/><text x="{width - right - 4}" y="{py(median) - 5:.1f}" '
                   f'text-anchor="end" fill="grey">median of the baseline ({median:.4g})</text>')
        for x, y in zip(bx, by):
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="none" stroke="grey">'
                       f'<title>baseline: {_short(x)} params, score {y:.4g}</title></circle>')
    best = max(range(len(points)), key=lambda i: ys[i])
    for i in [j for j in range(len(points)) if j != best] + [best]:  # the best on top
        x, y, colour = xs[i], ys[i], "#d62728" if i == best else "#1f77b4"
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{6 if i == best else 4}" fill="{colour}" '
                   f'fill-opacity="0.8"><title>{_short(x)} params, score {y:.4g}</title></circle>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ the engine

class _Stop(Exception):
    """A budget is spent (or the space is): unwinds the strategy's loop."""


class _Run:
    """What every strategy shares: budgets, limits, the cache of results, the checkpoint."""

    def __init__(self, space: Space, train_and_score: Callable[..., float], strategy: str,
                 settings: dict[str, Any], seed: int, max_evaluations: int | None, max_seconds: float | None,
                 max_params: int | None, max_flops: int | None, input_sizes: Mapping[str, int] | None,
                 checkpoint: str | Path | None, build: Callable[[Assignment], Any] | None,
                 need_budget: bool = True) -> None:
        if not callable(train_and_score):
            raise TypeError(f"train_and_score must be callable, not {type(train_and_score).__name__}")
        if need_budget and max_evaluations is None and max_seconds is None and space.size() is None:
            raise ValueError("give max_evaluations or max_seconds: the space is infinite")
        for name, value in (("max_evaluations", max_evaluations), ("max_seconds", max_seconds),
                            ("max_params", max_params), ("max_flops", max_flops)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        self.space, self.train_and_score, self.seed = space, train_and_score, seed
        self.max_evaluations, self.max_seconds = max_evaluations, max_seconds
        self.max_params, self.max_flops = max_params, max_flops
        self.input_sizes = dict(input_sizes or {})
        self.build = build or (lambda a: space.module(a, seed=seed))
        self.size = space.size()
        self.choices = [c.name for c in space.choices]
        header = {"specc_search": 1, "strategy": strategy, "settings": settings, "seed": seed,
                  "choices": [[c.name, c.kind] for c in space.choices], "size": self.size, "max_params": max_params,
                  "max_flops": max_flops, "input_sizes": self.input_sizes}
        self.checkpoint = _Checkpoint(Path(checkpoint), header) if checkpoint is not None else None
        self.cache: dict[str, Result] = self.checkpoint.load() if self.checkpoint else {}
        self.seen: dict[str, Result] = {}  # what this run asked for, by _key(assignment, budget)
        self.points: set[str] = set()  # the assignments this run proposed (with any budget)
        self.trace: list[Result] = []
        self.trained = self.replayed = self.wasted = 0
        self.spent = 0.0
        self.stopped = ""

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> bool:
        if isinstance(error, _Stop):
            self.stopped = str(error)
            return True
        return False

    def result(self) -> SearchResult:
        return SearchResult(self.trace, self.stopped, self.replayed, self.choices)

    def check_budget(self) -> None:
        if self.max_evaluations is not None and self.trained >= self.max_evaluations:
            raise _Stop(f"evaluation budget ({self.max_evaluations}) spent")
        if self.max_seconds is not None and self.spent >= self.max_seconds:
            raise _Stop(f"time budget ({self.max_seconds:.4g} s) spent")

    def check_space(self) -> None:
        """Stop proposing new points once every point of a finite space has been proposed."""
        if self.size is not None and len(self.points) >= self.size:
            raise _Stop(f"every point of the space ({self.size}) tried")

    def check_wasted(self) -> None:
        if self.wasted >= MAX_WASTED:
            raise _Stop(f"{MAX_WASTED} proposals in a row were invalid, already evaluated or over a limit")

    def fresh(self, propose: Callable[[], Assignment | None], budget: float | None = None) -> Result:
        """Evaluate the first proposal that is valid, new to this run and within the limits."""
        while True:
            self.check_budget()
            self.check_space()
            assignment = propose()
            if assignment is not None and _key(assignment) not in self.points:
                result = self.evaluate(assignment, budget)
                if result.trained:
                    self.wasted = 0
                    return result
            self.wasted += 1
            self.check_wasted()

    def evaluate(self, assignment: Assignment, budget: float | None = None) -> Result:
        """The result of one point at one budget: from this run, from the checkpoint, or measured and trained."""
        key = _key(assignment, budget)
        if key in self.seen:
            return self.seen[key]
        self.check_budget()
        self.points.add(_key(assignment))
        if key in self.cache:
            result = replace(self.cache[key], assignment=dict(assignment))  # (in the order of the choices)
            self.replayed += 1
        else:
            result = self._measure_and_train(assignment, budget)
            if self.checkpoint:
                self.checkpoint.append(result)
        self.seen[key] = result
        self.trace.append(result)
        self.trained += result.trained
        self.spent += result.seconds
        return result

    def _measure_and_train(self, assignment: Assignment, budget: float | None) -> Result:
        start = time.perf_counter()
        params, flops = self._measure(assignment)
        over = [f"{params:,} parameters > max_params {self.max_params:,}"
                if self.max_params is not None and params > self.max_params else "",
                f"{flops:,} FLOPs > max_flops {self.max_flops:,}"
                if self.max_flops is not None and flops is not None and flops > self.max_flops else ""]
        if any(over):
            return Result(dict(assignment), None, params, flops, time.perf_counter() - start, budget, "rejected",
                          "; ".join(filter(None, over)))
        module = self.build(dict(assignment))
        score = self.train_and_score(module) if budget is None else self.train_and_score(module, budget)
        seconds = time.perf_counter() - start
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            try:
                score = float(score)  # a 0-d tensor or numpy scalar
            except (TypeError, ValueError):
                raise TypeError(f"train_and_score must return a number, not {type(score).__name__}") from None
        score = float(score) if math.isfinite(score) else -math.inf
        return Result(dict(assignment), score, params, flops, seconds, budget)

    def _measure(self, assignment: Assignment) -> tuple[int, int | None]:
        """Parameters and FLOPs from `specc.summary`; FLOPs that depend on sizes not in `input_sizes` are None
        (an error when `max_flops` needs them)."""
        params, _, flops = totals(summarize(self.space.graph(assignment)))
        if isinstance(flops, Sym):
            missing = sorted(flops.symbols - set(self.input_sizes))
            if missing:
                if self.max_flops is not None:
                    raise ValueError(f"the FLOPs depend on {', '.join(missing)}: give their sizes in input_sizes "
                                     f"(e.g. input_sizes={{{', '.join(repr(m) + ': 1' for m in missing)}}})")
                return params, None
            flops = dim_value(flops, self.input_sizes, 0)
        return params, flops


class _Checkpoint:
    """The JSON-lines file of one search: a header line, then one line per finished evaluation."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, _plain(header)

    def load(self) -> dict[str, Result]:
        """The results already in the file (creating it with its header when it is new or empty). A last line
        without its newline, or that does not parse, was cut short by a kill: it is dropped from the file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write(json.dumps(self.header, sort_keys=True) + "\n", os.O_TRUNC)
            return {}
        data = self.path.read_bytes()
        raw = data.split(b"\n")
        complete, tail = raw[:-1], raw[-1]  # tail: the bytes after the last newline (b"" when none)
        header = json.dumps(self.header, sort_keys=True).encode("utf-8")
        source = SourceFile(str(self.path), data.decode("utf-8", errors="replace"))
        first = _parse(complete[0]) if complete else None
        if (first != self.header) if complete else not header.startswith(tail):
            self._other_search(source, first)  # before anything is cut from a file that is not ours
        parsed = [_parse(line) for line in complete]
        if tail or (len(complete) > 1 and parsed[-1] is None):
            keep = len(complete) if tail else len(complete) - 1
            warnings.warn(f"{printable(str(self.path))}: dropping an incomplete last line (a search killed while "
                          f"writing it)", stacklevel=4)
            with open(self.path, "r+b") as f:
                f.truncate(sum(len(line) + 1 for line in complete[:keep]))
                os.fsync(f.fileno())
            if keep == 0:  # killed while writing the header
                return self.load()
            parsed = parsed[:keep]
        results: dict[str, Result] = {}
        for number, record in enumerate(parsed[1:], 2):
            result = _result(record)
            if result is None:
                raise SpeccError(BAD_LINE, "this line of the checkpoint is not a search result",
                                 _line_span(source, number),
                                 help="the file was edited or written by something else; fix or remove the line")
            results[_key(result.assignment, result.budget)] = result
        return results

    def append(self, result: Result) -> None:
        """One line per result, written with one write() on an O_APPEND descriptor and fsynced, so a kill leaves
        at most the last line incomplete."""
        self._write(json.dumps(asdict(result), sort_keys=True) + "\n", os.O_APPEND)

    def _write(self, text: str, mode: int) -> None:
        data = text.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | mode, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _other_search(self, source: SourceFile, found: Any) -> None:
        if isinstance(found, dict) and found.get("specc_search") == 1:
            differ = [k for k in self.header if found.get(k) != self.header[k]]
            message = (f"this checkpoint was written by another search (its {', '.join(differ)} "
                       f"{'differs' if len(differ) == 1 else 'differ'})")
            notes = [Note(f"{k}: the file has {json.dumps(found.get(k))}, this search has {json.dumps(self.header[k])}")
                     for k in differ]
        else:
            message, notes = "this file is not a search checkpoint (its first line is not a search header)", []
        raise SpeccError(OTHER_SEARCH, message, _line_span(source, 1), notes,
                         help="give this search another checkpoint file, or delete this one to start over")


# ---------------------------------------------------------------------------------------------- helpers

def _key(assignment: Mapping[str, Any], budget: float | None = None) -> str:
    """One string per point (and budget): the assignment as sorted JSON."""
    return json.dumps([assignment, budget], sort_keys=True)


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so headers compare equal after a round trip."""
    return json.loads(json.dumps(value))


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except ValueError:
        return None


_FIELDS = {"assignment", "score", "params", "flops", "seconds", "budget", "status", "reason"}


def _result(record: Any) -> Result | None:
    if not isinstance(record, dict) or set(record) != _FIELDS or not isinstance(record["assignment"], dict) \
            or record["status"] not in ("ok", "rejected"):
        return None
    if record["status"] == "ok" and not isinstance(record["score"], (int, float)):
        return None
    return Result(**record)


def _line_span(source: SourceFile, number: int) -> Span:
    return Span(source, number, 1, number, max(2, len(source.line(number)) + 1))


def _value(value: Any) -> Any:
    """A choice's value as the driver stores it (in JSON): an op or block (`OpRef`) by its name, which every
    method of `Space` accepts back."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(getattr(value, "name", None), str):
        return value.name
    raise TypeError(f"cannot store a choice's value of type {type(value).__name__}")


def _sample(space: Space, rng: random.Random) -> Assignment:
    return {k: _value(v) for k, v in space.sample(rng).items()}


def _domain(choice: Any, assignment: Mapping[str, Any]) -> Any:
    domain = choice.domain(assignment)
    return tuple(_value(v) for v in domain) if isinstance(domain, tuple) else domain


def _score(result: Result) -> float:
    return -math.inf if result.score is None else result.score


def _empty(domain: Any) -> bool:
    return isinstance(domain, tuple) and not domain


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # True is not the int 1 here


def _contains(domain: Any, value: Any) -> bool:
    if isinstance(domain, tuple):
        return any(_same(v, value) for v in domain)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and domain.low <= value <= domain.high


def _others(domain: Any, value: Any) -> Any:
    """The domain without `value` (a distribution stays whole: drawing `value` again has probability 0)."""
    if isinstance(domain, tuple):
        return tuple(v for v in domain if not _same(v, value))
    return domain if domain.low < domain.high else ()


def _draw(domain: Any, rng: random.Random) -> Any:
    return rng.choice(domain) if isinstance(domain, tuple) else domain.sample(rng)


def _int_step(domain: tuple) -> int | None:
    """The step of an evenly spaced set of ints in increasing order (2, 4, 6; 1 for a single int), else None."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in domain):
        return None
    if len(domain) == 1:
        return 1
    step = domain[1] - domain[0]
    ok = step > 0 and all(b - a == step for a, b in zip(domain, domain[1:]))
    return step if ok else None


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ImportError("optuna_search needs Optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _fmt(value: Any) -> str:
    """A value for the table, as a spec writes it (`true`, `0.05`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite_points(result: SearchResult) -> list[tuple[float, float]]:
    return [(r.params, _score(r)) for r in result.ranked() if math.isfinite(_score(r))]


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"cannot plot a score of {v}")
    return v


def _pad(lo: float, hi: float) -> tuple[float, float]:
    span = hi - lo or abs(hi) or 1.0
    return lo - 0.05 * span, hi + 0.05 * span


def _ticks(lo: float, hi: float) -> Iterator[float]:
    """About five round numbers between lo and hi."""
    raw = (hi - lo) / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    t = math.ceil(lo / step) * step
    while t <= hi:
        yield round(t, 12)
        t += step


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten between 10**lo and 10**hi, with 2x and 5x ones when fewer than three powers fit."""
    decades = range(math.floor(lo), math.ceil(hi) + 1)
    for factors in ((1,), (1, 2, 5)):
        ticks = [f * 10 ** e for e in decades for f in factors if lo <= math.log10(f * 10 ** e) <= hi]
        if len(ticks) >= 3:
            break
    return ticks


def _short(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
