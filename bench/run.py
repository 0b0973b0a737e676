"""specc's benchmark suite: one run, every spec, every way of running it, side by side.

For each model in specs/ (the zoo specs at the small configs of tests/targets.py SMALL, unless
--config published) it times a forward pass of
  - eager:   a hand-written PyTorch module (for the specs that have one in bench/handwritten.py),
  - torch:   specc's torch target (plain eager PyTorch),
  - compile: torch.compile of specc's torch target,
  - triton:  specc's triton target (on CPU its torch fallback: the same ops as the torch target),
  - ort:     onnxruntime on specc's ONNX file (CPU execution provider),
and prints each as a ratio to specc's torch target (>1 = faster). Then it compares
compile times (specc compile vs torch.compile's warm-up) and shows how specc's
compile time grows with the number of layers (10 -> 10,000).

Timing is in rounds, interleaved across a spec's configurations (A B C A B C ...; see
`interleaved_schedule`): each round times `--repeat` calls of one configuration, and every
configuration gets `--rounds` rounds spread over the same stretch of time, so load that comes
and goes on the machine lands on all of them alike instead of on whichever ran during it.
The table shows the median and the min over rounds; ratios are of medians.

    python bench/run.py [--device cpu|cuda] [--repeat 20] [--rounds 7] [--batch 32]
                        [--only mlp,lenet] [--threads 1] [--targets compile,triton] [--config small|published] [--no-scaling]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from specc.codegen import backends  # noqa: E402
from specc.codegen.torch_backend import example_inputs, load_module  # noqa: E402
from specc.compiler import compilable, compile_graph, load  # noqa: E402

SIZES = {"B": 32, "T": 64, "H": 8}
TARGETS = ("eager", "compile", "triton", "ort")  # what --targets chooses from; torch, the baseline, always runs
_GENERATED = tempfile.TemporaryDirectory(prefix="specc_bench_")  # the triton modules' files (see python_module)


def inputs_for(graph, device: str, params: dict | None = None) -> list[torch.Tensor]:
    """Example inputs at SIZES; a sequence no longer than the positions a config has (GPT-2's n_positions)."""
    sizes = dict(SIZES)
    positions = [v for k, v in (params or {}).items() if "position" in k]
    if positions:
        sizes["T"] = min(sizes["T"], *positions)
    return [x.to(device) for x in example_inputs(graph, sizes, 4)]


def interleaved_schedule(names: list[str], rounds: int) -> list[tuple[int, str]]:
    """The order in which `measure` runs its rounds, as (round, configuration): every configuration
    once per round, in the given order, round after round (A B C A B C ...), so no configuration's
    rounds are bunched together in time."""
    return [(r, name) for r in range(rounds) for name in names]


def measure(configs: dict[str, Callable[[], object]], rounds: int, repeat: int, device: str,
            warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per call of each configuration, one sample per round (the mean of `repeat` calls),
    taken in `interleaved_schedule` order after `warmup` calls of each (the warm-up includes the
    triton target's autotuning: the matmul-epilogue kernels time their configs on the first call
    for each shape)."""
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for _, name in interleaved_schedule(list(configs), rounds):
        fn = configs[name]
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples[name].append((time.perf_counter() - start) / repeat)
    return samples


def python_module(graph, target: str, tag: str):
    """The generated module, imported from a file: outside Triton's interpreter @triton.jit reads its
    function's source, so the triton target's module cannot be exec'd from a string."""
    source = backends()[target].emit(graph).data.decode()
    if target == "torch":
        return load_module(source, f"bench_{target}_{tag}").Model()
    name = f"bench_{target}_{tag}"
    path = Path(_GENERATED.name) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.Model()


def bench_spec(spec: Path, model: str, args) -> dict[str, object]:
    from targets import SMALL

    params = SMALL.get(spec.stem) if args.config == "small" else None
    graph = compile_graph(spec, model, params=params)
    device = args.device
    wanted = set(args.targets.split(","))
    torch.manual_seed(0)
    reference = python_module(graph, "torch", model).to(device).eval()
    xs = inputs_for(graph, device, params)
    row: dict[str, object] = {"model": model}
    configs: dict[str, Callable[[], object]] = {"torch": lambda: reference(*xs)}
    with torch.no_grad():
        import handwritten

        hand = handwritten.MODELS.get(model)
        if hand is not None and "eager" in wanted:
            eager = hand().to(device).eval()
            eager.load_state_dict(reference.state_dict())
            configs["eager"] = lambda: eager(*xs)

        if "compile" in wanted:
            compiled = torch.compile(reference)
            start = time.perf_counter()
            compiled(*xs)
            row["compile warm-up s"] = time.perf_counter() - start
            configs["compile"] = lambda: compiled(*xs)

        if "triton" in wanted:
            triton_model = python_module(graph, "triton", model).to(device).eval()
            triton_model.load_state_dict(reference.state_dict())
            configs["triton"] = lambda: triton_model(*xs)

        if "ort" in wanted:
            with tempfile.TemporaryDirectory() as tmp:
                weights = Path(tmp) / "w.pt"
                torch.save({k: v.cpu() for k, v in reference.state_dict().items()}, weights)
                onnx_bytes = backends()["onnx"].emit(graph, weights=weights).data
            import onnxruntime as ort

            session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            feeds = {name: x.cpu().numpy() for name, x in zip(graph.inputs, xs)}
            configs["ort (cpu)"] = lambda: session.run(None, feeds)
            if device != "cpu":  # onnxruntime's baseline: the torch target on the CPU
                cpu_reference, cpu_xs = copy.deepcopy(reference).cpu(), [x.cpu() for x in xs]
                configs["torch (cpu)"] = lambda: cpu_reference(*cpu_xs)

        samples = measure(configs, args.rounds, args.repeat, device)
    medians = {name: statistics.median(s) for name, s in samples.items()}
    row["times"] = {name: (medians[name], min(s)) for name, s in samples.items()}
    row["torch ms"] = medians["torch"] * 1e3
    for name in configs:
        if name not in ("torch", "torch (cpu)"):
            base = medians["torch (cpu)" if name == "ort (cpu)" and device != "cpu" else "torch"]
            row[name] = base / medians[name]

    start = time.perf_counter()
    for target in ("torch", "triton"):
        backends()[target].emit(compile_graph(spec, model, params=params))
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
    parser.add_argument("--repeat", type=int, default=20, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds per configuration (min and median are over these)")
    parser.add_argument("--batch", type=int, default=SIZES["B"], help="the batch dim B of the inputs")
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 is steadiest on a shared machine")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, from {','.join(TARGETS)} (specc's torch target always runs)")
    parser.add_argument("--config", choices=("small", "published"), default="small",
                        help="zoo specs at tests/targets.py's SMALL configs, or at their published sizes")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True,
                        help="time specc's compile on 10 to 10,000 layers")
    args = parser.parse_args()
    if args.rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    unknown = set(args.targets.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown --targets {','.join(sorted(unknown))}; choose from {','.join(TARGETS)}")
    SIZES["B"] = args.batch
    if args.threads:
        torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    console.print(f"specc benchmark on {device_name} (torch {torch.__version__}, {torch.get_num_threads()} threads); "
                  f"{args.rounds} interleaved rounds of {args.repeat} calls per configuration; ratios are speed-ups "
                  "over specc's torch target (>1 is faster), from medians over rounds")
    wanted = {m for m in args.only.split(",") if m}
    rows = []
    for spec in sorted((ROOT / "specs").glob("*.nnspec")):
        for target in compilable(load(spec)):
            if wanted and target.name not in wanted:
                continue
            try:
                rows.append(bench_spec(spec, target.name, args))
            except Exception:  # one broken spec should not cost the rest of the run
                console.print(f"  {target.name} failed:\n{traceback.format_exc(limit=-3)}", style="red")
                continue
            console.print(f"  measured {target.name}", style="dim")

    ratios = ["eager", "compile", "triton", "ort (cpu)"]
    columns = ["model", "torch ms", *ratios, "specc compile s", "compile warm-up s"]
    table = Table(title="forward pass (ratios of medians)")
    for c in columns:
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in columns])
    geo = {}
    for c in ratios:
        values = [r[c] for r in rows if c in r]
        if values:
            geo[c] = statistics.geometric_mean(values)
    table.add_section()
    table.add_row("geometric mean", "", *[_fmt(geo.get(c)) for c in ratios], "", "")
    console.print(table)
    if "triton" in geo and "compile" in geo:
        console.print(f"triton vs torch.compile (geometric mean): {geo['triton'] / geo['compile']:.2f}x")

    names = [n for n in ("torch", *ratios, "torch (cpu)") if any(n in r["times"] for r in rows)]
    times = Table(title="ms per call: median / min over rounds")
    for c in ("model", *names):
        times.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        times.add_row(r["model"], *[f"{r['times'][n][0] * 1e3:.3f} / {r['times'][n][1] * 1e3:.3f}"
                                    if n in r["times"] else "—" for n in names])
    console.print(times)

    if args.scaling:
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
