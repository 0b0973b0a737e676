"""Search spaces: a model whose parameters are choice points.

A model parameter may say which values it can take, so that one file is both a concrete model (its
defaults) and a space of models:

    model encoder(width: int in [64, 128, 256] = 128,        // a list of values
                  depth: int in 2..12 = 2,                   // a range of ints, both ends included
                  act: op in {relu, gelu, silu} = gelu,      // an op the body calls, `act(h)`
                  mixer: block in {attn_mixer, mlp_mixer} = attn_mixer,  // a block the body calls
                  norm: bool in {true, false} = true,        // `layernorm(h) if norm else h`
                  ffn: int in [width, 2 * width] = 2 * width,            // depends on an earlier choice
                  heads: int in [2, 4, 8] = 4 where width % heads == 0,  // a condition on the point
                  p: float ~ uniform(0.0, 0.3) = 0.1)        // continuous: uniform or loguniform

`specc compile` compiles the defaults (or `--choice name=VALUE` / `-p name=VALUE`: a value outside the
domain or failing its `where` is an error naming the domain). `Space` is the space itself: its choices,
its size, uniform samples, the graph, torch module and fixed spec text of a point.

A point is *valid* when every choice's value is in its domain (given the earlier ones), every `where`
holds and the model type-checks (compiles). Sampling is exactly uniform over valid points (over the
product of counting measure and the distributions, with continuous choices):

- The domains and `where`s (all but those reading a continuous choice) define a tree of points; the
  number of points under each node is counted by dynamic programming over the parameters in order,
  memoized on the values of the earlier parameters that later domains, `where`s and defaults read (so
  independent choices are counted once, not multiplied out). A choice is then drawn with probability
  proportional to the number of points under each of its values: exactly uniform over that tree, however
  non-rectangular dependent domains make it.
- A drawn point is then checked as a whole (the remaining `where`s and the type-check) and rejected if
  it fails: rejection from a uniform distribution over a superset is uniform over the subset.

Every domain and default must evaluate at every point: an error there (a division by zero, a type
mismatch of a derived parameter) prunes that subtree and is reported by `specc check` with the choices
that lead to it. A finite domain may not depend on a continuous choice (it could not be counted).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import ast, limits
from .diagnostics import Note, Span, SpeccError, did_you_mean

CHOICE_TYPES = ("int", "float", "bool", "str", "op", "block")
DISTRIBUTIONS = ("uniform", "loguniform")

# error codes (E0950-E0979)
NOT_IN_DOMAIN = "E0950"  # a value (default, -p, --choice) outside its choice's domain
WHERE_FALSE = "E0951"  # a value for which the choice's `where` is false
BLOCK_CHOICE = "E0952"  # a choice on a block's parameter (parser)
WHERE_WITHOUT_CHOICE = "E0953"  # `where` on a parameter that is no choice (parser)
BAD_DISTRIBUTION = "E0954"  # an unknown distribution, or bad bounds
CHOICE_TYPE = "E0955"  # a choice's kind or values do not fit its declared type
BAD_CHOICE = "E0956"  # `in x` that is no list, set or range (parser)
EMPTY_SPACE = "E0957"  # an empty domain, a space without valid points, or one where sampling finds none
CONTINUOUS_DEPENDENCY = "E0958"  # a finite domain reads a continuous choice
BAD_ASSIGNMENT = "E0959"  # --choice of a parameter that is no choice, or an assignment that misses one
NOT_IN_FILE = "E0960"  # a space whose model another file defines (its fixed text cannot be written)


@dataclass(frozen=True)
class Distribution:
    """A continuous domain: `uniform(low, high)` or `loguniform(low, high)` (log-uniform: 0 < low)."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        if self.kind == "loguniform":
            return min(max(math.exp(rng.uniform(math.log(self.low), math.log(self.high))), self.low), self.high)
        return rng.uniform(self.low, self.high)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.kind}({value_text(self.low)}, {value_text(self.high)})"


Domain = tuple | Distribution


