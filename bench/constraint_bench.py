"""The C-DGM constraint layer against pishield's ShieldLayer, on the same constraints, in one run.

    python bench/constraint_bench.py              # CPU: batch 4096, 20 columns, 30 constraints
    python bench/constraint_bench.py --cuda       # also on the GPU, with specc's Triton kernel
    python bench/constraint_bench.py --threads 1  # on a machine busy with other work
    python bench/constraint_bench.py --file botnet_constraints.txt --order reversed  # a given set

The constraint set is drawn at random around a feasible point (seeded), among the
sets pishield 1.0 eliminates exactly (`pishield_is_exact`), so both layers must
return the same rows; the script checks that before timing. With `--file`, the set
is a rules file in pishield's format (as the C-DGM paper's sets are) over columns
y_0, y_1, ... as its `ordering` line names them, repaired in its order,
reversed, or shuffled (`--order`); the rows are compared only where pishield is
exact. Each layer is timed as the median of repeated forward passes (no
gradients); the ratio is pishield's time over specc's (> 1: specc is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph
from specc.constraints import violations
from specc.constraints.pishield_format import pishield_is_exact, to_pishield

BATCH, COLUMNS, CONSTRAINTS = 4096, 20, 30


def constraint_text(rng: random.Random, point: list[int]) -> str:
    """One random constraint `±c_i ± c_j <= rhs` (or a bound on one column) that holds at `point`.

    Unit coefficients on one or two columns, like most rules in the C-DGM paper's tables (`debt <=
    income`, `open <= total`, `age >= 18`): pishield 1.0 eliminates such sets exactly unless two terms
    cancel, which `build` checks.
    """
    cols = sorted(rng.sample(range(COLUMNS), rng.choice([1, 2, 2, 2])))
    coeffs = [(j, rng.choice([-1, 1])) for j in cols]
    rhs = sum(a * point[j] for j, a in coeffs) + rng.choice([0, 1, 4])
    body = " ".join(f"{'-' if a < 0 else '+'} c{j}" for j, a in coeffs)
    return f"{body.removeprefix('+ ')} <= {rhs}"


def spec_for(seed: int) -> str:
    """A spec with one constrain layer over 20 columns and 30 constraints."""
    rng = random.Random(seed)
    point = [rng.randint(-5, 5) for _ in range(COLUMNS)]
    lines = [constraint_text(rng, point) for _ in range(CONSTRAINTS)]
    names = ", ".join(f"c{i}" for i in range(COLUMNS))
    body = "".join(f"        {line}\n" for line in lines)
    return (f"model bench() {{\n    input x: f32[B, {COLUMNS}]\n    columns ({names}) = x\n"
            f"    output y = constrain(x) {{\n{body}    }}\n}}\n")


def file_spec(rules: Path, order: str = "given", seed: int = 0) -> str:
    """A spec with one constrain layer over a pishield rules file's columns (y_0 ... y_max, the highest its
    `ordering` line names), repaired in the file's order, `reversed`, or `shuffled` (seeded)."""
    lines = [line.split() for line in rules.read_text().splitlines() if line.split()[:1] == ["ordering"]]
    if not lines or not all(re.fullmatch(r"y_\d+", w) for w in lines[0][1:]):
        raise SystemExit(f"{rules}: --file takes a rules file in pishield's format, whose `ordering` line names "
                         "its columns y_0, y_1, ...")
    given = lines[0][1:]
    names = [f"y_{i}" for i in range(1 + max(int(w.removeprefix("y_")) for w in given))]
    rank = {"given": given, "reversed": given[::-1], "shuffled": random.Random(seed).sample(given, len(given))}[order]
    return (f"model bench() {{\n    input x: f32[B, {len(names)}]\n    columns ({', '.join(names)}) = x\n"
            f"    output y = constrain(x, file=\"{rules.name}\", order=[{', '.join(rank)}]) {{}}\n}}\n")


def build_file(rules: Path, order: str = "given", seed: int = 0):
    """(graph, constrain node) for a rules file (see `file_spec`); compiled next to a copy of the file."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / rules.name).write_text(rules.read_text())
        path = Path(tmp) / "bench.nnspec"
        path.write_text(file_spec(rules, order, seed))
        graph = compile_graph(path)
    return graph, next(n for n in graph.nodes() if n.op == "constrain")


def build(seed: int):
    """(graph, constrain node) for the first seed from `seed` on whose set pishield is exact."""
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(seed, seed + 1000):
            path = Path(tmp) / "bench.nnspec"
            path.write_text(spec_for(s))
            graph = compile_graph(path)
            node = next(n for n in graph.nodes() if n.op == "constrain")
            if pishield_is_exact(node.attrs.all_constraints, node.attrs.plan.order):
                return graph, node
    raise RuntimeError("no constraint set on which pishield is exact")


def pishield_layer(node) -> torch.nn.Module:
    from pishield.linear_requirements.shield_layer import ShieldLayer

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(to_pishield(node.attrs.all_constraints, node.attrs.plan.order))
    with contextlib.redirect_stdout(io.StringIO()):  # pishield prints every constraint it reads
        layer = ShieldLayer(len(node.attrs.columns), f.name, ordering_choice="given")
    os.unlink(f.name)
    return layer


def median_seconds(fns: tuple[Callable[[], object], ...], cuda: bool, repeat: int = 30) -> list[float]:
    """The median time of each of `fns`, run in turns (a, b, a, b, ...), so that load from other work on a
    shared machine slows each alike and their ratio stays meaningful."""
    for _ in range(3):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="also time on the GPU (specc's Triton kernel)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; use 1 on a machine busy with other work)")
    parser.add_argument("--file", type=Path, default=None,
                        help="a rules file in pishield's format instead of a random set")
    parser.add_argument("--order", choices=("given", "reversed", "shuffled"), default="given",
                        help="with --file: the repair order, the file's, reversed or shuffled (by --seed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    graph, node = build(args.seed) if args.file is None else build_file(args.file, args.order, args.seed)
    constraints = node.attrs.all_constraints
    exact = pishield_is_exact(constraints, node.attrs.plan.order)
    torch_module = load_module(backends()["torch"].emit(graph).data.decode(), "bench_torch")
    ours = torch_module.Bench().eval()
    theirs = pishield_layer(node)
    columns = len(node.attrs.columns)
    x = torch.randn(BATCH, columns, generator=torch.Generator().manual_seed(args.seed)) * 8

    with torch.no_grad():
        a, b = ours(x), theirs(x)
    if exact:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    else:
        print("pishield 1.0 is not exact on this set (see pishield_is_exact): rows not compared")
    print(f"{len(constraints)} constraints over {columns} columns, batch {BATCH}; "
          f"{len(node.attrs.plan.steps)} repair steps, "
          f"{sum(len(s.lower) + len(s.upper) for s in node.attrs.plan.steps)} bounds after elimination")
    print(f"rows violating before: {violations(constraints, x.numpy()).any(1).mean():.1%}   "
          f"after specc: {violations(constraints, a.numpy()).any(1).mean():.1%}   "
          f"after pishield: {violations(constraints, b.numpy()).any(1).mean():.1%}")

    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'device':<8}{'specc':>14}{'pishield':>14}{'ratio':>9}")
    rows = [("cpu", x, ours, False)]
    if args.cuda:
        os.environ.pop("TRITON_INTERPRET", None)
        triton_module = load_module(backends()["triton"].emit(graph).data.decode(), "bench_triton")
        rows.append(("cuda", x.cuda(), triton_module.Bench().eval().cuda(), True))
    for device, inputs, layer, cuda in rows:
        shield = theirs.to(inputs.device)
        with torch.no_grad():
            if exact:
                torch.testing.assert_close(layer(inputs), shield(inputs), rtol=1e-5, atol=1e-5)
            t_ours, t_theirs = median_seconds((lambda: layer(inputs), lambda: shield(inputs)), cuda)
        print(f"{device:<8}{t_ours * 1e6:>11.0f} µs{t_theirs * 1e6:>11.0f} µs{t_theirs / t_ours:>8.1f}x")


if __name__ == "__main__":
    main()
