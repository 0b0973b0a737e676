"""Compression numbers: size of the example compressed specs, quantizer SQNR, run time, fused-kernel timings.

    python bench/compression_bench.py            # sizes and SQNR (CPU, a few seconds)
    python bench/compression_bench.py --runtime  # also each compressed layer vs dense on CPU (minutes)
    python bench/compression_bench.py --runtime --size 1024 --layers int4,int8   # a quick look
    python bench/compression_bench.py --kernels  # also time the Triton kernels against torch (needs CUDA)

Sizes are what `specc summary` reports (weight bytes: parameters and buffers at
their dtype); SQNR is measured on a 1024x4096 standard Gaussian weight.

`--runtime` times one SIZE x SIZE layer (default 4096) per compression, dense fp32 included,
on the torch target and on onnxruntime (the onnx target), batch 1 and 64, one thread. Every
variant runs once per round, rounds interleaved, so a load change on a shared machine hits all
alike; the table gives min and median per call and speed = dense median / median (above 1:
faster than dense). `peak` is the resident memory (weights + the forward's peak), measured in a
fresh process per variant (Linux: the high-water mark is reset through /proc/self/clear_refs),
over dense's, and `fwd` what the forward alone adds over the built layer (its transient memory: a
dense layer's output; a compressed layer's must stay about that, as it never holds a whole float W).
The subprocess allocates large blocks with mmap (MALLOC_MMAP_THRESHOLD_), so memory freed while the
layer is built is returned and not counted. The torch target's packed aten kernels are timed as reference rows (`aten int8pack`,
`aten int4pack`), since they are what torch offers for weight-only int8/int4 on CPU. Each layer the onnx
target runs with `com.microsoft.MatMulNBits` also gets an `onnx bare` row: that one node in a model built by
hand with onnx.helper, same weights and attributes, so its speed is onnxruntime's kernel's own; the bar line
prints it next to specc's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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


# ------------------------------------------------------------------ run time on CPU
# name -> the compress stage applied to `y = linear(x, SIZE)` (None: the dense layer itself)
VARIANTS = {
    "dense": None,
    "int8": "quantize(int8)",
    "int8 acc4": "quantize(int8, accuracy_level=4)",
    "int4 g128": "quantize(int4, group=128)",
    "int4 g128 acc4": "quantize(int4, group=128, accuracy_level=4)",
    "int4 g128 std": "quantize(int4, group=128, onnx=\"standard\")",
    "2:4": "sparsity(pattern=2:4)",
    "2:4 learnable": "sparsity(pattern=2:4, learnable=true)",
    "prune 0.5": "prune(0.5)",
    "codebook k16": "codebook(k=16, dim=1)",
    "lowrank s/16": "lowrank(rank={rank})",
    "tt bond 8": "tensor_train(bond=8)",
}
ONNX_ONLY = {"int8 acc4", "int4 g128 acc4", "int4 g128 std"}  # differ from their siblings on onnx only
MATMULNBITS = {"int4 g128", "int4 g128 acc4", "int8 acc4"}  # run by one com.microsoft.MatMulNBits on onnx


def _graph(variant: str, size: int):
    spec = Path(tempfile.mkdtemp()) / "layer.nnspec"
    text = f"model dense() {{\n    input x: f32[B, {size}]\n    output y = linear(x, {size})\n}}\n"
    stage = VARIANTS[variant]
    if stage is not None:
        text += f"compress small = dense {{\n    {stage.format(rank=size // 16)} on linear\n}}\n"
    spec.write_text(text)
    return compile_graph(spec, "dense" if stage is None else "small")


def _runner(variant: str, target: str, size: int):
    """A callable running one forward on an input of any batch, with its weights already built."""
    import numpy as np

    torch.manual_seed(0)
    graph = _graph(variant, size)
    if target == "torch":
        model = load_module(backends()["torch"].emit(graph).data.decode(), "bench_layer").Model().eval()

        def run(x):
            with torch.no_grad():
                return model(x)
        return run
    if target.startswith("aten"):  # torch's packed weight-only kernels, on the same codes as `int8`/`int4 g128`
        layer = next(m for m in load_module(backends()["torch"].emit(graph).data.decode(), "bench_layer")
                     .Model().modules() if type(m).__name__ == "_QuantLinear")
        if target == "aten int8pack":
            q, s = layer.qweight, layer.scale[:, 0].contiguous()
            return lambda x: torch.ops.aten._weight_int8pack_mm(x, q, s) + layer.bias
        codes = torch.stack((layer.qweight & 15, layer.qweight >> 4), dim=-1).flatten(-2).to(torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        scale = layer.scale  # symmetric: w = (q - 8) * scale, tinygemm's zero term is 0
        scale_zero = torch.stack((scale, torch.zeros_like(scale)), dim=-1).transpose(0, 1).contiguous()
        return lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, layer.group, scale_zero) + layer.bias
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    data = backends()["onnx"].emit(graph, seed=0).data
    if target == "onnx bare":
        data = bare_matmulnbits(data)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.numpy()})[0]


def bare_matmulnbits(data: bytes) -> bytes:
    """A model built by hand with onnx.helper around the one MatMulNBits of specc's model `data`, on the same
    weights and attributes: input x -> MatMulNBits(x, codes, scales[, zeros][, bias]) -> y, nothing else.

    Timed next to specc's model, it tells specc's graph (node layout, bias, optimization) from onnxruntime's
    kernel: when the bare model is as slow, the kernel is what is slow on this CPU."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(data)
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n = attrs["K"], attrs["N"]
    names = {"": ""} | {name: f"t{i}" for i, name in enumerate(node.input[1:]) if name}
    tensors = {t.name: t for t in model.graph.initializer}
    init = []
    for name in node.input[1:]:
        if name:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(tensors[name])
            tensor.name = names[name]
            init.append(tensor)
    bare = helper.make_node("MatMulNBits", ["x"] + [names[i] for i in node.input[1:]], ["y"], domain="com.microsoft",
                            **attrs)
    graph = helper.make_graph([bare], "bare", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", n])], init)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _cases(size: int, layers: list[str]) -> list[tuple[str, str]]:
    cases = []
    for variant in layers:
        targets = ["onnx"] if variant in ONNX_ONLY else ["torch", "onnx"]
        if variant == "int8":
            targets.insert(1, "aten int8pack")
        if variant == "int4 g128" and size % 128 == 0:
            targets.insert(1, "aten int4pack")
        if variant in MATMULNBITS:
            targets.append("onnx bare")  # onnxruntime's kernel alone, in a graph built by hand
        cases += [(variant, t) for t in targets]
    return cases


def peak(variant: str, target: str, size: int, batch: int) -> tuple[int, int]:
    """KiB of resident memory (building the layer and running one forward, at its peak; the forward
    alone, over the built layer) in a fresh process."""
    import os

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import compression_bench as b; "
            f"print(*b._peak_here({variant!r}, {target!r}, {size}, {batch}))")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # freed blocks leave the resident set at once
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    whole, forward = out.split()[-2:]
    return int(whole), int(forward)


