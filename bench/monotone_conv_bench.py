"""The convolutional MDBM's FFT solve against a dense one, at the size examples/train_mdbm_conv.py trains
(specs/mdbm_conv_mnist.nnspec at side=28: 3,930 units).

    python bench/monotone_conv_bench.py [--side 28] [--batch 64] [--threads 1]

Times, on the CPU, (1) building the operators, FFT (probe A, one Hermitian Cholesky per frequency, the Schur
complement of the dense part) against dense (materialize W and factor I + alpha (I - W), n^3 / 3), (2) applying
V to a batch, FFT against a product with the dense inverse, and (3) one Peaceman-Rachford forward solve of the
layer (prox included); prints the ratios and the memory each form holds. The dense form is built from the
layer's own W, so both solve the same system (their results are compared).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mdbm_conv_mnist.nnspec"


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    out = fn()
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=28)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graph = compile_graph(SPEC, params={"side": args.side})
    module = load_module(backends()["torch"].emit(graph).data.decode(), "mdbm_conv_bench")
    torch.manual_seed(0)
    model = module.Model()
    layer = model.q
    n = layer.n
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(args.batch, n, generator=gen)

    with torch.no_grad():
        t_build_fft, ops = timed(layer.operators)
        eye = torch.eye(n)

        def dense_build():
            W = ops.times_w(eye).t()
            return torch.cholesky_inverse(torch.linalg.cholesky(eye + ops.alpha * (eye - W)))

        t_build_dense, V = timed(dense_build, 1)
        t_apply_fft, fast = timed(lambda: ops.solve(r), 10)
        t_apply_dense, slow = timed(lambda: r @ V.t(), 10)
        error = (fast - slow).abs().max().item()
        pixels = layer.n_in
        x = torch.nn.functional.one_hot(torch.randint(0, 2, (args.batch, pixels // 2), generator=gen), 2)
        x = x.reshape(args.batch, -1).float()
        mask = torch.rand(args.batch, pixels // 2, generator=gen).repeat_interleave(2, 1) < 0.5
        t_solve, _ = timed(lambda: layer(x, mask), 1)
    symbol = sum(t.numel() * t.element_size() for t in (ops.w_cc, ops.v_cc, ops.q, ops.m_cl, ops.s_inv)
                 if t is not None)
    print(f"mdbm_conv at {args.side}x{args.side}: {n} units, batch {args.batch}, {args.threads} thread(s)")
    print(f"build operators   FFT {t_build_fft * 1e3:8.1f} ms   dense {t_build_dense * 1e3:9.1f} ms   "
          f"ratio {t_build_dense / t_build_fft:6.1f}x")
    print(f"apply V (batch)   FFT {t_apply_fft * 1e3:8.2f} ms   dense {t_apply_dense * 1e3:9.2f} ms   "
          f"ratio {t_apply_dense / t_apply_fft:6.2f}x   max |difference| {error:.1e}")
    print(f"memory            FFT {symbol / 2**20:8.2f} MiB  dense {V.numel() * V.element_size() / 2**20:9.1f} MiB")
    print(f"forward solve of the layer (prox included, tol {layer.tol:g}): {t_solve:.2f} s")


if __name__ == "__main__":
    main()
