"""Forward-backward against Peaceman-Rachford on the convolutional MDBM (specs/mdbm_conv_mnist.nnspec), same weights.

    python bench/mdbm_conv_fb_bench.py [--side 28] [--batch 16] [--threads 1] [--tol 1e-6] [--repeat 3] [--scale 1]
                                        [--dtype float64]

Compiles the spec twice, once with each solver (the spec's alpha; forward-backward replaces it by 2/(lo + hi) when
its bound on the spectrum of I - W says it does not contract), loads one state dict into both, and on a batch of
random binary images with random masks (each pixel observed with probability 1/2) prints per solver: the step alpha,
the solver iterations until every row is below tol, the wall time of a forward solve (operators included: PR's
Cholesky per frequency and Schur complement, FB's eigenvalues per frequency), the time per iteration, and the
ratios; then the largest difference between the two fixed points. Default weights: the torch init (seed 0);
--weights takes a state dict saved from the torch module (e.g. a trained one); --scale multiplies the coupling
kernels (A*), which widens the spectrum of I - W as training does (the init's W is nearly 0, I - W nearly I).
The default dtype is float64, so tol is the stopping threshold: in float32 the layers stop at their 32-ulp floor
instead (32 eps = 3.8e-6 for PR, 32 eps / alpha for FB, whose changes are measured per unit of alpha).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mdbm_conv_mnist.nnspec"


def _model(solver: str, side: int, tol: float, directory: Path):
    """The spec's model with `solver` (the spec's alpha) at tol and a max_iter high enough to converge."""
    text = re.sub(r"solver=peaceman_rachford\(alpha=([0-9.]+), tol=[^,]+, max_iter=\d+\)",
                  lambda m: f"solver={solver}(alpha={m.group(1)}, tol={tol}, max_iter=20000, strict=true)",
                  SPEC.read_text())
    assert solver in text, "the spec's solver line changed; update the pattern"
    path = directory / f"{solver}.nnspec"
    path.write_text(text)
    graph = compile_graph(path, params={"side": side})
    return load_module(backends()["torch"].emit(graph).data.decode(), f"mdbm_conv_fb_bench_{solver}").Model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        models = {solver: _model(solver, args.side, args.tol, Path(tmp))
                  for solver in ("peaceman_rachford", "forward_backward")}
    state = torch.load(args.weights) if args.weights else models["peaceman_rachford"].state_dict()
    state = {k: v * args.scale if k.split(".")[-1].startswith("A") else v for k, v in state.items()}
    dtype = getattr(torch, args.dtype)
    for model in models.values():
        model.load_state_dict(state)
        model.eval().to(dtype)
    layer = models["peaceman_rachford"].q
    gen = torch.Generator().manual_seed(1)
    pixels = layer.n_in // 2
    x = torch.nn.functional.one_hot(torch.randint(0, 2, (args.batch, pixels), generator=gen), 2)
    x = x.reshape(args.batch, -1).to(dtype)
    observed = (torch.rand(args.batch, pixels, generator=gen) < 0.5).repeat_interleave(2, 1)
    print(f"mdbm_conv at {args.side}x{args.side}: {layer.n} units, batch {args.batch}, {args.threads} thread(s), "
          f"{args.dtype}, tol {args.tol:g}, weights {args.weights or 'torch init (seed 0)'}, kernels x {args.scale:g}")
    results = {}
    for solver, model in models.items():
        fp = model.q
        calls = []
        step = fp._map
        fp._map = lambda *a, step=step: calls.append(1) or step(*a)
        with torch.no_grad():
            alpha = fp.operators().alpha.item()
            model(x, observed)  # warm-up
            calls.clear()
            start = time.perf_counter()
            for _ in range(args.repeat):
                out = model(x, observed)
            seconds = (time.perf_counter() - start) / args.repeat
        del fp._map
        iterations = len(calls) // args.repeat
        results[solver] = (iterations, seconds, out)
        print(f"{solver:18s} alpha {alpha:.3f}  iterations {iterations:5d}  forward {seconds * 1e3:8.1f} ms  "
              f"per iteration {seconds / iterations * 1e3:6.2f} ms")
    (it_pr, t_pr, out_pr), (it_fb, t_fb, out_fb) = results["peaceman_rachford"], results["forward_backward"]
    exact = models["peaceman_rachford"].double()  # the fixed point in float64 at tol 1e-12: how close each got
    exact.q.tol = 1e-12
    with torch.no_grad():
        reference = exact(x.double(), observed)
    errors = {solver: max((a.double() - b).abs().max().item() for a, b in zip(out, reference))
              for solver, (_, _, out) in results.items()}
    print(f"forward_backward / peaceman_rachford: iterations {it_fb / it_pr:.2f}x, time {t_fb / t_pr:.2f}x, "
          f"time per iteration {(t_fb / it_fb) / (t_pr / it_pr):.2f}x; max |error| against the float64 fixed point: "
          f"PR {errors['peaceman_rachford']:.1e}, FB {errors['forward_backward']:.1e}")


if __name__ == "__main__":
    main()
