"""Scale-out of generated modules (specc/parallel.py, backends/torch/parallel.j2), on CPU with gloo.

The generated `parallelize(model, mesh)` shards tiny_gpt and LLaMA with FSDP2, with tensor parallelism
from the spec's `shard` plan, and with both on a 2-D mesh; trained three SGD steps from the same weights,
every mode gives the loss, gradients and parameters of the same module in one process to 1e-5. A sharded
`torch.distributed.checkpoint` loads into a single-process module. Meta-device init (`to_empty` then
`init_weights`) reproduces the constructor's values exactly. Plans that cannot work are located errors.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

import distributed_worker
from specc import parallel
from specc.compiler import compile_graph
from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.diagnostics import SpeccError
from targets import SMALL

ROOT = Path(__file__).resolve().parent.parent
PARALLEL = ROOT / "specs"
CONFIGS = {"llama": SMALL["llama"], "tiny_gpt": {"vocab": 64, "context": 8, "width": 32, "heads": 4, "depth": 2}}
TOLERANCE = 1e-5


def generate(spec: Path, params: dict, out: Path) -> Path:
    graph = compile_graph(spec, params=params)
    out.write_bytes(backends()["torch"].emit(graph).data)
    return out


def one_process_run(tmp_path, name: str):
    """The generated module of spec `name` and what one process gets in three steps from the same weights
    and batch, which the workers read from `tmp_path` (init.pt, batch.pt, expected.pt)."""
    model_file = generate(PARALLEL / f"{name}.nnspec", CONFIGS[name], tmp_path / "model.py")
    module = distributed_worker.load(model_file)
    torch.manual_seed(0)
    model = module.Model()
    torch.save(model.state_dict(), tmp_path / "init.pt")
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 64, (4, 8), generator=gen)
    targets = torch.randint(0, 64, (4, 8), generator=gen)
    torch.save((tokens, targets), tmp_path / "batch.pt")
    expected = distributed_worker.single_process(model, tokens, targets)
    torch.save(expected, tmp_path / "expected.pt")
    return module, expected


def assert_checkpoint_loads_in_one_process(module, checkpoint, expected) -> None:
    """A checkpoint a sharded run saved with torch.distributed.checkpoint loads into a module in one process,
    with the one-process run's trained values."""
    single = module.Model()
    state = single.state_dict()
    dcp.load(state, checkpoint_id=str(checkpoint))
    single.load_state_dict(state, strict=True)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(value, expected["trained"][key], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["tiny_gpt", "llama"])
def test_sharded_training_matches_one_process(tmp_path, name):
    module, expected = one_process_run(tmp_path, name)
    modes = ["fsdp", "fsdp_mp", "tp", "2d"]
    mp.spawn(distributed_worker.run, args=(2, str(tmp_path), modes), nprocs=2, join=True)
    results = json.loads((tmp_path / "results.json").read_text())
    print(name, results)
    for mode in modes:
        r = results[mode]
        assert r["loss"] < TOLERANCE and r["grad"] < TOLERANCE and r["param"] < TOLERANCE, (mode, r)
        if mode.startswith("fsdp"):
            assert r["whole"] == [], (mode, r["whole"])  # FSDP shards every parameter
        else:  # TP splits the planned layers (and leaves the others whole)
            split = [n for n in expected["trained"] if any(fnmatch(n.rpartition(".")[0], p) for p in module.tp_plan())]
            assert split and not set(split) & set(r["whole"]), (mode, r["whole"])
    graph = compile_graph(PARALLEL / f"{name}.nnspec", params=CONFIGS[name])
    entries = parallel.plan(graph)
    for mode, (dp, tp) in {"fsdp": (2, 1), "tp": (1, 2), "2d": (1, 2)}.items():
        # what `specc summary --mesh` says one rank holds is what the most loaded rank held
        assert max(results[mode]["held"]) == parallel.per_rank(graph, entries, dp, tp).params, (mode, results[mode])
    assert results["fsdp_mp"]["dtype"] == "torch.float64"  # the mixed-precision policy computed
    for mode in modes:  # checkpoint=True (fsdp_mp, 2d) recomputes each block's forward in backward
        assert results[mode]["calls"] == distributed_worker.STEPS * (2 if mode in ("fsdp_mp", "2d") else 1), results
    assert results["fsdp"]["dtype"] == "torch.float32"

    for mode in ("fsdp", "tp", "2d"):
        assert_checkpoint_loads_in_one_process(module, tmp_path / f"checkpoint_{mode}", expected)


