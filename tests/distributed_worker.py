"""The worker of tests/test_distributed.py: trains a generated module sharded by its own `parallelize`
(FSDP2, tensor parallel, both) with gloo on CPU, next to the same module in one process, and records
the largest differences of loss, gradients and parameters over a few optimizer steps.

Every rank builds the model on the meta device, shards it, allocates its shards (`to_empty`), runs the
generated `init_weights` on them (sharded parameters initialized in place), then loads the single-process
model's weights (`set_model_state_dict`, a full state dict) so both start equal. Each data-parallel rank
trains on its own rows of the batch; FSDP averages the gradients, so the sharded run follows the
single-process one on the whole batch.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.distributed as dist

STEPS = 3


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extra(model, tokens):
    """tiny_gpt also takes the positions 0..T-1."""
    names = model.forward.__code__.co_varnames[1:model.forward.__code__.co_argcount]
    return (torch.arange(tokens.shape[1]),) if "positions" in names else ()


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def run(rank: int, world: int, workdir: str, modes: list[str]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy

    import torch.distributed.checkpoint as dcp

    work = Path(workdir)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{work / 'rendezvous'}", rank=rank, world_size=world)
    try:
        generated = load(work / "model.py")
        tokens, targets = torch.load(work / "batch.pt")
        expected = torch.load(work / "expected.pt")  # the single-process run: per step loss and grads
        results = {}
        for mode in modes:
            dp, tp = {"fsdp": (world, 1), "fsdp_mp": (world, 1), "tp": (1, world), "2d": (world // 2, 2)}[mode]
            if dp > 1 and tp > 1:
                mesh = init_device_mesh("cpu", (dp, tp), mesh_dim_names=("dp", "tp"))
            elif tp > 1:
                mesh = init_device_mesh("cpu", (tp,), mesh_dim_names=("tp",))
            else:
                mesh = init_device_mesh("cpu", (dp,), mesh_dim_names=("dp",))
            with torch.device("meta"):
                model = generated.Model()
            # fsdp_mp computes in float64 (a policy that visibly applies: the logits come out float64) and
            # checkpoints each block's activations
            policy = MixedPrecisionPolicy(param_dtype=torch.float64, reduce_dtype=torch.float64) \
                if mode == "fsdp_mp" else None
            generated.parallelize(model, mesh, mp_policy=policy, checkpoint=mode in ("fsdp_mp", "2d"))
            model.to_empty(device="cpu")
            model.init_weights()
            reference = torch.load(work / "init.pt")  # loaded each time: set_model_state_dict distributes it in place
            set_model_state_dict(model, reference, options=StateDictOptions(full_state_dict=True))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            # a layer inside the first block counts its calls: twice a step where blocks recompute in backward
            block = next(iter(model.get_submodule(generated.FSDP_BLOCKS[0]).children()))
            layer = next(m for m in block.modules() if isinstance(m, torch.nn.Linear))
            calls = []
            layer.register_forward_hook(lambda *args: calls.append(1))
            dp_rank = mesh["dp"].get_local_rank() if "dp" in (mesh.mesh_dim_names or ()) and dp > 1 else 0
            rows = slice(dp_rank * tokens.shape[0] // dp, (dp_rank + 1) * tokens.shape[0] // dp)
            worst = {"loss": 0.0, "grad": 0.0, "param": 0.0}
            dtype = None
            for step in range(STEPS):
                out = model(tokens[rows], *extra(model, tokens))
                dtype = str(out.dtype)
                loss = torch.nn.functional.cross_entropy(out.float().flatten(0, 1), targets[rows].flatten())
                loss.backward()
                mean = loss.detach().clone()
                dist.all_reduce(mean)
                mean /= world  # tp ranks hold the same loss, dp ranks one share each: the world mean is the batch's
                worst["loss"] = max(worst["loss"], abs(mean.item() - expected["loss"][step]))
                for name, p in model.named_parameters():
                    worst["grad"] = max(worst["grad"], (full(p.grad) - expected["grads"][step][name]).abs().max().item())
                optimizer.step()
                optimizer.zero_grad()
            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
            for name, value in expected["trained"].items():
                worst["param"] = max(worst["param"], (state[name] - value).abs().max().item())
            if mode in ("tp", "2d", "fsdp"):  # a sharded checkpoint, for the single-process load in the test
                dcp.save(get_model_state_dict(model), checkpoint_id=str(work / f"checkpoint_{mode}"))
            worst["dtype"] = dtype
            worst["calls"] = len(calls)
            worst["whole"] = [n for n, p in model.named_parameters() if not hasattr(p, "full_tensor")]
            held = [0] * world  # parameters each rank holds (a shard's local part), for `specc summary --mesh`
            dist.all_gather_object(held, sum((p.to_local() if hasattr(p, "to_local") else p).numel()
                                             for p in model.parameters()))
            worst["held"] = held
            results[mode] = worst
            dist.barrier()
        if rank == 0:
            (work / "results.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def single_process(model, tokens, targets) -> dict:
    """The reference run: per step loss and gradients, and the trained parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    out = {"loss": [], "grads": [], "trained": None}
    for _ in range(STEPS):
        logits = model(tokens, *extra(model, tokens))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        out["loss"].append(loss.item())
        out["grads"].append({n: p.grad.clone() for n, p in model.named_parameters()})
        optimizer.step()
        optimizer.zero_grad()
    out["trained"] = {k: v.clone() for k, v in model.state_dict().items()}
    return out