def value_text(value: Any) -> str:
    """A value as spec text: `true`, `0.1`, `"s"`, an op's or block's name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)  # ints, and OpRef (its name)


def domain_text(domain: Domain) -> str:
    if isinstance(domain, Distribution):
        return str(domain)
    return "{" + ", ".join(value_text(v) for v in domain) + "}"


def assignment_text(assignment: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in assignment.items())


# ------------------------------------------------------------------ static rules (the parser's)
def check_choice_type(name: str, type_name: str | None, choice: ast.Choice) -> None:
    """The rules of a choice that need no evaluation: it has a type, its kind fits the type, a
    distribution is a known one with two bounds, an op or block set names them bare."""
    if type_name is None or type_name not in CHOICE_TYPES:
        what = f"`{type_name}`" if type_name else "no type"
        raise SpeccError(CHOICE_TYPE, f"choice `{name}` has {what}; a choice is one of {', '.join(CHOICE_TYPES)}",
                         choice.span, help=f"declare it, e.g. `{name}: int in [...]`")
    if choice.kind == "range" and type_name != "int":
        raise SpeccError(CHOICE_TYPE, f"a range `a..b` is of ints, but `{name}` is declared `{type_name}`",
                         choice.span, help="list the values instead: `in [a, b, c]`")
    if choice.kind == "dist":
        call = choice.dist
        assert call is not None
        if type_name != "float":
            raise SpeccError(CHOICE_TYPE, f"a distribution draws floats, but `{name}` is declared `{type_name}`",
                             choice.span, help="use a range `in a..b` or a list `in [a, b]` for other types")
        if call.func not in DISTRIBUTIONS:
            raise SpeccError(BAD_DISTRIBUTION, f"unknown distribution `{call.func}`", call.func_span,
                             help=did_you_mean(call.func, DISTRIBUTIONS) or f"use one of {', '.join(DISTRIBUTIONS)}")
        if len(call.args) != 2 or call.kwargs or call.constraints is not None:
            raise SpeccError(BAD_DISTRIBUTION, f"{call.func}() takes two bounds, `{call.func}(low, high)`", call.span)
        return
    if choice.kind in ("list", "set") and not choice.items:
        raise SpeccError(EMPTY_SPACE, f"choice `{name}` has no values", choice.span)
    if type_name in ("op", "block"):
        for item in choice.items:
            if not isinstance(item, ast.Name):
                raise SpeccError(CHOICE_TYPE, f"the choices of `{name}: {type_name}` are {type_name} names",
                                 item.span, help=f"e.g. `{name}: op in {{relu, gelu}}`")


def _choice_exprs(p: ast.Param) -> list[ast.Expr]:
    c = p.choice
    if c is None:
        return []
    if c.kind == "dist":
        assert c.dist is not None
        return list(c.dist.args)
    if c.kind == "range":
        return [e for e in (c.low, c.high) if e is not None]
    return [] if p.type in ("op", "block") else list(c.items)  # op and block names are names, not values


# ------------------------------------------------------------------ evaluation (the lowering's)
Evaluate = Callable[[ast.Expr], Any]
Callee = Callable[[str, str, Span], Any]


def _typed(p: ast.Param, value: Any, span: Span) -> Any:
    """A value of a choice's list, checked against its declared type (an int is a float too)."""
    from .lower import _kind, fits_type

    if not fits_type(p.type or "", value):
        raise SpeccError(CHOICE_TYPE, f"a value of choice `{p.name}` is {_kind(value)} ({value_text(value)}), "
                                      f"but `{p.name}` is declared `{p.type}`", span)
    return float(value) if p.type == "float" else value


def domain(p: ast.Param, evaluate: Evaluate, callee: Callee) -> Domain:
    """The values choice `p` may take, its expressions evaluated by `evaluate` (over the earlier parameters):
    a tuple (in order, without repeats) or a `Distribution`."""
    c = p.choice
    assert c is not None
    if c.kind == "dist":
        assert c.dist is not None
        low, high = (_typed(p, evaluate(a), a.span) for a in c.dist.args)
        if not low < high or (c.dist.func == "loguniform" and low <= 0):
            need = "0 < low < high" if c.dist.func == "loguniform" else "low < high"
            raise SpeccError(BAD_DISTRIBUTION, f"{c.dist.func}({value_text(low)}, {value_text(high)}) needs {need}",
                             c.dist.span)
        return Distribution(c.dist.func, low, high)
    if c.kind == "range":
        assert c.low is not None and c.high is not None
        low, high = (_typed(p, evaluate(e), e.span) for e in (c.low, c.high))
        limits.check("choice_values", high - low + 1, c.span, f"the range {low}..{high}")
        return tuple(range(low, high + 1))
    if p.type in ("op", "block"):
        values = [callee(p.type, item.id, item.span) for item in c.items if isinstance(item, ast.Name)]
    else:
        values = [_typed(p, evaluate(item), item.span) for item in c.items]
    limits.check("choice_values", len(values), c.span, f"the choices of `{p.name}`")
    return tuple(dict.fromkeys(values))