def test_fsdp_times_tp_on_a_2x2_mesh(tmp_path):
    """LLaMA on a 2 x 2 mesh (4 processes): FSDP over dp of the tensor-parallel shards, as on many GPUs."""
    name = "llama"
    module, expected = one_process_run(tmp_path, name)
    mp.spawn(distributed_worker.run, args=(4, str(tmp_path), ["2d"]), nprocs=4, join=True)
    r = json.loads((tmp_path / "results.json").read_text())["2d"]
    print(r)
    assert r["loss"] < TOLERANCE and r["grad"] < TOLERANCE and r["param"] < TOLERANCE, r
    assert r["whole"] == [], r  # FSDP shards the norms too; the planned layers are 2-D (dp, tp) shards
    graph = compile_graph(PARALLEL / f"{name}.nnspec", params=CONFIGS[name])
    assert max(r["held"]) == parallel.per_rank(graph, parallel.plan(graph), 2, 2).params, r
    assert_checkpoint_loads_in_one_process(module, tmp_path / "checkpoint_2d", expected)


# ---------------------------------------------------------------- meta-device init

# ops whose torch layer makes its tensors in its constructor without a `reset_parameters` (init_weights
# says so, naming the class, rather than leaving them uninitialized)
NO_RESET = {"moe", "moe_merged", "quant_linear", "nm_linear", "nm_mask_linear", "fixed_point", "codebook_linear",
            "tt_linear"}


def test_meta_init_reproduces_the_constructor_exactly():
    """`to_empty` + `init_weights` after building on the meta device gives, under the same seed, exactly the
    values (parameters and buffers: BatchNorm statistics, tied weights) of building on the CPU."""
    from targets import compile_spec, spec_models

    checked, refused = [], []
    for spec, name in spec_models():
        graph = compile_spec(spec, name)
        module = load_module(backends()["torch"].emit(graph).data.decode(), f"specc_test_meta_{name}")
        torch.manual_seed(3)
        reference = module.Model()
        if {n.op for n in graph.nodes()} & NO_RESET:
            try:
                with torch.device("meta"):
                    meta = module.Model()
                meta.to_empty(device="cpu")
            except NotImplementedError:  # a layer whose constructor computes on its values (nonzero)
                continue
            with pytest.raises(RuntimeError, match="cannot re-initialize"):
                meta.init_weights()
            refused.append(name)
            continue
        with torch.device("meta"):
            meta = module.Model()
        meta.to_empty(device="cpu")
        torch.manual_seed(3)
        meta.init_weights()
        want, got = reference.state_dict(), meta.state_dict()
        assert list(want) == list(got), name
        for key in want:
            assert torch.equal(want[key], got[key]), (name, key)
        checked.append(name)
    assert {"tiny_gpt", "llama", "gpt2", "vit", "resnet18", "lstm_lm", "unet"} <= set(checked), checked
    assert "moe_block" in refused


# ---------------------------------------------------------------- located errors
PLAN = ROOT / "tests" / "parallel" / "plan.nnspec"


def plan_with(tmp_path, old: str | tuple, new: str | tuple) -> Path:
    """The test plan with `old` replaced by `new` (or each of several)."""
    text = PLAN.read_text()
    for a, b in zip((old,) if isinstance(old, str) else old, (new,) if isinstance(new, str) else new):
        assert a in text
        text = text.replace(a, b)
    path = tmp_path / "plan.nnspec"
    path.write_text(text)
    return path


@pytest.mark.parametrize("old, new, code, message, column", [
    ("shard up = colwise", "shard up = colwse", "E0233", "`colwse` is not a sharding style", 16),
    ("shard attn = heads", "shard atn = heads", "E0234", "`atn` is not a layer of model `plan`", 11),
    ("shard down = rowwise", "shard down = heads", "E0235", "`heads` splits an attention's heads", 11),
    ('qkv="separate", ', "", "E0235", 'needs an attention with qkv="separate"', 11),
    ("    shard down = rowwise\n", "", "E0236", "`down` (linear) reads the per-rank slice of colwise `mlp.up`", 12),
    ("shard down = rowwise", "shard down = colwise", "E0236", "colwise `mlp.down` reads a per-rank slice", 11),
    (("causal=true)", "f32[B, T, d]"), ("causal=true, mask=m)", "f32[B, T, d]\n    input m: bool[B, heads, T, T]"),
     "E0235", "its mask has a dim per head", 11),
    ("shard down = rowwise", "shard down = sequence", "E0235", "`sequence` splits a norm over the sequence", 11),
    ("output y = mlp(a, d) as mlp", "output y = mlp(rmsnorm(a) as n, d) as mlp\n    shard n = sequence", "E0236",
     "`a` (add) reads `attn`, which is split over the sequence", 9),
    ("    a = x + attention", "    shard n = sequence\n    a = rmsnorm(x) as n\n    a = a + attention", "E0236",
     "sequence-parallel `n` reads `x`, which is whole on every rank", 11),
    ("shard up = colwise", "shard up, down = colwise", "E0234", "`mlp.down` is sharded `colwise` and `rowwise`", 11),
])
def test_a_plan_that_cannot_work_is_a_located_error(tmp_path, old, new, code, message, column):
    with pytest.raises(SpeccError) as info:
        compile_graph(plan_with(tmp_path, old, new))
    error = info.value
    assert error.code == code and message in error.message, error.render()
    assert error.span.col == column, error.render()


