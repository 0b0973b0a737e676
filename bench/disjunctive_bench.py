"""The disjunctive constraint layer (`or`, `not`, `->`) against the linear one, in one run.

    python bench/disjunctive_bench.py              # CPU, batch 4096
    python bench/disjunctive_bench.py --threads 1  # on a machine busy with other work

1. The loan generator's 27 linear constraints (specs/loan_generator.nnspec), compiled both ways: as the
   linear layer (Fourier–Motzkin bounds, a clamp per column) and, as one-literal clauses, as the
   disjunctive layer (resolution, gaps merged per column). Both must return the same rows (checked
   before timing); the ratio is the disjunctive layer's time over the linear one's: what a block pays
   for being general.
2. specs/rental_generator.nnspec's layer (disjunctive rules in a rules file): rows per second.

Each layer is timed as the median of repeated forward passes (no gradients), torch target.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph
from specc.constraints import disjunctive
from specc.constraints.disjunctive import Formula
from specc.constraints.fourier_motzkin import repair_order

ROOT = Path(__file__).resolve().parent.parent


def layer_of(spec: Path):
    """The generated torch module of `spec` and its constrain node."""
    graph = compile_graph(spec)
    module = load_module(backends()["torch"].emit(graph).data.decode(), f"bench_{spec.stem}")
    return module, next(n for n in graph.nodes() if n.op == "constrain")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loan, node = layer_of(ROOT / "specs" / "loan_generator.nnspec")
    rental, rental_node = layer_of(ROOT / "specs" / "rental_generator.nnspec")
    attrs = node.attrs
    columns = attrs.columns
    linear = loan._Constrain(len(columns), tuple(attrs.plan.runtime_steps()))
    units = tuple(Formula(((c,),), c.text, c.span) for c in attrs.all_constraints)
    or_plan = disjunctive.plan(units, columns, repair_order(columns, attrs.order))
    general = rental._ConstrainOr(len(columns), tuple(or_plan.runtime_steps()))
    x = torch.randn(args.batch, len(columns), generator=torch.Generator().manual_seed(0)) * 20
    with torch.no_grad():
        torch.testing.assert_close(general(x), linear(x), rtol=1e-5, atol=1e-4)
        t_linear = median_time(lambda: linear(x), args.repeats)
        t_general = median_time(lambda: general(x), args.repeats)
    print(f"loan_generator, {len(attrs.all_constraints)} linear constraints, batch {args.batch}:")
    print(f"  linear layer      {t_linear * 1e3:8.2f} ms")
    print(f"  disjunctive layer {t_general * 1e3:8.2f} ms   ratio {t_general / t_linear:.2f}x the linear layer's time")

    n = len(rental_node.attrs.columns)
    steps = rental_node.attrs.plan.runtime_steps()
    layer = rental._ConstrainOr(n, tuple(steps))
    rows = torch.randn(args.batch, n, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        t_rental = median_time(lambda: layer(rows), args.repeats)
    clauses = sum(len(c) for _, c in steps)
    print(f"rental_generator, {len(rental_node.attrs.all_formulas)} formulas ({clauses} clauses after elimination), "
          f"batch {args.batch}: {t_rental * 1e3:.2f} ms, {args.batch / t_rental:,.0f} rows/s")


if __name__ == "__main__":
    main()