def check_in_domain(p: ast.Param, value: Any, values: Domain, span: Span | None) -> None:
    """E0950 unless `value` is one of `values` (`span`: where the value was given; None: the command line)."""
    inside = value in values if isinstance(values, Distribution) else any(
        value == v and type(value) is type(v) for v in values)
    if not inside:
        given = "its default" if span is not None else "the value given"
        error = SpeccError(NOT_IN_DOMAIN, f"{value_text(value)} is not a choice of `{p.name}` ({given}); its "
                                          f"choices are {domain_text(values)}", span or p.choice.span)
        if span is not None and p.choice is not None:
            error.with_note(Note("its choices", p.choice.span))
        raise error


def check_where(p: ast.Param, evaluate: Evaluate, env: Mapping[str, Any]) -> None:
    """E0951 unless the `where` of choice `p` holds (over `env`, `p` bound)."""
    if p.where is None:
        return
    joined = isinstance(p.where, ast.Logic) and p.where.op == "and"  # `where a and b`: each must hold
    for condition in p.where.operands if isinstance(p.where, ast.Logic) and joined else [p.where]:
        holds = evaluate(condition)
        if not isinstance(holds, bool):
            from .lower import _kind

            raise SpeccError("E0217", f"a `where` condition must be a bool, got {_kind(holds)}", condition.span)
        if not holds:
            from .lower import _names_in

            read = {n.id for n in _names_in(condition)}
            values = ", ".join(f"{n}={value_text(v)}" for n, v in env.items() if n in read)
            raise SpeccError(WHERE_FALSE, f"`{p.name}` = {value_text(env[p.name])} breaks its `where` "
                                          f"condition ({values})", condition.span)


# ------------------------------------------------------------------ the space
@dataclass(frozen=True, eq=False)
class Choice:
    """One choice point: a model parameter with a domain."""

    name: str
    kind: str  # its type: "int" | "float" | "bool" | "str" | "op" | "block"
    span: Span
    param: ast.Param = field(repr=False)
    depends: tuple[str, ...]  # the earlier choices its domain or `where` reads (through derived parameters too)
    space: "Space" = field(repr=False)

    def domain(self, assignment: Mapping[str, Any]) -> Domain:
        """Its values given the earlier choices in `assignment` (before any `where`, which reads this one)."""
        return self.space.domain(self.name, assignment)

    @property
    def continuous(self) -> bool:
        return self.param.choice is not None and self.param.choice.kind == "dist"

    @property
    def default(self) -> ast.Expr | None:
        return self.param.default


@dataclass
class PointError:
    """An error some points of a space run into, with the points (or partial assignments) that do."""

    error: SpeccError
    points: list[dict[str, Any]] = field(default_factory=list)