def test_mesh_sizes_must_divide(tmp_path):
    """`--mesh` checks the split sizes at compile time; the generated `parallelize` checks them at run time."""
    run = [sys.executable, "-m", "specc.cli"]
    result = subprocess.run(run + ["compile", str(PLAN), "--mesh", "dp=2,tp=4", "-o", str(tmp_path / "p.py")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "plan.nnspec:13:11: error[E0237]: `attn` cannot be split 4 ways: its number of heads is 2" in result.stderr
    ok = subprocess.run(run + ["compile", str(PLAN), "--mesh", "tp=2", "-o", str(tmp_path / "p.py")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(run + ["summary", str(PLAN), "--mesh", "tp=two"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--mesh" in bad.stderr
    summary = subprocess.run(run + ["summary", str(PLAN), "--mesh", "dp=2,tp=2"], capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    graph = compile_graph(PLAN)
    mine = parallel.per_rank(graph, parallel.plan(graph), 2, 2)
    assert f"parameters   {mine.params:,} of" in summary.stdout
    module = load_module((tmp_path / "p.py").read_text(), "specc_test_plan")

    class Mesh:  # parallelize checks the degree before it shards anything
        mesh_dim_names = ("tp",)

        def __getitem__(self, name):
            return self

        def size(self):
            return 4

    with pytest.raises(ValueError, match="cannot be split 4 ways: its number of heads is 2"):
        module.parallelize(module.Model(), Mesh())


# ---------------------------------------------------------------- the GPU check
LLAMA_1B = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
            "num_attention_heads": 32, "num_key_value_heads": 4}  # TinyLlama-1.1B's shape


def one_rank_meta_run(tmp_path, params: dict, device: str, backend: str) -> dict:
    """Build LLaMA at `params` on the meta device, shard it with FSDP2 on a mesh of one `device`, allocate
    and initialize it there, and train one AdamW step; returns the parameter count, the loss and how much
    the process's peak resident memory grew (a model materialized on the CPU would add 4 bytes a parameter)."""
    import resource

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy

    module = distributed_worker.load(generate(PARALLEL / "llama.nnspec", params, tmp_path / "llama_big.py"))
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        warm = torch.ones(64, 64, device=device)  # the device's libraries load before the measurement
        (warm @ warm).sum().item()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        mesh = init_device_mesh(device, (1,), mesh_dim_names=("dp",))
        with torch.device("meta"):
            model = module.Model()
        module.parallelize(model, mesh, checkpoint=True,
                           mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))
        model.to_empty(device=device)
        torch.manual_seed(0)
        model.init_weights()
        count = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        tokens = torch.randint(0, params["vocab_size"], (1, 128), device=device)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1)[:-1], tokens.flatten()[1:])
        loss.backward()
        optimizer.step()
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        return {"params": count, "loss": loss.item(), "rss_growth": grown}
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_llama_1b_under_fsdp_on_one_gpu_never_materializes_on_the_cpu(tmp_path):
    result = one_rank_meta_run(tmp_path, LLAMA_1B, "cuda", "nccl")
    graph = compile_graph(PARALLEL / "llama.nnspec", params=LLAMA_1B)
    assert result["params"] == parallel.per_rank(graph, parallel.plan(graph), 1, 1).params > 1_000_000_000
    assert torch.isfinite(torch.tensor(result["loss"]))
    assert result["rss_growth"] < 2 * result["params"]  # half the 4 bytes a parameter a CPU copy would take


def test_compressing_a_sharded_layer_leaves_it_whole_with_a_warning(tmp_path):
    """tiny_gpt's plan splits its MLP and head; quantized, those layers stay whole on every rank (a
    quant_linear cannot be split yet), each stage saying so at the `shard` line, and the rest of the plan
    (here: nothing else) is kept."""
    path = tmp_path / "g.nnspec"
    path.write_text((PARALLEL / "tiny_gpt.nnspec").read_text()
                    + "\ncompress small = tiny_gpt {\n    quantize(int4, group=32) on linear except logits\n}\n")
    graph = compile_graph(path, "small", params=CONFIGS["tiny_gpt"])
    warnings = [p.warning for p in graph.plan if p.warning is not None]
    assert {w.code for w in warnings} == {"E0238"} and len(warnings) == 4, [w.render() for w in warnings]
    assert "`quantize` made `h_1.0.out_linear` a quant_linear, which `colwise` cannot split" in warnings[0].message
    assert warnings[0].span.line == 7
    assert [e.key for e in parallel.plan(graph) if e.style != "replicate"] == ["logits"]