def _peak_here(variant: str, target: str, size: int, batch: int) -> tuple[int, int]:
    def status(field: str) -> int:
        return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])

    torch.set_num_threads(1)
    x = torch.randn(batch, size)
    _graph(variant, size)  # compile once first: the compiler's own memory is not the layer's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = status("VmRSS:")
    run = _runner(variant, target, size)
    import gc
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # building the weights peaks too (conversion, export)
        f.write("5")
    built = status("VmRSS:")
    run(x)
    return status("VmHWM:") - start, status("VmHWM:") - built  # weights built plus the forward's peak; forward


def runtime(size: int, batches: list[int], rounds: int, layers: list[str], memory: bool) -> None:
    torch.set_num_threads(1)
    cases = _cases(size, layers)
    runners = {case: _runner(*case, size) for case in cases}
    print(f"\nrun time, {size}x{size} layer, 1 thread, {rounds} interleaved rounds "
          f"(speed = dense median / median, same target; aten rows vs torch dense)")
    print(f"{'layer':<16}{'target':<16}{'batch':>6}{'min ms':>10}{'median ms':>11}{'speed':>8}"
          + (f"{'peak MiB':>10}{'vs dense':>10}{'fwd MiB':>9}" if memory else ""))
    results = {}
    for batch in batches:
        x = torch.randn(batch, size)
        times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        peaks: dict[tuple[str, str], tuple[int, int]] = {}
        for run in runners.values():
            run(x)  # warm up (onnxruntime prepacks, allocators settle)
        for _ in range(rounds):
            for case, run in runners.items():
                calls = max(1, min(20, int(0.05 / max(times[case][-1:] or [0.05]))))
                start = time.perf_counter()
                for _ in range(calls):
                    run(x)
                times[case].append((time.perf_counter() - start) / calls)
        for case in cases:
            variant, target = case
            base = ("dense", "onnx" if target.startswith("onnx") else "torch")
            median = statistics.median(times[case])
            speed = statistics.median(times[base]) / median
            line = f"{variant:<16}{target:<16}{batch:>6}{min(times[case]) * 1e3:>10.2f}{median * 1e3:>11.2f}{speed:>7.2f}x"
            results[(variant, target, batch)] = speed
            if memory:
                kib, forward = peaks[case] = peak(variant, target, size, batch)
                dense_kib = (peaks.get(base) or peak("dense", base[1], size, batch))[0]
                line += f"{kib / 1024:>10.1f}{kib / dense_kib:>9.2f}x{forward / 1024:>9.1f}"
            print(line, flush=True)
    bar(results, batches)