class Space:
    """The search space of one model: see the module's docstring."""

    def __init__(self, loaded: Any, target: Any, definition: ast.Definition, path: str | Path) -> None:
        from .lower import ParamBinder, _names_in

        self.loaded, self.target, self.definition, self.path = loaded, target, definition, str(path)
        self.params = list(definition.params)
        self._binder = ParamBinder(loaded.program, definition)
        reads: list[set[str]] = []
        for p in self.params:
            exprs = _choice_exprs(p) + [e for e in (p.default if p.choice is None else None, p.where) if e is not None]
            reads.append({n.id for n in _names_in(exprs)})
        # parameters whose value depends on a continuous choice: never bound while counting
        self._continuous: set[str] = set()
        for p, read in zip(self.params, reads):
            if p.choice is None:
                if read & self._continuous:
                    self._continuous.add(p.name)
            elif p.choice.kind == "dist":
                self._continuous.add(p.name)
            elif {n.id for n in _names_in(_choice_exprs(p))} & self._continuous:
                name = sorted({n.id for n in _names_in(_choice_exprs(p))} & self._continuous)[0]
                raise SpeccError(CONTINUOUS_DEPENDENCY, f"the choices of `{p.name}` depend on `{name}`, which "
                                                        "is continuous: they could not be counted", p.choice.span,
                                 help="make the earlier choice a list or a range, or drop the dependency")
        # a `where` reading a continuous value is checked on whole points, after drawing
        self._deferred = {p.name for p, read in zip(self.params, reads) if p.where is not None
                          and (read & self._continuous)}
        # what later parameters read: the key of the counting memo at each parameter
        self._needed: list[frozenset[str]] = []
        acc: set[str] = set()
        for read in reversed(reads):
            acc |= read
            self._needed.append(frozenset(acc - self._continuous))
        self._needed.reverse()
        self._needed.append(frozenset())
        deps: dict[str, set[str]] = {}  # the choices each parameter's value depends on
        choices: list[Choice] = []
        for p, read in zip(self.params, reads):
            reached = set().union(*(deps[n] for n in read if n in deps and n != p.name))
            deps[p.name] = reached | {p.name} if p.choice is not None else reached
            if p.choice is not None:
                earlier = tuple(c.name for c in choices if c.name in reached)
                choices.append(Choice(p.name, p.type or "", p.choice.span, p, earlier, self))
        self.choices = choices
        self._check_defaults()
        self._memo: dict[tuple, int] = {}
        self._pruned: dict[tuple, PointError] = {}
        self._checked: dict[tuple, SpeccError | None] = {}
        self._total = self._count(0, {}, {})
        if self._total == 0:
            first = next(iter(self._pruned.values()), None)
            if first is not None:
                raise first.error
            raise SpeccError(EMPTY_SPACE, f"the space of model `{definition.name}` has no point that satisfies "
                                          "every `where`", definition.name_span)

    def _check_defaults(self) -> None:
        """The defaults are a point (the concrete model): each must be in its domain and satisfy its `where`,
        up to the first choice without one (a located error otherwise, as `specc compile` would give)."""
        env: dict[str, Any] = {}
        for p in self.params:
            if p.choice is not None and p.default is None:
                return
            self._binder.bind(env, p)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, model: str | None = None, include: Sequence[str | Path] = ()) -> "Space":
        """The space of a model (or of a compressed model's base) of a spec file; SpeccError on bad input."""
        from .compiler import load_project

        return cls.from_loaded(load_project(path, include=include), model, path)

    @classmethod
    def from_loaded(cls, loaded: Any, model: str | None, path: str | Path) -> "Space":
        from .compiler import select_model

        target = select_model(loaded.module, model)
        definition = _model_of(loaded, target)
        if definition is None:
            from .compiler import compile_target

            compile_target(loaded, target)  # says what is wrong with the base
            raise SpeccError("E0806", f"`{target.name}` has no model to search over", target.name_span)
        return cls(loaded, target, definition, path)

    @property
    def name(self) -> str:
        return self.target.name

    def choice(self, name: str) -> Choice:
        for c in self.choices:
            if c.name == name:
                return c
        known = [c.name for c in self.choices]
        raise SpeccError(BAD_ASSIGNMENT, f"model `{self.definition.name}` has no choice `{name}`",
                         self.definition.name_span, help=did_you_mean(name, known) or
                         f"its choices: {', '.join(known) or 'none'}")

    # ---------------------------------------------------------------- walking
    def _key(self, i: int, env: Mapping[str, Any]) -> tuple:
        return (i,) + tuple(sorted((n, _frozen(env[n])) for n in self._needed[i] if n in env))

    def _prune(self, error: SpeccError, prefix: Mapping[str, Any]) -> None:
        key = _error_key(error)
        entry = self._pruned.setdefault(key, PointError(error))
        if len(entry.points) < 64:
            entry.points.append(dict(prefix))

    def _bind_default(self, env: dict[str, Any], p: ast.Param) -> dict[str, Any]:
        out = dict(env)
        self._binder.bind(out, p)
        return out

    def _values(self, i: int, env: Mapping[str, Any], prefix: Mapping[str, Any]) -> list[Any]:
        """The values of finite choice `i` given `env` that pass its `where` (unless deferred)."""
        p = self.params[i]
        try:
            values = domain(p, self._binder.evaluator(dict(env)), self._binder.callee)
        except SpeccError as error:
            self._prune(error, prefix)
            return []
        assert isinstance(values, tuple)
        if p.where is None or p.name in self._deferred:
            return list(values)
        kept = []
        for v in values:
            scope = dict(env)
            scope[p.name] = v
            try:
                check_where(p, self._binder.evaluator(scope), scope)
            except SpeccError as error:
                if error.code != WHERE_FALSE:
                    self._prune(error, {**prefix, p.name: v})
                continue
            kept.append(v)
        return kept

    def _count(self, i: int, env: dict[str, Any], prefix: dict[str, Any]) -> int:
        """The number of points under a node: parameters `i`... given `env` (see the module docstring)."""
        if i == len(self.params):
            return 1
        key = self._key(i, env)
        if key in self._memo:
            return self._memo[key]
        limits.check("space_states", len(self._memo) + 1, self.definition.name_span, "counting this space")
        p = self.params[i]
        if p.choice is None:
            if p.name in self._continuous:
                total = self._count(i + 1, env, prefix)
            else:
                try:
                    bound = self._bind_default(env, p)
                except SpeccError as error:
                    self._prune(error, prefix)
                    total = 0
                else:
                    total = self._count(i + 1, bound, prefix)
        elif p.choice.kind == "dist":
            total = self._count(i + 1, env, prefix)
        else:
            total = 0
            for v in self._values(i, env, prefix):
                total += self._count(i + 1, {**env, p.name: v}, {**prefix, p.name: v})
        self._memo[key] = total
        return total

    def _draw(self, pick: Callable[[list[int]], int], rng: random.Random | None) -> dict[str, Any]:
        """One point of the counted tree: at each finite choice `pick(counts)` chooses the index of a value
        (`counts`: points under each); continuous choices are drawn from `rng` (their defaults without one)."""
        env: dict[str, Any] = {}  # what counting sees: no continuous value, nor anything derived from one
        full: dict[str, Any] = {}  # every value so far (a distribution's bounds may read any earlier one)
        assignment: dict[str, Any] = {}
        for i, p in enumerate(self.params):
            if p.choice is None:
                if p.name not in self._continuous:
                    env = self._bind_default(env, p)
                    full[p.name] = env[p.name]
                else:
                    try:
                        self._binder.bind(full, p)
                    except SpeccError:
                        pass  # the point fails to compile, and `check` says why
            elif p.choice.kind == "dist":
                evaluate = self._binder.evaluator(dict(full))
                if rng is None and p.default is not None:
                    value = float(evaluate(p.default))
                else:
                    dist = domain(p, evaluate, self._binder.callee)
                    assert isinstance(dist, Distribution)
                    value = dist.sample(rng or random.Random(0))
                assignment[p.name] = full[p.name] = value
            else:
                values = self._values(i, env, assignment)
                counts = [self._count(i + 1, {**env, p.name: v}, {**assignment, p.name: v}) for v in values]
                value = values[pick(counts)]
                env = {**env, p.name: value}
                assignment[p.name] = full[p.name] = value
        return assignment

    # ---------------------------------------------------------------- the API
    def size(self) -> int | None:
        """The number of points whose values are in their domains and satisfy every `where` (exact, by
        counting); None when a choice is continuous. Points that fail to type-check are not subtracted
        (that needs a compile per point): `errors()` finds them, and `specc space` counts them."""
        return None if any(c.continuous for c in self.choices) else self._total

    def points(self) -> int:
        """The number of points of the finite choices (as `size`, counting a continuous choice as one)."""
        return self._total

    def unrank(self, index: int, rng: random.Random | None = None) -> dict[str, Any]:
        """The `index`-th point (0 <= index < `points()`) in the order of the choices' values."""
        if not 0 <= index < self._total:
            raise IndexError(index)
        remaining = [index]

        def pick(counts: list[int]) -> int:
            for j, n in enumerate(counts):
                if remaining[0] < n:
                    return j
                remaining[0] -= n
            raise AssertionError("counts changed")

        return self._draw(pick, rng)

    def enumerate(self, limit: int | None = None, seed: int = 0) -> tuple[list[dict[str, Any]], bool]:
        """Every point (with continuous choices at their defaults, or drawn), or a seeded random subset of
        `limit` (default: the `check_points` limit) distinct ones when there are more: (points, all of them?)."""
        limit = limits.value("check_points") if limit is None else limit
        rng = random.Random(seed)
        if self._total <= limit:
            return [self.unrank(k, rng) for k in range(self._total)], True
        return [self.unrank(k, rng) for k in sorted(rng.sample(range(self._total), limit))], False

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A point drawn uniformly from the valid points (see the module docstring)."""
        tries = limits.value("sample_tries")
        for _ in range(max(tries, 1)):
            point = self._draw(lambda counts: _weighted(rng, counts), rng)
            if self.is_valid(point):
                return point
        raise limits.exceeded("sample_tries", tries + 1, self.definition.name_span,
                              "sampling this space (most of its points do not type-check)")

    def domain(self, name: str, assignment: Mapping[str, Any]) -> Domain:
        """The domain of choice `name` given the earlier choices in `assignment`."""
        target = self.choice(name)
        env: dict[str, Any] = {}
        for p in self.params:
            if p is target.param:
                return domain(p, self._binder.evaluator(dict(env)), self._binder.callee)
            if p.choice is not None and p.name not in assignment:
                if p.name in target.depends:
                    raise SpeccError(BAD_ASSIGNMENT, f"the domain of `{name}` depends on `{p.name}`, which has "
                                                     "no value", target.span)
                continue
            try:
                self._binder.bind(env, p, assignment[p.name] if p.choice is not None else ...)
            except SpeccError:
                if p.choice is not None or p.name in self._reads_of(target):
                    raise
        raise AssertionError(name)

    def _reads_of(self, c: Choice) -> set[str]:
        from .lower import _names_in

        return {n.id for n in _names_in(_choice_exprs(c.param))}

    def _given(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        """`assignment` as parameter values: every choice needs a value (or its default)."""
        names = {c.name for c in self.choices}
        for name in assignment:
            if name not in names:
                self.choice(name)  # E0959 with a did-you-mean
        missing = [c.name for c in self.choices if c.name not in assignment and c.default is None]
        if missing:
            raise SpeccError(BAD_ASSIGNMENT, f"no value for choice{'s' * (len(missing) > 1)} "
                                             f"{', '.join(f'`{m}`' for m in missing)} (and no default)",
                             self.definition.name_span)
        point = dict(assignment)
        for c in self.choices:  # an op or a block by its name, as `-p act=relu` gives it
            if c.kind in ("op", "block") and isinstance(point.get(c.name), str):
                point[c.name] = self._binder.callee(c.kind, point[c.name], c.span)
        return point

    def check(self, assignment: Mapping[str, Any]) -> None:
        """Raise the located SpeccError of a point that is not valid (with a note naming the point)."""
        point = self._given(assignment)
        key = _frozen(point)
        if key not in self._checked:
            try:
                self.graph(point)
                self._checked[key] = None
            except SpeccError as error:
                self._checked[key] = error
        error = self._checked[key]
        if error is not None:
            raise error

    def is_valid(self, assignment: Mapping[str, Any]) -> bool:
        try:
            self.check(assignment)
        except SpeccError:
            return False
        return True

    def graph(self, assignment: Mapping[str, Any], target: str = "torch") -> Any:
        """The compiled (optimized) IR of one point. The IR is the same for every target; `target` must
        name one (a check that the point is asked for something that exists)."""
        from .codegen import backends
        from .compiler import compile_target

        if target not in backends():
            raise SpeccError("E0002", f"unknown target `{target}`", None,
                             help=f"use one of {', '.join(backends())}")
        point = self._given(assignment)
        try:
            return compile_target(self.loaded, self.target, point, source_path=self.path)
        except SpeccError as error:
            if point and not any(n.message.startswith("at the point ") for n in error.notes):
                error.with_note(Note(f"at the point {assignment_text(point)}"))
            raise

    def module(self, assignment: Mapping[str, Any], seed: int = 0) -> Any:
        """The generated torch module of one point, instantiated with its weights drawn from `seed`
        (in training mode)."""
        from .codegen.torch_backend import instantiate

        return instantiate(self.graph(assignment), seed).train()

    def concrete(self, assignment: Mapping[str, Any]) -> str:
        """The spec file with the point's values fixed (each choice `name: type = value`), formatted: it
        compiles to the same model as the point (imports are kept as written, relative to the spec)."""
        from .fmt import format_text

        if self.definition not in self.loaded.module.definitions:
            raise SpeccError(NOT_IN_FILE, f"model `{self.definition.name}` is defined in another file; "
                                          "sample that file", self.definition.name_span)
        self.check(assignment)
        values = self._resolved(assignment)
        source = self.definition.span.source
        text = source.text
        starts = [0]
        for line in source.lines:
            starts.append(starts[-1] + len(line) + 1)
        edits = []
        for c in self.choices:
            s = c.param.span
            begin = starts[s.line - 1] + s.col - 1
            end = starts[s.end_line - 1] + s.end_col - 1
            edits.append((begin, end, f"{c.name}: {c.kind} = {value_text(values[c.name])}"))
        for begin, end, new in sorted(edits, reverse=True):
            text = text[:begin] + new + text[end:]
        return format_text(text, source.path)

    def _resolved(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        """Every choice's value at a point: given, else its default's."""
        point = self._given(assignment)
        env: dict[str, Any] = {}
        for p in self.params:
            self._binder.bind(env, p, point.get(p.name, ...))
        return {c.name: env[c.name] for c in self.choices}

    def errors(self, points: Sequence[Mapping[str, Any]]) -> list[PointError]:
        """The distinct errors of `points` (by code and place) and of the subtrees counting pruned, each
        with the points that run into it."""
        found: dict[tuple, PointError] = {k: PointError(v.error, list(v.points)) for k, v in self._pruned.items()}
        for point in points:
            try:
                self.check(point)
            except SpeccError as error:
                found.setdefault(_error_key(error), PointError(error)).points.append(dict(point))
        return list(found.values())

    def explain(self, entry: PointError, checked: Sequence[Mapping[str, Any]]) -> SpeccError:
        """`entry`'s error, its message led by the choices that cause it: the fewest choices (dropped
        greedily, latest first) whose values at the failing points pick out exactly the failing points among
        those checked ("with width=64, heads=3: ...")."""
        failing = [p for p in entry.points if p]
        error = entry.error
        causes: list[str] = []
        if failing:
            names = [c.name for c in self.choices if all(c.name in p for p in failing)]
            bad = {_frozen(p) for p in failing}
            pool = [p for p in checked if all(n in p for n in names)] + failing

            def explains(kept: list[str]) -> bool:
                combos = {tuple(_frozen(p[n]) for n in kept) for p in failing}
                return all((tuple(_frozen(p[n]) for n in kept) in combos) == (_frozen(p) in bad) for p in pool)

            kept = list(names)
            for name in reversed(names):
                trial = [n for n in kept if n != name]
                if trial and explains(trial):
                    kept = trial
            combos = list(dict.fromkeys(tuple(value_text(p[n]) for n in kept) for p in failing))
            values = {n: list(dict.fromkeys(combo[j] for combo in combos)) for j, n in enumerate(kept)}
            if len(combos) > 3 or len(combos) == math.prod(len(v) for v in values.values()):
                # a product of values (exactly, or summarized when there are many combinations)
                causes = [f"{n}={v[0]}" if len(v) == 1 else f"{n} in {{{', '.join(v)}}}" for n, v in values.items()]
            else:
                causes = ["; ".join(", ".join(f"{n}={v}" for n, v in zip(kept, combo)) for combo in combos)]
        lead = f"with {', '.join(causes)}: " if causes else "at every point: "
        notes = [n for n in error.notes if not n.message.startswith("at the point ")]
        if failing:
            notes.append(Note(f"{len(failing)} point{'s' * (len(failing) != 1)} checked "
                              f"{'fail' if len(failing) != 1 else 'fails'} here, e.g. {assignment_text(failing[0])}"))
        return SpeccError(error.code, lead + error.message, error.span, notes,
                          help=error.help or "exclude these points with a `where` condition")


def _weighted(rng: random.Random, counts: list[int]) -> int:
    """An index drawn with probability proportional to `counts` (exact for big ints: no floats)."""
    r = rng.randrange(sum(counts))
    for j, n in enumerate(counts):
        if r < n:
            return j
        r -= n
    raise AssertionError("empty counts")


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return (type(value).__name__, value)


def _error_key(error: SpeccError) -> tuple:
    s = error.span
    return (error.code, s.path, s.line, s.col) if s is not None else (error.code, error.message)



# ------------------------------------------------------------------ commands (specc space / sample / check)
def space_of(loaded: Any, target: Any, path: str | Path) -> Space | None:
    """The space of a compilable target of a loaded file, or None when its model has no choice."""
    definition = _model_of(loaded, target)
    if definition is None or not any(p.choice is not None for p in definition.params):
        return None
    return Space(loaded, target, definition, path)


def _model_of(loaded: Any, target: Any) -> ast.Definition | None:
    """The model whose parameters a target has: itself, or the model a compressed model compresses (through
    compressed models compressed further); None when there is none (`compile_target` says why)."""
    from .compiler import base_target

    definition, seen = target, set()
    while isinstance(definition, ast.CompressDef) and definition.name not in seen:
        seen.add(definition.name)
        definition = base_target(loaded, definition.base)
    return definition if isinstance(definition, ast.Definition) and definition.kind == "model" else None


def _source(span: Span) -> str:
    from .lower import _source_text

    return _source_text(span)


def describe(space: Space) -> str:
    """`specc space`: the size, each choice (its domain, default, dependencies), the constraints and, where
    the space is small enough to type-check every point, how many points fail to."""
    continuous = [c for c in space.choices if c.continuous]
    size = space.points()
    head = f"space of model {space.name}: {size:,} point{'s' * (size != 1)}"
    if continuous:
        head += f" of its finite choices, and {len(continuous)} continuous choice{'s' * (len(continuous) != 1)}"
    lines = [head, "choices:" if space.choices else "choices: none (a concrete model)"]
    for c in space.choices:
        p = c.param
        assert p.choice is not None
        text = f"  {c.name}: {c.kind} {'~' if c.continuous else 'in'} "
        text += _source(p.choice.dist.span) if p.choice.dist is not None else _source(p.choice.span).removeprefix("in ")
        extras = []
        if c.default is not None:
            extras.append(f"default {_source(c.default.span)}")
        if c.depends:
            extras.append(f"depends on {', '.join(c.depends)}")
        if p.choice.kind == "range" or (p.choice.kind in ("list", "set") and not c.depends):
            try:
                values = c.domain({})
                if isinstance(values, tuple):
                    extras.append(f"{len(values)} value{'s' * (len(values) != 1)}")
            except SpeccError:
                pass
        lines.append(text + (f"  ({'; '.join(extras)})" if extras else ""))
    wheres = [c for c in space.choices if c.param.where is not None]
    lines.append("constraints:" if wheres else "constraints: none")
    lines += [f"  {c.name}: where {_source(c.param.where.span)}" for c in wheres if c.param.where is not None]
    points, every = space.enumerate()
    errors = space.errors(points)
    failing = {_frozen(p) for e in errors for p in e.points if p in points}
    pruned = sum(len(e.points) for e in space._pruned.values())
    how = "every point checked" if every else "a seeded random subset checked"
    lines.append(f"infeasible: {len(failing)} of {len(points)} point{'s' * (len(points) != 1)} fail to type-check "
                 f"({how})" + (f"; {pruned} partial assignment{'s' * (pruned != 1)} pruned while counting"
                              if pruned else ""))
    return "\n".join(lines)


def check_space(space: Space, seed: int = 0) -> tuple[str, list[SpeccError]]:
    """`specc check` of a space: type-check every point (or a seeded random subset of the `check_points`
    limit): a summary line, and each distinct error once, led by the choices that cause it."""
    points, every = space.enumerate(seed=seed)
    how = "every point" if every else f"a random subset, seed {seed}; `--limit check_points=N` checks more"
    if all(c.default is not None for c in space.choices):  # the concrete model is always among them
        defaults = space._resolved({})
        if not any(_frozen(p) == _frozen(defaults) for p in points):
            points.insert(0, defaults)
            how = f"the defaults and {'every point' if every else how}"
    entries = space.errors(points)
    total = space.points()
    line = (f"model {space.name}: space of {total:,} point{'s' * (total != 1)}, {len(points)} type-checked "
            f"({how}): " + ("ok" if not entries else f"{len(entries)} error{'s' * (len(entries) != 1)}"))
    return line, [space.explain(e, points) for e in entries]


def check_choices(loaded: Any, target: Any, path: str | Path, choices: Mapping[str, Any]) -> None:
    """`--choice` names choices of the model being compiled (E0959 otherwise); their values are checked
    against the domains when the model is compiled."""
    if not choices:
        return
    space = space_of(loaded, target, path)
    if space is None:
        raise SpeccError(BAD_ASSIGNMENT, f"`{target.name}` has no choices; `--choice` picks a point of a "
                                         "search space", target.name_span, help="set parameters with -p NAME=VALUE")
    for name in choices:
        space.choice(name)


def jsonable(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """A point as JSON values (an op or block by its name)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else repr(v) for k, v in assignment.items()}


