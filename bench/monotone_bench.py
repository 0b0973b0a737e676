"""The monotone DBM layer against the reference algorithm: the softmax prox and the whole fixed-point solve.

    python bench/monotone_bench.py [--batch 64] [--tol 1e-6] [--repeat 5]

Sizes are those of specs/mdbm_mnist.nnspec (64 pixel groups of 2, 8 hidden groups of 4, a label group
of 10: 170 units) at the same tolerance for everyone. Each line prints wall time (and iterations) and
the ratio reference / ours (> 1: ours is faster):

- prox: the simplex prox of the whole state, by
  * "python loop": the reference algorithm as written in Python: per group, Newton on the normalizer
    until |log sum z| <= tol, each z_i by Halley iterations on its Lambert-W equation until the step
    is <= tol (scalar floats, data-dependent loops);
  * "torch, synced loops": the same iterations batched in torch, with a tolerance check (a host
    sync) after every Newton and every Halley step, as the reference code does;
  * ours: specc's torch prox (fixed step counts, no sync), and its Triton kernel on CUDA.
- solve: Peaceman-Rachford to tol, ours (per-row convergence, a host check every 8 iterations) vs
  the reference loop (the synced prox, a global convergence check every iteration).
The bar: our prox at least 10x faster than the Python Newton/Halley loop on CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from specc.codegen import backends  # noqa: E402
from specc.codegen.torch_backend import load_module  # noqa: E402
from specc.compiler import compile_graph  # noqa: E402

SPEC = ROOT / "specs" / "mdbm_mnist.nnspec"


# ----------------------------------------------------------------- the reference algorithm, in Python
def _solve_unit(t: float, beta: float, tol: float) -> tuple[float, int]:
    """p with beta e^p + p = t, Halley until the step is <= tol; returns (p, steps)."""
    p = t - math.log1p(beta * math.exp(min(t, 700.0))) if beta * math.exp(min(t, 700.0)) < math.e else \
        math.log(max(math.log(beta) + t - math.log(math.log(beta) + t), 1e-300)) - math.log(beta)
    for steps in range(1, 100):
        e = beta * math.exp(p)
        f, d1 = e + p - t, e + 1
        step = 2 * f * d1 / (2 * d1 * d1 - f * e)
        p -= step
        if abs(step) <= tol * (1 + abs(p)):
            return p, steps
    return p, 100


def python_prox_group(v: list[float], alpha: float, tol: float) -> list[float]:
    beta = 1 / alpha - 1
    s = [x / alpha - 1 for x in v]
    lo, hi = max(s) - beta, max(s) + math.log(sum(math.exp(x - max(s)) for x in s))
    mu = hi
    for _ in range(100):
        p = [_solve_unit(x - mu, beta, tol)[0] for x in s]
        z = [math.exp(q) for q in p]
        total = sum(z)
        g = math.log(total)
        if abs(g) <= tol:
            break
        lo, hi = (mu, hi) if g > 0 else (lo, mu)
        step = mu + g * total / sum(q / (1 + beta * q) for q in z)
        mu = step if lo <= step <= hi else (lo + hi) / 2
    return [q / total for q in z]


def python_prox(v: torch.Tensor, alpha: float, blocks, tol: float) -> torch.Tensor:
    rows = v.tolist()
    out = []
    for row in rows:
        units = []
        for start, size, g in blocks:
            for u in range(start, start + size, g):
                units += python_prox_group(row[u:u + g], alpha, tol)
        out.append(units)
    return torch.tensor(out, dtype=v.dtype)


# ------------------------------------------------ the reference structure in torch: loops synced on tol
def synced_prox(v: torch.Tensor, alpha: float, blocks, tol: float) -> torch.Tensor:
    beta = 1 / alpha - 1
    pieces = []
    for start, size, g in blocks:
        s = v[:, start:start + size].reshape(-1, g) / alpha - 1
        lo = s.amax(-1, keepdim=True) - beta
        hi = torch.logsumexp(s, -1, keepdim=True)
        mu = hi
        for _ in range(100):
            t = s - mu
            p = t - torch.log1p(beta * torch.exp(t.clamp(max=60)))
            for _ in range(100):  # Halley until every step is small: a host sync per step
                e = beta * torch.exp(p)
                f, d1 = e + p - t, e + 1
                step = 2 * f * d1 / (2 * d1 * d1 - f * e)
                p = p - step
                if (step.abs() / (1 + p.abs())).max().item() <= tol:
                    break
            z = torch.exp(p)
            total = z.sum(-1, keepdim=True)
            g_ = torch.log(total)
            if g_.abs().max().item() <= tol:
                break
            lo, hi = torch.where(g_ > 0, mu, lo), torch.where(g_ > 0, hi, mu)
            cand = mu + g_ * total / (z / (1 + beta * z)).sum(-1, keepdim=True)
            mu = torch.where((cand >= lo) & (cand <= hi), cand, (lo + hi) / 2)
        pieces.append((z / total).reshape(-1, size))
    return torch.cat(pieces, 1)


def reference_solve(layer, inj, W, alpha: float, V, clamp, mask, tol: float, max_iter: int):
    """Peaceman-Rachford with the synced prox and a global check every iteration."""
    def prox(u):
        return torch.where(mask, clamp, synced_prox(u.double(), alpha, layer.softmax_blocks, tol).to(u.dtype))

    u = torch.zeros_like(inj)
    z = prox(u)
    for i in range(1, max_iter + 1):
        reflected = 2 * z - u
        u = 2 * ((reflected + alpha * inj) @ V.t()) - reflected
        z_new = prox(u)
        res = ((z_new - z).norm(dim=-1) / (z_new.norm(dim=-1) + 1e-6)).max().item()
        z = z_new
        if res <= tol:
            return z, i
    return z, max_iter


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)

    graph = compile_graph(SPEC)
    module = load_module(backends()["torch"].emit(graph).data.decode(), "mdbm_bench")
    model = module.Model().eval()
    layer = model.q
    n, alpha = layer.n, layer.alpha
    print(f"monotone DBM {SPEC.name}: {n} units in {sum(s // g for _, s, g in layer.softmax_blocks)} groups, "
          f"batch {args.batch}, tol {args.tol}, alpha {alpha}, {torch.get_num_threads()} threads")

    v = torch.randn(args.batch, n) * 3
    a = torch.tensor(alpha)
    with torch.no_grad():
        t_ours, ours = timed(lambda: layer.prox(v, a), args.repeat)
        t_synced, synced = timed(lambda: synced_prox(v.double(), alpha, layer.softmax_blocks, args.tol * 1e-2),
                                 args.repeat)
        t_python, python = timed(lambda: python_prox(v.double(), alpha, layer.softmax_blocks, args.tol * 1e-2), 1)
    agree = max((ours.double() - python).abs().max().item(), (synced.double() - python).abs().max().item())
    print("\nprox of the whole state (max |difference| to the Python loop: %.1e)" % agree)
    print(f"  {'python Newton/Halley loop':28s} {t_python * 1e3:9.2f} ms   ratio {t_python / t_ours:8.1f}x")
    print(f"  {'torch, loops synced on tol':28s} {t_synced * 1e3:9.2f} ms   ratio {t_synced / t_ours:8.1f}x")
    print(f"  {'specc torch prox (ours)':28s} {t_ours * 1e3:9.2f} ms   ratio      1.0x")
    if torch.cuda.is_available():
        tmod = load_module(backends()["triton"].emit(graph).data.decode(), "mdbm_bench_triton")
        vt, at = v.cuda(), a.cuda()
        tlayer = tmod.Model().cuda().eval().q
        prox = tmod._fixed_point_prox(tlayer)
        prox(vt, at)
        torch.cuda.synchronize()
        t_kernel, _ = timed(lambda: (prox(vt, at), torch.cuda.synchronize()), args.repeat)
        print(f"  {'specc triton kernel (cuda)':28s} {t_kernel * 1e3:9.2f} ms   ratio {t_python / t_kernel:8.1f}x "
              "vs python")
    bar = t_python / t_ours
    print(f"  bar (ours >= 10x the Python loop): {'met' if bar >= 10 else 'NOT met'} ({bar:.0f}x)")

    x = torch.randn(args.batch, 128)
    observed = torch.rand(args.batch, 128) < 0.5
    with torch.no_grad():
        W, alpha_t, V = layer.operators()
        clamp = torch.cat([x, x.new_zeros(args.batch, n - 128)], 1)
        mask = torch.cat([observed, observed.new_zeros(args.batch, n - 128)], 1)
        inj = layer.bias.expand(args.batch, n)
        layer.tol = args.tol
        counter = {"calls": 0}
        original = layer._map

        def counted(*a, **k):
            counter["calls"] += 1
            return original(*a, **k)

        layer._map = counted
        t_solve, (_, z_ours) = timed(lambda: layer._iterate(layer.prox, inj, W, alpha_t, V, clamp, mask, None),
                                     args.repeat)
        iterations = counter["calls"] // args.repeat
        layer._map = original
        t_ref, (z_ref, ref_iterations) = timed(
            lambda: reference_solve(layer, inj, W, alpha, V, clamp, mask, args.tol, layer.max_iter), 1)
    print(f"\nfixed-point solve, Peaceman-Rachford to tol {args.tol} (max |difference| %.1e)"
          % (z_ours - z_ref).abs().max().item())
    print(f"  {'reference (synced prox, global check)':38s} {ref_iterations:4d} iterations {t_ref * 1e3:9.1f} ms"
          f"   ratio {t_ref / t_solve:6.1f}x")
    print(f"  {'specc (per-row stop, check every 8)':38s} {iterations:4d} iterations {t_solve * 1e3:9.1f} ms"
          "   ratio    1.0x")


if __name__ == "__main__":
    main()
