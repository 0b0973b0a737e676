"""specc.search: the strategies' budgets and limits, evolution against random search, successive halving's rungs,
the checkpoint (a killed search resumes without retraining and ends where an uninterrupted one does), the Optuna
adapter, the results table and plot. The space is tests/search_toy.py (the Space API over specs/ffn.nnspec) and
scores are cheap functions of the assignment."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from search_toy import ToySpace, ffn_graph, identity, toy_score

from specc import search
from specc.diagnostics import SpeccError
from specc.summary import summarize, totals
from specc.types import dim_value

TOY = Path(__file__).resolve().parent / "search_toy.py"
ROOT = TOY.parent.parent


class Recorder:
    """train_and_score that remembers what it trained."""

    def __init__(self, score=toy_score) -> None:
        self.calls: list[dict] = []
        self.score = score

    def __call__(self, assignment: dict, *budget: float) -> float:
        self.calls.append((dict(assignment), *budget))
        return self.score(assignment, *budget)


def test_random_search_trains_distinct_valid_points_up_to_the_budget():
    space, train = ToySpace(), Recorder()
    result = search.random_search(space, train, max_evaluations=12, seed=3, build=identity)
    assert len(train.calls) == 12 == len(result.results)
    assert all(space.is_valid(a) for a, in train.calls)
    assert len({json.dumps(a, sort_keys=True) for a, in train.calls}) == 12
    assert result.stopped == "evaluation budget (12) spent"
    assert [r.score for r in result.ranked()] == sorted((toy_score(a) for a, in train.calls), reverse=True)
    again = search.random_search(space, toy_score, max_evaluations=12, seed=3, build=identity)
    assert [r.assignment for r in again.results] == [a for a, in train.calls]  # a function of the seed
    other = search.random_search(space, toy_score, max_evaluations=12, seed=4, build=identity)
    assert [r.assignment for r in other.results] != [a for a, in train.calls]


def test_a_finite_space_is_searched_exhaustively_once():
    space = ToySpace(values=1)
    result = search.random_search(space, toy_score, seed=0, build=identity)
    assert space.size() == 33 and len(result.results) == 33
    assert result.stopped == "every point of the space (33) tried"
    assert sorted(json.dumps(r.assignment, sort_keys=True) for r in result.results) == \
        sorted(json.dumps(p, sort_keys=True) for p in space.points)


def test_the_time_budget_counts_the_seconds_of_the_evaluations(monkeypatch):
    clock = iter(range(0, 10_000, 1))  # every perf_counter() call one second later: each evaluation takes 1 s

    class FakeTime:
        perf_counter = staticmethod(lambda: next(clock))

    monkeypatch.setattr(search, "time", FakeTime)
    for strategy in (search.random_search, search.evolution):
        result = strategy(ToySpace(), toy_score, max_seconds=7, seed=0, build=identity)
        assert len(result.results) == 7 and all(r.seconds == 1 for r in result.results)
        assert result.stopped == "time budget (7 s) spent"
    limited = search.random_search(ToySpace(), toy_score, max_seconds=7, max_params=2000, seed=0, build=identity)
    assert len(limited.results) == 7 and any(not r.trained for r in limited.results)  # measuring costs time too


def test_parameter_and_flop_limits_reject_points_before_training():
    space, train = ToySpace(), Recorder()
    sizes = {"B": 2, "T": 3}
    result = search.evolution(space, train, population=6, sample=2, max_evaluations=30, seed=1, max_params=2000,
                              max_flops=12_000, input_sizes=sizes, build=identity)
    trained = [r for r in result.results if r.trained]
    rejected = [r for r in result.results if not r.trained]
    assert len(trained) == len(train.calls) == 30 and rejected
    for r in result.results:  # the numbers are specc.summary's, FLOPs at the given sizes
        params, _, flops = totals(summarize(ffn_graph(r.assignment["width"], r.assignment["expansion"])))
        assert (r.params, r.flops) == (params, dim_value(flops, sizes, 0))
    assert all(r.params <= 2000 and r.flops <= 12_000 for r in trained)
    assert all(r.params > 2000 or r.flops > 12_000 for r in rejected)
    assert all(r.score is None and "max_" in r.reason for r in rejected)
    assert not {json.dumps(r.assignment) for r in rejected} & {json.dumps(a) for a, in train.calls}


def test_a_flop_limit_needs_the_sizes_of_the_symbolic_dims():
    with pytest.raises(ValueError, match=r"FLOPs depend on B, T: give their sizes in input_sizes"):
        search.random_search(ToySpace(), toy_score, max_evaluations=3, max_flops=10**6, build=identity)
    result = search.random_search(ToySpace(), toy_score, max_evaluations=3, build=identity)
    assert all(r.flops is None for r in result.results)  # unknown without the sizes, and no limit needs them


def test_api_misuse_is_a_clear_error():
    with pytest.raises(ValueError, match="give max_evaluations or max_seconds"):
        search.random_search(ToySpace(lr=True), toy_score, build=identity)
    with pytest.raises(ValueError, match="sample <= population"):
        search.evolution(ToySpace(), toy_score, population=3, sample=4, max_evaluations=5)
    with pytest.raises(TypeError, match="must return a number, not str"):
        search.random_search(ToySpace(), lambda a: "good", max_evaluations=2, build=identity)
    with pytest.raises(ValueError, match="max_params must be a non-negative number"):
        search.random_search(ToySpace(), toy_score, max_evaluations=2, max_params=-1, build=identity)


def test_a_nan_score_is_the_worst():
    result = search.random_search(ToySpace(), lambda a: math.nan if a["a"] < 5 else 1.0, max_evaluations=20,
                                  seed=2, build=identity)
    assert any(r.score == -math.inf for r in result.results)
    assert result.ranked()[-1].score == -math.inf and result.best.score == 1.0
    circles = ET.fromstring(result.svg()).findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == sum(r.score == 1.0 for r in result.results)  # the NaN ones are left out


def test_mutate_changes_one_choice_and_redraws_dependent_ones():
    space, rng = ToySpace(), random.Random(0)
    changed_k_only_by_expansion = 0
    for _ in range(300):
        parent = space.sample(rng)
        child = search.mutate(space, parent, rng)
        if child is None:  # over width * expansion <= 128
            continue
        assert space.is_valid(child)
        diff = {n for n in parent if parent[n] != child[n]}
        assert diff and (len(diff) == 1 or diff == {"expansion", "k"}), (parent, child)
        if diff == {"expansion", "k"}:
            assert parent["k"] > child["expansion"]  # k left its domain: drawn again, otherwise kept
            changed_k_only_by_expansion += 1
    assert changed_k_only_by_expansion > 0
    space = ToySpace(lr=True)  # a log-uniform choice: mutated by a new draw from its distribution
    parents = [space.sample(rng) for _ in range(100)]
    children = [(p, search.mutate(space, p, rng)) for p in parents]
    moved = [c["lr"] for p, c in children if c is not None and c["lr"] != p["lr"]]
    assert moved and all(isinstance(v, float) and 1e-4 <= v <= 1 for v in moved)
    assert all(c is None or sum(p[k] != c[k] for k in p) >= 1 for p, c in children)


def test_mutate_on_a_spec_space_keeps_where_conditions():
    """specs/encoder_classifier_space.nnspec: `heads in [1, 2, 4, 8] where width % heads == 0`. A child whose width
    became 12 cannot keep 8 heads: they are drawn again from the values that divide 12; ops are stored by name."""
    from specc.space import Space

    space, rng = Space.load(ROOT / "specs" / "encoder_classifier_space.nnspec"), random.Random(0)
    parent = {"width": 48, "depth": 2, "heads": 8, "act": "gelu"}
    children = [search.mutate(space, parent, rng) for _ in range(40)]
    assert all(c is not None and space.is_valid(c) for c in children)
    narrowed = [c for c in children if c["width"] == 12]
    assert narrowed and all(c["heads"] in (1, 2, 4) for c in narrowed)
    assert all(sum(c[k] != parent[k] for k in parent) == 1 for c in children if c["width"] != 12)
    assert {c["act"] for c in children} == {"relu", "gelu", "silu"}


def test_evolution_beats_random_search_on_a_toy_score():
    """Same budget, same seeds: evolution's best is better on average, and once its population is trained it
    proposes far better points than random ones (median score of evaluations 11..40)."""
    best, later = {}, {}
    for name, strategy, extra in (("evolution", search.evolution, {"population": 10, "sample": 3}),
                                  ("random", search.random_search, {})):
        runs = [strategy(ToySpace(), toy_score, max_evaluations=40, seed=s, build=identity, **extra)
                for s in range(5)]
        best[name] = statistics.mean(r.best.score for r in runs)
        later[name] = statistics.mean(statistics.median(x.score for x in r.results[10:]) for r in runs)
    assert best["evolution"] > best["random"], best
    assert later["evolution"] > later["random"] + 5, later


def test_successive_halving_keeps_the_best_third_and_triples_the_budget():
    train = Recorder(lambda a, budget: toy_score(a) + 0.01 * budget * a["b"])  # the ranking shifts with budget
    result = search.successive_halving(ToySpace(), train, configurations=27, eta=3, seed=0, build=identity)
    budgets = [b for _, b in train.calls]
    assert budgets == [1] * 27 + [3] * 9 + [9] * 3 + [27]
    for budget, keep in ((1, 9), (3, 3), (9, 1)):
        rung = [(a, train.score(a, budget)) for a, b in train.calls if b == budget]
        best = sorted(rung, key=lambda p: -p[1])[:keep]
        assert [a for a, b in train.calls if b == budget * 3] == [a for a, _ in best]
    assert result.best.budget == 27 and result.best.assignment == train.calls[-1][0]
    assert result.stopped == "one point left at budget 27"
    assert len(result.ranked()) == 27  # each point once, at its largest budget
    capped = search.successive_halving(ToySpace(), train, configurations=27, max_budget=10, build=identity)
    assert max(r.budget for r in capped.results) == 9 and "3 points left at budget 9" in capped.stopped
    short = search.successive_halving(ToySpace(), train, configurations=27, max_evaluations=30, build=identity)
    assert len(short.results) == 30 and short.stopped == "evaluation budget (30) spent"


# ------------------------------------------------------------------------------------------- checkpoints

def _worker(strategy: str, checkpoint: Path, log: Path, hang_after: int, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TOY), strategy, str(checkpoint), str(log), str(hang_after), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_killed_search_resumes_from_its_checkpoint(tmp_path, strategy="evolution"):
    """Evolution, whose proposals depend on the scores so far: the resumed process must replay them exactly."""
    checkpoint, log = tmp_path / "search.jsonl", tmp_path / "trained.jsonl"
    first = _worker(strategy, checkpoint, log, hang_after=9, n=20)  # 9 results, then hangs in the 10th training
    deadline = time.monotonic() + 60
    while len(_lines(checkpoint)) < 10 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    first.communicate()
    assert len(_lines(checkpoint)) == 10 and len(_lines(log)) == 9  # the header and nine results
    with checkpoint.open("a") as f:
        f.write('{"assignment": {"width": 1')  # as if killed while writing a line
    second = _worker(strategy, checkpoint, log, hang_after=-1, n=20)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "dropping an incomplete last line" in err
    trained = [json.loads(line) for line in _lines(log)]
    assert len(trained) == 20 and len({json.dumps(a) for a in trained}) == 20  # nothing trained twice
    uninterrupted = search.random_search if strategy == "random" else search.evolution
    extra = {"population": 6, "sample": 3} if strategy == "evolution" else {}
    expected = uninterrupted(ToySpace(), toy_score, max_evaluations=20, seed=5, build=identity, **extra)
    assert json.loads(out) == [[r.assignment, r.score] for r in expected.results]
    assert len(_lines(checkpoint)) == 21
    again = uninterrupted(ToySpace(), toy_score, max_evaluations=20, seed=5, build=identity, checkpoint=checkpoint,
                          **extra)
    assert again.replayed == 20 and len(_lines(log)) == 20  # a finished search is only read back


@pytest.mark.parametrize("strategy", ["successive_halving", "optuna_search"])
def test_a_crashed_search_resumes_without_retraining(tmp_path, strategy):
    """train_and_score raising ends the search with everything finished in the checkpoint; the rerun trains only
    what is missing and ends where an uninterrupted search does (successive halving's rungs; Optuna's seeded TPE,
    which sees the same told scores in the same order)."""
    if strategy == "optuna_search":
        pytest.importorskip("optuna", reason="the Optuna adapter needs optuna (pip install optuna)")
    run = getattr(search, strategy)
    kwargs = ({"configurations": 9, "eta": 3} if strategy == "successive_halving" else {"max_evaluations": 14}) | \
        {"seed": 2, "max_params": 3000, "build": identity}
    score = (lambda a, budget: toy_score(a) + 0.1 * budget * a["b"]) if strategy == "successive_halving" else \
        (lambda a: toy_score(a))
    calls = []

    def crashing(*args):
        if len(calls) == 7:
            raise RuntimeError("killed")
        calls.append(json.dumps(args, sort_keys=True))
        return score(*args)

    with pytest.raises(RuntimeError, match="killed"):
        run(ToySpace(), crashing, checkpoint=tmp_path / "c.jsonl", **kwargs)
    first = list(calls)
    calls.append("resumed")  # no more crashes
    resumed = run(ToySpace(), crashing, checkpoint=tmp_path / "c.jsonl", **kwargs)
    straight = run(ToySpace(), score, **kwargs)
    def same(r):  # all but the seconds
        return r.assignment, r.score, r.budget, r.params, r.status

    assert [same(r) for r in resumed.results] == [same(r) for r in straight.results]
    assert any(not r.trained for r in straight.results)  # rejected points are replayed too
    assert not set(first) & set(calls[len(first) + 1:])  # nothing trained twice
    assert resumed.replayed >= 7 and resumed.best.assignment == straight.best.assignment
    assert all(r.params <= 3000 for r in straight.results if r.trained)


def test_a_resumed_search_can_be_given_a_larger_budget(tmp_path):
    checkpoint, train = tmp_path / "c.jsonl", Recorder()
    search.evolution(ToySpace(), train, population=5, sample=2, max_evaluations=12, seed=1, checkpoint=checkpoint,
                     build=identity)
    longer = search.evolution(ToySpace(), train, population=5, sample=2, max_evaluations=25, seed=1,
                              checkpoint=checkpoint, build=identity)
    straight = search.evolution(ToySpace(), toy_score, population=5, sample=2, max_evaluations=25, seed=1,
                                build=identity)
    assert len(train.calls) == 25 and longer.replayed == 12
    assert [r.assignment for r in longer.results] == [r.assignment for r in straight.results]


def test_rejected_points_are_checkpointed_and_not_measured_again(tmp_path, monkeypatch):
    checkpoint = tmp_path / "c.jsonl"
    first = search.random_search(ToySpace(), toy_score, max_evaluations=10, seed=0, max_params=1500,
                                 checkpoint=checkpoint, build=identity)
    assert any(not r.trained for r in first.results)
    monkeypatch.setattr(ToySpace, "graph", lambda *a: pytest.fail("measured again"))
    again = search.random_search(ToySpace(), pytest.fail, max_evaluations=10, seed=0, max_params=1500,
                                 checkpoint=checkpoint, build=identity)
    assert again.results == first.results and again.replayed == len(first.results)


def test_a_checkpoint_of_another_search_is_a_located_error(tmp_path):
    checkpoint = tmp_path / "c.jsonl"
    search.random_search(ToySpace(), toy_score, max_evaluations=3, seed=0, checkpoint=checkpoint, build=identity)
    with pytest.raises(SpeccError) as info:
        search.random_search(ToySpace(), toy_score, max_evaluations=3, seed=1, checkpoint=checkpoint, build=identity)
    text = info.value.render()
    assert info.value.code == "E0981" and f"{checkpoint}:1:1: error[E0981]" in text
    assert "another search (its seed differs)" in text and "the file has 0, this search has 1" in text
    with pytest.raises(SpeccError, match="its strategy, settings differ"):
        search.evolution(ToySpace(), toy_score, max_evaluations=3, checkpoint=checkpoint, build=identity)


def test_a_bad_line_inside_a_checkpoint_is_a_located_error(tmp_path):
    checkpoint = tmp_path / "c.jsonl"
    search.random_search(ToySpace(), toy_score, max_evaluations=3, seed=0, checkpoint=checkpoint, build=identity)
    lines = _lines(checkpoint)
    checkpoint.write_text("\n".join([lines[0], lines[1], '{"score": 1}', lines[2]]) + "\n")
    with pytest.raises(SpeccError) as info:
        search.random_search(ToySpace(), toy_score, max_evaluations=3, seed=0, checkpoint=checkpoint, build=identity)
    assert info.value.code == "E0980" and f"{checkpoint}:3:1: error[E0980]" in info.value.render()
    for foreign in ("name,score\nx,1\n", "name,score\nx,1", "no newline"):  # never cut, even at the end
        checkpoint.write_text(foreign)
        with pytest.raises(SpeccError, match="not a search checkpoint"):
            search.random_search(ToySpace(), toy_score, max_evaluations=3, checkpoint=checkpoint, build=identity)
        assert checkpoint.read_text() == foreign


# ------------------------------------------------------------------------------------- results and Optuna

def test_table_and_plot():
    result = search.random_search(ToySpace(), toy_score, max_evaluations=8, seed=0, max_params=5000,
                                  build=identity)
    lines = result.table().splitlines()
    assert lines[0].split() == ["rank", "score", "params", "MFLOPs", "seconds", "width", "expansion", "k", "a", "b"]
    scores = [float(line.split()[1]) for line in lines[1:-1]]
    assert len(scores) == 8 and scores == sorted(scores, reverse=True) and scores[0] == result.best.score
    rejected = sum(not r.trained for r in result.results)
    assert lines[-1] == (f"8 evaluations, {rejected} points rejected by limits (0 of these read from the "
                         f"checkpoint); stopped: evaluation budget (8) spent")
    svg = ET.fromstring(result.svg("toy <search>"))
    ns = "{http://www.w3.org/2000/svg}"
    circles = svg.findall(f"{ns}circle")
    assert len(circles) == 8 and sum(c.get("fill") == "#d62728" for c in circles) == 1
    assert svg.find(f"{ns}text").text == "toy <search>"
    ys = sorted((float(c.get("cy")), c.get("fill")) for c in circles)
    assert ys[0][1] == "#d62728"  # the best score is the highest point
    with pytest.raises(ValueError, match="nothing to plot"):
        search.plot_svg([])
    sample = search.random_search(ToySpace(), toy_score, max_evaluations=5, seed=9, build=identity)
    svg = ET.fromstring(result.svg(baseline=sample))
    grey = [c for c in svg.findall(f"{ns}circle") if c.get("stroke") == "grey"]
    assert len(grey) == 5 and len(svg.findall(f"{ns}circle")) == 13
    dashed = [line for line in svg.findall(f"{ns}line") if line.get("stroke-dasharray")]
    median_y = sorted(float(c.get("cy")) for c in grey)[2]
    assert len(dashed) == 1 and float(dashed[0].get("y1")) == median_y  # the baseline's median


@pytest.fixture
def optuna():
    """Optuna, or the test is skipped (it is in the `test` extras; the adapter needs it installed)."""
    return pytest.importorskip("optuna", reason="the Optuna adapter needs optuna (pip install optuna)")


def test_suggest_maps_each_choice_to_its_optuna_distribution(optuna):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space, points = ToySpace(lr=True), []
    for _ in range(40):
        trial = study.ask()
        point = search.suggest(trial, space)
        points.append(point)
        study.tell(trial, 0.0) if point else study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    kinds = {n: type(d).__name__ for t in study.trials for n, d in t.distributions.items()}
    assert kinds["a"] == kinds["k"] == "IntDistribution" and kinds["lr"] == "FloatDistribution"
    assert kinds["width"] == "CategoricalDistribution"  # 8, 16, 32, 64 is not evenly spaced
    assert all(d.log for t in study.trials for n, d in t.distributions.items() if n == "lr")
    assert all(t.distributions["k"].high == t.params["expansion"] for t in study.trials)  # a dependent range
    assert all(p is None or space.is_valid(p) for p in points) and None in points  # invalid ones are pruned
    assert all((p is None) == (t.state == optuna.trial.TrialState.PRUNED) for p, t in zip(points, study.trials))


def test_optuna_search_respects_the_budget_and_limits(optuna):
    train = Recorder()
    result = search.optuna_search(ToySpace(), train, max_evaluations=25, seed=0, max_params=3000, build=identity)
    assert len(train.calls) == 25 == sum(r.trained for r in result.results)
    assert all(r.params <= 3000 for r in result.results if r.trained)
    again = search.optuna_search(ToySpace(), toy_score, max_evaluations=25, seed=0, max_params=3000, build=identity)
    assert [r.assignment for r in again.results] == [r.assignment for r in result.results]
    assert result.best.score >= statistics.median(r.score for r in result.results if r.trained)


def test_suggest_on_a_spec_space_prunes_points_that_break_where(optuna):
    """specs/encoder_classifier_space.nnspec: heads depends on width (its `where`), so it is asked under a name
    that lists its values; width=12 with heads=8 breaks the `where` and is pruned; ops are asked by name."""
    from specc.space import Space

    space = Space.load(ROOT / "specs" / "encoder_classifier_space.nnspec")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        trial = study.ask()
        point = search.suggest(trial, space)
        assert point is None or space.is_valid(point)
        study.tell(trial, 0.0) if point else study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    for t in study.trials:
        pruned = t.state == optuna.trial.TrialState.PRUNED
        assert set(t.params) == {"width", "depth", "heads{1,2,4,8}"} | (set() if pruned else {"act"})
        assert pruned == (t.params["width"] == 12 and t.params["heads{1,2,4,8}"] == 8)
    assert {t.params["act"] for t in study.trials if "act" in t.params} == {"relu", "gelu", "silu"}
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)


def test_a_search_over_a_spec_space_is_the_same_in_every_process():
    """A resumed search replays its sampler in a new process: over specs/encoder_classifier_space.nnspec the
    points proposed must not depend on the process's string hashing (PYTHONHASHSEED)."""
    code = ("from specc.space import Space; from specc import search; import json\n"
            "s = Space.load('specs/encoder_classifier_space.nnspec')\n"
            "r = search.evolution(s, lambda a: a['width'] / 48 - a['depth'] / 10 + (a['act'] == 'gelu') / 20,"
            " population=4, sample=2, max_evaluations=12, seed=3, build=lambda a: a)\n"
            "print(json.dumps([x.assignment for x in r.results]))")
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    outputs = [r.communicate(timeout=300) for r in runs]  # both at once
    assert all(r.returncode == 0 for r in runs), outputs[0][1]
    points = [json.loads(out) for out, _ in outputs]
    assert points[0] == points[1] and len(points[0]) == 12
