"""specc's benchmark suite: one run, every spec, every way of running it, side by side.

For each model in specs/ it times a forward pass of
  - eager:   a hand-written PyTorch module (for the specs that have one in bench/handwritten.py),
  - torch:   specc's torch target (plain eager PyTorch),
  - compile: torch.compile of specc's torch target,
  - triton:  specc's triton target (GPU only: on CPU its kernels would run in the interpreter),
  - ort:     onnxruntime on specc's ONNX file (CPU execution provider),
and prints each as a ratio to specc's torch target (>1 = faster). Then it compares
compile times (specc compile vs torch.compile's warm-up) and shows how specc's
compile time grows with the number of layers (10 -> 10,000).

    python bench/run.py [--device cpu|cuda] [--repeat 20] [--batch 32] [--only mlp,lenet]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from specc.codegen import backends  # noqa: E402
from specc.codegen.torch_backend import example_inputs, load_module  # noqa: E402
from specc.compiler import compilable, compile_graph, load  # noqa: E402

SIZES = {"B": 32, "T": 64, "H": 8}


def inputs_for(graph, device: str) -> list[torch.Tensor]:
    return [x.to(device) for x in example_inputs(graph, SIZES, 4)]


def timeit(fn, repeat: int, device: str) -> float:
    """Median seconds per call after warm-up (which includes the triton target's autotuning: the
    matmul-epilogue kernels time their configs on the first call for each shape)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def python_module(graph, target: str, tag: str):
    source = backends()[target].emit(graph).data.decode()
    return load_module(source, f"bench_{target}_{tag}").Model()


def bench_spec(spec: Path, model: str, args) -> dict[str, object]:
    graph = compile_graph(spec, model)
    device = args.device
    torch.manual_seed(0)
    reference = python_module(graph, "torch", model).to(device).eval()
    xs = inputs_for(graph, device)
    row: dict[str, object] = {"model": model}
    with torch.no_grad():
        base = timeit(lambda: reference(*xs), args.repeat, device)
        row["torch ms"] = base * 1e3

        import handwritten

        hand = handwritten.MODELS.get(model)
        if hand is not None:
            eager = hand().to(device).eval()
            eager.load_state_dict(reference.state_dict())
            row["eager"] = base / timeit(lambda: eager(*xs), args.repeat, device)

        start = time.perf_counter()
        compiled = torch.compile(reference)
        compiled(*xs)
        row["compile warm-up s"] = time.perf_counter() - start
        row["compile"] = base / timeit(lambda: compiled(*xs), args.repeat, device)

        if device == "cuda":
            triton_model = python_module(graph, "triton", model).to(device).eval()
            triton_model.load_state_dict(reference.state_dict())
            row["triton"] = base / timeit(lambda: triton_model(*xs), args.repeat, device)

        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "w.pt"
            torch.save({k: v.cpu() for k, v in reference.state_dict().items()}, weights)
            start = time.perf_counter()
            onnx_bytes = backends()["onnx"].emit(graph, weights=weights).data
        import onnxruntime as ort

        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        feeds = {name: x.cpu().numpy() for name, x in zip(graph.inputs, xs)}
        cpu_base = base if device == "cpu" else timeit(lambda: reference.cpu()(*[x.cpu() for x in xs]), args.repeat,
                                                       "cpu")
        row["ort (cpu)"] = cpu_base / timeit(lambda: session.run(None, feeds), args.repeat, "cpu")

    start = time.perf_counter()
    for target in ("torch", "triton"):
        backends()[target].emit(compile_graph(spec, model))
    row["specc compile s"] = (time.perf_counter() - start) / 2
    return row


def scaling(sizes: list[int]) -> list[tuple[int, float]]:
    """specc compile time (parse, lower, passes, torch codegen) for a chain of `layers` layers."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "chain.nnspec"
        spec.write_text("model chain(width: int = 64, depth: int = 5) {\n    input x: f32[B, width]\n"
                        "    output y = repeat depth { relu(linear(_, width)) } (x)\n}\n")
        for layers in sizes:
            start = time.perf_counter()
            graph = compile_graph(spec, params={"depth": layers // 2})
            backends()["torch"].emit(graph)
            out.append((layers, time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated model names")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    console.print(f"specc benchmark on {device_name} (torch {torch.__version__}); ratios are speed-ups over "
                  "specc's torch target (>1 is faster)")
    wanted = {m for m in args.only.split(",") if m}
    rows = []
    for spec in sorted((ROOT / "specs").glob("*.nnspec")):
        for target in compilable(load(spec)):
            if wanted and target.name not in wanted:
                continue
            rows.append(bench_spec(spec, target.name, args))
            console.print(f"  measured {target.name}", style="dim")

    columns = ["model", "torch ms", "eager", "compile", "triton", "ort (cpu)", "specc compile s", "compile warm-up s"]
    table = Table(title="forward pass")
    for c in columns:
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in columns])
    geo = {}
    for c in ("eager", "compile", "triton", "ort (cpu)"):
        values = [r[c] for r in rows if c in r]
        if values:
            geo[c] = statistics.geometric_mean(values)
    table.add_section()
    table.add_row("geometric mean", "", *[_fmt(geo.get(c)) for c in columns[2:6]], "", "")
    console.print(table)
    if "triton" in geo and "compile" in geo:
        console.print(f"triton vs torch.compile (geometric mean): {geo['triton'] / geo['compile']:.2f}x")

    scale = Table(title="specc compile time vs spec size")
    for c in ("layers", "seconds", "µs per layer"):
        scale.add_column(c, justify="right")
    for layers, seconds in scaling([10, 100, 1000, 10000]):
        scale.add_row(f"{layers:,}", f"{seconds:.3f}", f"{seconds / layers * 1e6:.0f}")
    console.print(scale)


def _fmt(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"
    return str(v)


if __name__ == "__main__":
    main()
