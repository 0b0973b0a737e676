"""The monotone DBM layer against the reference code (bench/reference_mdbm.py, a port of locuslab/MonotoneDBM
and locuslab/monotone_op_net): the whole fixed-point solve, forward and backward, and the softmax prox.

    python bench/monotone_bench.py [--batch 64] [--tol 1e-6] [--rounds 5] [--threads 1] [--dtype float64]
                                   [--sizes spec,1000] [--ref-prox-tol 1e-10] [--max-iter 500]

Sizes: "spec" is specs/mdbm_mnist.nnspec as written (64 pixel groups of 2, 8 hidden groups of 4, a label
group of 10: 170 units); "1000" is the same spec with pixels=190, hidden=800 (1,000 units). Every row
observes a random half of its pixels (whole pixel groups), as examples/train_mdbm.py does.

Both sides solve the same problem: specc's generated torch module's fixed_point layer (`model.q`) and the
reference's Peaceman-Rachford loop over the same W (the layer's `weight_matrix()`, computed inside every
timed call on both sides), the same alpha, the same solver tolerance and iteration limit. The reference's
prox iterates to --ref-prox-tol (its own default, 1e-4, is far less accurate than specc's prox, which is
exact to rounding). Timed:
- forward: the solve without autograd;
- backward: `loss.backward()` after a forward with autograd (the forward is not in this time): specc's
  implicit backward vs the reference's adjoint hook; gradients reach W's parameters and the bias on both;
- prox: one softmax prox of the whole state: "prox" is the layer's standalone, differentiable prox
  (`layer.prox`, per state part); "prox cold" the solver's (`_prox_fast`: every group in one pass, Newton on
  the normalizers and Halley on the units jointly) from scratch, as the first iteration of a solve calls it;
  "prox warm" the same for an input 0.01 away from the last one, started from that one's solution, as the
  solver's later iterations call it. The reference's prox has no warm start: the same column for all three.
Each configuration runs in interleaved rounds (A B C A B C ..., as bench/run.py does), so load that comes
and goes lands on all alike; the table shows min and median over rounds, ratios are reference / specc of
medians (> 1: specc is faster). Accuracy: the max |difference| of each result (and of the gradients) to a
float64 solve at tol 1e-13. The bar: specc >= 1.5x the reference, forward and backward, at both sizes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reference_mdbm import DenseLinear, GroupedProxSoftmax, MONPeacemanRachford  # noqa: E402
from specc.codegen import backends  # noqa: E402
from specc.codegen.torch_backend import load_module  # noqa: E402
from specc.compiler import compile_graph  # noqa: E402

SPEC = ROOT / "specs" / "mdbm_mnist.nnspec"
SIZES = {"spec": {}, "1000": {"pixels": 190, "hidden": 800}}
BAR = 1.5


def specc_layer(params: dict, dtype: torch.dtype, tol: float, max_iter: int):
    """The fixed_point layer of the generated torch module of mdbm_mnist at `params`."""
    graph = compile_graph(SPEC, params=params)
    module = load_module(backends()["torch"].emit(graph).data.decode(), "mdbm_bench_" + "_".join(map(str, params.values())))
    torch.manual_seed(0)
    layer = module.Model().to(dtype).q
    layer.tol, layer.max_iter = tol, max_iter
    return layer


class Problem:
    """One size: specc's layer, the reference solver on the same W, inputs and a loss direction."""

    def __init__(self, name: str, params: dict, args: argparse.Namespace, dtype: torch.dtype) -> None:
        self.name = name
        self.layer = specc_layer(params, dtype, args.specc_tol or args.tol, args.max_iter)
        layer = self.layer
        n, pixels = layer.n, layer.n_in
        gen = torch.Generator().manual_seed(1)
        on = torch.rand(args.batch, pixels // 2, generator=gen) < 0.5
        self.x = torch.stack([~on, on], -1).reshape(args.batch, pixels).to(dtype)
        self.observed = (torch.rand(args.batch, pixels // 2, generator=gen) < 0.5).repeat_interleave(2, 1)
        self.clamp = torch.cat([self.x, self.x.new_zeros(args.batch, n - pixels)], 1)
        self.mask = torch.cat([self.observed, self.observed.new_zeros(args.batch, n - pixels)], 1).to(dtype)
        self.direction = torch.randn(args.batch, n, generator=gen, dtype=dtype)
        parts = [s for _, s, _ in layer.softmax_blocks]
        groups = [g for _, _, g in layer.softmax_blocks]
        self.ref_prox = GroupedProxSoftmax(parts, groups, layer.alpha, tol=args.ref_prox_tol)
        self.reference = MONPeacemanRachford(DenseLinear(layer.weight_matrix, layer.bias), self.ref_prox,
                                             alpha=layer.alpha, tol=args.tol, max_iter=args.max_iter)
        self.iterations: dict[str, int] = {}

    # the four timed calls: each returns the seconds of its own timed part
    def specc_forward(self) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            self.layer(self.x, self.observed)
        return time.perf_counter() - start

    def reference_forward(self) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            self.reference(self.clamp, self.mask)
        return time.perf_counter() - start

    def specc_backward(self) -> float:
        self.layer.zero_grad()
        loss = (self.layer(self.x, self.observed) * self.direction).sum()
        start = time.perf_counter()
        loss.backward()
        return time.perf_counter() - start

    def reference_backward(self) -> float:
        self.layer.zero_grad()
        loss = (self.reference(self.clamp, self.mask) * self.direction).sum()
        start = time.perf_counter()
        loss.backward()
        return time.perf_counter() - start

    def gradients(self, run) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.layer.zero_grad()
        z = run()
        (z * self.direction).sum().backward()
        return z.detach(), [p.grad.clone() for p in (self.layer.A, self.layer.bias)]


def measure(configs: dict, rounds: int) -> dict[str, list[float]]:
    """One sample per configuration per round, in A B C A B C order, after one warm-up call each."""
    for fn in configs.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, fn in configs.items():
            samples[name].append(fn())
    return samples


def accuracy(problem: Problem, exact) -> dict[str, float]:
    """Max |difference| of each side's result and gradients to the float64 solve at tol 1e-13."""
    z_exact, g_exact = exact
    out = {}
    for side, run in (("specc", lambda: problem.layer(problem.x, problem.observed)),
                      ("reference", lambda: problem.reference(problem.clamp, problem.mask))):
        z, grads = problem.gradients(run)
        out[side] = (z - z_exact).abs().max().item()
        out[side + " grad"] = max(((g - e).abs().max() / e.abs().max()).item() for g, e in zip(grads, g_exact))
    return out


def exact_solution(problem: Problem):
    layer = problem.layer
    tol, max_iter, dtype = layer.tol, layer.max_iter, layer.bias.dtype
    layer.double()
    layer.tol, layer.max_iter = 1e-13, 20000
    try:
        x, observed, direction = problem.x.double(), problem.observed, problem.direction.double()
        layer.zero_grad()
        z = layer(x, observed)
        (z * direction).sum().backward()
        return z.detach().to(dtype), [p.grad.clone().to(dtype) for p in (layer.A, layer.bias)]
    finally:
        layer.to(dtype)
        layer.tol, layer.max_iter = tol, max_iter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--sizes", default="spec,1000")
    parser.add_argument("--ref-prox-tol", type=float, default=1e-10)
    parser.add_argument("--specc-tol", type=float, default=None,
                        help="specc's solver tolerance, if not --tol (to compare at equal accuracy: specc's rows stop "
                             "one by one, the reference's batch on its root-mean-square change)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"monotone DBM ({SPEC.name}), Peaceman-Rachford to tol {args.tol}"
          + (f" (specc {args.specc_tol})" if args.specc_tol else "") + f" (max_iter {args.max_iter}), batch "
          f"{args.batch}, {args.dtype}, {torch.get_num_threads()} thread(s), reference prox tol {args.ref_prox_tol}, "
          f"{args.rounds} interleaved rounds\n")
    header = f"{'size':>6} {'phase':9} {'specc min/med ms':>20} {'reference min/med ms':>22} {'ratio':>7}  bar"
    rows, notes = [], []
    met = True
    for name in args.sizes.split(","):
        problem = Problem(name, SIZES[name], args, dtype)
        exact = exact_solution(problem)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unconverged specc solve must not be timed silently
            acc = accuracy(problem, exact)
        steps = problem.reference.forward_steps, problem.reference.backward_steps
        calls = []
        problem.layer._map = lambda *a: calls.append(1) or type(problem.layer)._map(problem.layer, *a)
        with torch.no_grad():
            problem.layer(problem.x, problem.observed)
        del problem.layer._map
        v = torch.randn(args.batch, problem.layer.n, generator=torch.Generator().manual_seed(2), dtype=dtype) * 3
        alpha = torch.tensor(problem.layer.alpha, dtype=dtype)

        def specc_prox():
            start = time.perf_counter()
            problem.layer.prox(v, alpha)
            return time.perf_counter() - start

        _, state = problem.layer._prox_fast(v, alpha, None)
        nearby = v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)

        def specc_solver_prox():
            start = time.perf_counter()
            problem.layer._prox_fast(v, alpha, None)
            return time.perf_counter() - start

        def specc_warm_prox():
            start = time.perf_counter()
            problem.layer._prox_fast(nearby, alpha, state)
            return time.perf_counter() - start

        def reference_prox():
            start = time.perf_counter()
            problem.ref_prox(v)
            return time.perf_counter() - start

        prox_diff = (problem.layer.prox(v, alpha) - problem.ref_prox(v)).abs().max().item()
        samples = measure({"specc forward": problem.specc_forward, "reference forward": problem.reference_forward,
                           "specc backward": problem.specc_backward,
                           "reference backward": problem.reference_backward,
                           "specc prox": specc_prox, "specc solver prox": specc_solver_prox,
                           "specc warm prox": specc_warm_prox, "reference prox": reference_prox}, args.rounds)
        for phase, mine in (("forward", "forward"), ("backward", "backward"), ("prox", "prox"),
                            ("prox cold", "solver prox"), ("prox warm", "warm prox")):
            ours, ref = samples["specc " + mine], samples["reference prox" if "prox" in phase else "reference " + phase]
            ratio = statistics.median(ref) / statistics.median(ours)
            ok = ratio >= BAR
            if "prox" not in phase:
                met &= ok
            rows.append(f"{problem.layer.n:>6} {phase:9} {min(ours) * 1e3:9.2f} /{statistics.median(ours) * 1e3:9.2f} "
                        f"{min(ref) * 1e3:10.2f} /{statistics.median(ref) * 1e3:10.2f} {ratio:6.2f}x  "
                        + ("" if "prox" in phase else "met" if ok else "NOT met"))
        notes.append(f"{problem.layer.n} units: max |z - exact| specc {acc['specc']:.1e}, reference "
                     f"{acc['reference']:.1e}; gradient (relative to its max) specc {acc['specc grad']:.1e}, "
                     f"reference {acc['reference grad']:.1e}; forward iterations specc {len(calls)}, reference "
                     f"{steps[0]} (backward {steps[1]}); prox |specc - reference| {prox_diff:.1e}")
    print(header)
    print("\n".join(rows))
    print()
    print("\n".join(notes))
    print(f"\nbar (specc >= {BAR}x the reference, forward and backward, every size): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
