"""Compression numbers: size of the example compressed specs, quantizer SQNR, and fused-kernel timings.

    python bench/compression_bench.py            # sizes and SQNR (CPU, a few seconds)
    python bench/compression_bench.py --kernels  # also time the Triton kernels against torch (needs CUDA)

Sizes are what `specc summary` reports (weight bytes: parameters and buffers at
their dtype); SQNR is measured on a 1024x4096 standard Gaussian weight.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph
from specc.summary import summarize, totals
from specc.transforms._layers import sqnr_db
from specc.transforms.codebook import kmeans
from specc.transforms.quantize import dequantize_weight, quantize_weight

SPECS = Path(__file__).resolve().parent.parent / "specs"
EXAMPLES = [("mlp.nnspec", None, "mlp_int4.nnspec", None), ("mlp.nnspec", None, "mlp_sparse.nnspec", "mlp_sparse"),
            ("moe_block.nnspec", None, "moe_merge.nnspec", "moe_block_2"),
            ("moe_block.nnspec", None, "moe_merge.nnspec", "moe_block_2_lowrank")]


def sizes() -> None:
    print(f"{'model':<24}{'params':>12}{'bytes':>12}{'dense bytes':>14}{'ratio':>8}")
    for base_spec, base, spec, model in EXAMPLES:
        dense = totals(summarize(compile_graph(SPECS / base_spec, base)))
        graph = compile_graph(SPECS / spec, model)
        small = totals(summarize(graph))
        print(f"{graph.name:<24}{small[0]:>12,}{small[1]:>12,}{dense[1]:>14,}{dense[1] / small[1]:>7.2f}x")


def sqnr() -> None:
    w = torch.randn(1024, 4096, generator=torch.Generator().manual_seed(0))
    print(f"\n{'quantizer':<28}{'SQNR dB':>8}")
    for bits, group, symmetric in [(8, None, True), (8, 128, True), (8, None, False), (4, None, True),
                                   (4, 128, True), (4, 128, False), (4, 32, True)]:
        state = quantize_weight(w, bits, group, symmetric)
        name = f"int{bits} {'per-channel' if group is None else f'g{group}'} {'sym' if symmetric else 'asym'}"
        print(f"{name:<28}{sqnr_db(w, dequantize_weight(state, bits, group, symmetric, w.shape[1])):>8.2f}")
    sample = w[:64]
    for k in (4, 16, 64, 256):
        centroids, codes = kmeans(sample.reshape(-1, 1), k)
        print(f"{f'codebook k={k} dim=1':<28}{sqnr_db(sample, centroids[codes].view_as(sample)):>8.2f}")


def kernels() -> None:
    """Fused Triton kernels vs the torch module (dequantize / two matmuls) on a 4096x4096 layer, batch 16."""
    spec = Path("/tmp/specc_kernel_bench.nnspec")
    for expr in ("quant_linear(x, 4096, 4, group=128)", "quant_linear(x, 4096, 8)", "lowrank_linear(x, 4096, 64)"):
        spec.write_text(f"model k() {{\n    input x: f32[16, 4096]\n    output y = {expr}\n}}\n")
        graph = compile_graph(spec)
        times = {}
        for target in ("torch", "triton"):
            model = load_module(backends()[target].emit(graph).data.decode(), f"bench_{target}").Model().cuda().eval()
            x = torch.randn(16, 4096, device="cuda")
            with torch.no_grad():
                for _ in range(5):
                    model(x)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(50):
                    model(x)
                torch.cuda.synchronize()
            times[target] = (time.perf_counter() - start) / 50 * 1e6
        print(f"{expr:<40} torch {times['torch']:8.1f} us   triton {times['triton']:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", action="store_true")
    args = parser.parse_args()
    sizes()
    sqnr()
    if args.kernels:
        kernels()


if __name__ == "__main__":
    main()