BAR = [("int4 g128", "onnx", 1, 2.0), ("int4 g128", "onnx", 64, 1.0), ("int8", "onnx", 1, 1.0),
       ("int4 g128", "torch", 1, 0.3), ("int8", "torch", 1, 0.3)]


def bar(results: dict, batches: list[int]) -> None:
    """The issue's bar (issue 15), for the variants and batches that ran. An onnx MatMulNBits row also gives
    the bare kernel's speed (`onnx bare`), so a miss shows whether specc's graph or the kernel is slow."""
    checks = [(v, t, b, want) for v, t, b, want in BAR if (v, t, b) in results]
    if checks:
        def bare(v: str, t: str, b: int) -> str:
            speed = results.get((v, "onnx bare", b)) if t == "onnx" else None
            return f" (bare MatMulNBits {speed:.2f}x)" if speed is not None else ""

        print("\nbar: " + "; ".join(f"{v} {t} batch {b} {results[(v, t, b)]:.2f}x{bare(v, t, b)} "
                                   f"{'>=' if results[(v, t, b)] >= want else '<'} {want}x "
                                   f"{'ok' if results[(v, t, b)] >= want else 'MISSED'}" for v, t, b, want in checks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", action="store_true")
    parser.add_argument("--runtime", action="store_true", help="time each compressed layer against dense on CPU")
    parser.add_argument("--size", type=int, default=4096, help="--runtime: the layer is SIZE x SIZE")
    parser.add_argument("--batches", default="1,64", help="--runtime: comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=7, help="--runtime: interleaved rounds")
    parser.add_argument("--layers", default=",".join(VARIANTS),
                        help=f"--runtime: comma-separated, dense always included (of: {', '.join(VARIANTS)})")
    parser.add_argument("--no-memory", action="store_true", help="--runtime: skip the peak memory column")
    args = parser.parse_args()
    if args.runtime:
        layers = ["dense"] + [v for v in args.layers.split(",") if v != "dense"]
        unknown = [v for v in layers if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown --layers {', '.join(unknown)} (of: {', '.join(VARIANTS)})")
        runtime(args.size, [int(b) for b in args.batches.split(",")], args.rounds, layers, not args.no_memory)
        return
    sizes()
    sqnr()
    if args.kernels:
        kernels()


if __name__ == "__main__":
    main()
