"""A worker for the DDP test: loads a generated module from a file and trains one step under DDP (gloo)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def load_model(path: Path) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Model()


def run(rank: int, world: int, workdir: str) -> None:
    work = Path(workdir)
    dist.init_process_group("gloo", init_method=f"file://{work / 'rendezvous'}", rank=rank, world_size=world)
    try:
        model = load_model(work / "model.py")
        model.load_state_dict(torch.load(work / "init.pt"))
        model.eval()  # no dropout: the comparison is exact
        ddp = DistributedDataParallel(model)
        x, target = torch.load(work / "batch.pt")
        shard = x.shape[0] // world
        rows = slice(rank * shard, (rank + 1) * shard)
        loss = torch.nn.functional.cross_entropy(ddp(x[rows]), target[rows])
        loss.backward()  # DDP averages gradients across ranks during backward
        if rank == 0:
            torch.save({k: p.grad for k, p in model.named_parameters()}, work / "ddp_grads.pt")
    finally:
        dist.destroy_process_group()