def write_samples(space: Space, seed: int, count: int, out_dir: Path, inputs: Mapping[Path, str]) -> list[str]:
    """`specc sample`: `count` points drawn uniformly (seeded), each written as a fixed, formatted spec
    `out_dir/MODEL_i.nnspec` (MODEL: the model sampled, or the compressed model), and `out_dir/samples.json`
    with their assignments; returns the messages."""
    import json

    from .output import write_atomic

    rng = random.Random(seed)
    records, messages = [], []
    for i in range(count):
        point = space.sample(rng)
        text = space.concrete(point)
        name = f"{space.name}_{i}.nnspec"
        write_atomic(out_dir / name, text.encode(), inputs)
        records.append({"file": name, "model": space.name, "assignment": jsonable(point)})
        messages.append(f"wrote {out_dir / name} ({assignment_text(point)})")
    summary = {"spec": space.path, "model": space.name, "seed": seed, "size": space.size(), "samples": records}
    write_atomic(out_dir / "samples.json", (json.dumps(summary, indent=2) + "\n").encode(), inputs)
    messages.append(f"wrote {out_dir / 'samples.json'}")
    if space.loaded.module.imports:
        spec_dir = Path(space.path).resolve().parent
        messages.append(f"note: the samples import files relative to {spec_dir}: compile them with -I {spec_dir}")
    return messages
